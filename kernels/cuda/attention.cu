// attention.cu -- fused scaled-dot-product attention in fp32, FlashAttention-2
// style: forward with an online softmax, backward that rebuilds P from lse.
// Rungs 3 (forward) and 4 (backward) of the attention ladder, attention_ladder.py.
//
// Follows kernels/reference.py (the spec) and Dao 2023, "FlashAttention-2":
// the (Nq, Nk) score matrix never exists in device memory, only one
// (query tile x key tile) block of it at a time in shared memory, so the extra
// memory is O(N).
//
// Layout: q, o, dq (B, H, Nq, d); k, v, dk, dv (B, H, Nk, d); lse, delta
// (B, H, Nq); key_padding_mask (B, Nk) bool, True = a real key (used only when
// has_mask). Causal: query i sits at position i + (Nk - Nq) and sees keys at
// positions <= its own. Fully masked rows give o = 0 and lse = -inf.
//
// Every kernel here runs 256 threads seen as a 16 x 16 grid (ty, tx): a
// thread owns a few *rows* of a tile (ty) and strided *columns* (tx + 16 j),
// so the 16 threads sharing a row are 16 neighbouring lanes of one warp and a
// row's max and sum are four __shfl_xor_sync steps. The head dimension is a
// template parameter kD (64 or 128); the run-time d <= kD is zero-padded up to
// it in shared memory, so any d <= 128 works. Static shared memory stays under
// 48 KB, and __launch_bounds__(256, 2) keeps two blocks per multiprocessor.
#include "common.cuh"

#define ATT_THREADS 256

// ---------------------------------------------------------------------------- helpers

// Rows [row0, row0 + kRows) of a row-major (n, d) matrix into a shared tile with
// row stride kLd, zeros past row n and past column d (up to kD).
template <int kRows, int kD, int kLd>
__device__ __forceinline__ void load_tile(float* dst, const float* __restrict__ src, int row0, int n, int d) {
    for (int idx = threadIdx.x; idx < kRows * kD; idx += ATT_THREADS) {
        const int r = idx / kD, c = idx % kD;
        dst[r * kLd + c] = (row0 + r < n && c < d) ? src[static_cast<long long>(row0 + r) * d + c] : 0.f;
    }
}

// acc[i][j] = A[ty kR + i, :] . B[tx + 16 j, :] over kD, both tiles in shared
// memory. A's rows are read by the 16 lanes of a row at once (a broadcast);
// B's row stride kLdB = kD + 4 puts the 16 rows of a float4 load in different
// banks.
template <int kR, int kC, int kD, int kLdA, int kLdB>
__device__ __forceinline__ void row_dots(const float* As, const float* Bs, float (&acc)[kR][kC]) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int i = 0; i < kR; ++i)
#pragma unroll
        for (int j = 0; j < kC; ++j) acc[i][j] = 0.f;
#pragma unroll 4
    for (int c = 0; c < kD; c += 4) {
        float4 a[kR], b[kC];
#pragma unroll
        for (int i = 0; i < kR; ++i) a[i] = *reinterpret_cast<const float4*>(&As[(ty * kR + i) * kLdA + c]);
#pragma unroll
        for (int j = 0; j < kC; ++j) b[j] = *reinterpret_cast<const float4*>(&Bs[(tx + 16 * j) * kLdB + c]);
#pragma unroll
        for (int i = 0; i < kR; ++i)
#pragma unroll
            for (int j = 0; j < kC; ++j)
                acc[i][j] += a[i].x * b[j].x + a[i].y * b[j].y + a[i].z * b[j].z + a[i].w * b[j].w;
    }
}

// Max and sum over the 16 lanes that share a row (lanes 0-15 or 16-31 of a warp).
__device__ __forceinline__ float row_max16(float v) {
#pragma unroll
    for (int offset = 8; offset > 0; offset >>= 1) v = fmaxf(v, __shfl_xor_sync(MINIVL_FULL_MASK, v, offset));
    return v;
}
__device__ __forceinline__ float row_sum16(float v) {
#pragma unroll
    for (int offset = 8; offset > 0; offset >>= 1) v += __shfl_xor_sync(MINIVL_FULL_MASK, v, offset);
    return v;
}

__device__ __forceinline__ float component(const float4& v, int e) {
    return e == 0 ? v.x : e == 1 ? v.y : e == 2 ? v.z : v.w;
}

// key_ok[j] for the key tile starting at k0: in range and not padding.
template <int kBC>
__device__ __forceinline__ void load_key_ok(bool* key_ok, const bool* __restrict__ key_padding_mask, int has_mask,
                                            int b, int k0, int Nk) {
    if (threadIdx.x < kBC) {
        const int key = k0 + threadIdx.x;
        key_ok[threadIdx.x] =
            key < Nk && (!has_mask || key_padding_mask[static_cast<long long>(b) * Nk + key]);
    }
}

// Write rows [row0, row0 + 16 kR) of an accumulator held as acc[i][4 c + e] =
// tile[ty kR + i][64 c + 4 tx + e] into a (n, d) row-major matrix, times `scale`.
template <int kR, int kDC>
__device__ __forceinline__ void store_rows(float* __restrict__ dst, const float (&acc)[kR][4 * kDC],
                                           const float (&scale)[kR], int row0, int n, int d) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int i = 0; i < kR; ++i) {
        const int row = row0 + ty * kR + i;
        if (row >= n) continue;
#pragma unroll
        for (int c = 0; c < kDC; ++c)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = 64 * c + 4 * tx + e;
                if (col < d) dst[static_cast<long long>(row) * d + col] = acc[i][4 * c + e] * scale[i];
            }
    }
}

// ---------------------------------------------------------------------------- forward

// Launch: grid = (ceil(Nq / kBR), B * H), block = (256).
// Block (x, bh) owns queries [x kBR, x kBR + kBR) of head bh and walks the key
// tiles; thread (ty, tx) owns query rows ty kR + i, and of each key tile the
// columns tx + 16 j (scores) and of o the columns 64 c + 4 tx + e.
template <int kD, int kBR, int kBC>
__global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_forward(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                      const bool* __restrict__ key_padding_mask, int has_mask, float* __restrict__ o,
                      float* __restrict__ lse, int H, int Nq, int Nk, int d, int causal, float scale) {
    constexpr int kR = kBR / 16, kC = kBC / 16, kDC = kD / 64;
    constexpr int kLdK = kD + 4, kLdP = kBC + 4;
    static_assert(kBR % 16 == 0 && kBC % 16 == 0 && kD % 64 == 0, "tile sizes must match the 16x16 threads");
    __shared__ __align__(16) float Qs[kBR * kD];
    __shared__ __align__(16) float Ks[kBC * kLdK];
    __shared__ __align__(16) float Vs[kBC * kD];
    __shared__ __align__(16) float Ps[kBR * kLdP];
    __shared__ bool key_ok[kBC];

    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    const int bh = blockIdx.y, b = bh / H;
    const int q0 = blockIdx.x * kBR;
    const long long q_offset = static_cast<long long>(bh) * Nq * d, k_offset = static_cast<long long>(bh) * Nk * d;
    const int shift = Nk - Nq;
    const int kv_end = causal ? min(Nk, q0 + kBR + shift) : Nk;  // keys past it are masked for every query here

    load_tile<kBR, kD, kD>(Qs, q + q_offset, q0, Nq, d);

    float row_max[kR], row_sum[kR], acc[kR][4 * kDC];  // row_sum: this thread's columns only
#pragma unroll
    for (int i = 0; i < kR; ++i) {
        row_max[i] = neg_inf<float>();
        row_sum[i] = 0.f;
#pragma unroll
        for (int c = 0; c < 4 * kDC; ++c) acc[i][c] = 0.f;
    }

    for (int k0 = 0; k0 < kv_end; k0 += kBC) {
        __syncthreads();  // the previous tile's readers of Ks, Vs, Ps are done
        load_tile<kBC, kD, kLdK>(Ks, k + k_offset, k0, Nk, d);
        load_tile<kBC, kD, kD>(Vs, v + k_offset, k0, Nk, d);
        load_key_ok<kBC>(key_ok, key_padding_mask, has_mask, b, k0, Nk);
        __syncthreads();

        float s[kR][kC];  // (kBR, kBC) scores, this thread's patch
        row_dots<kR, kC, kD, kD, kLdK>(Qs, Ks, s);
#pragma unroll
        for (int i = 0; i < kR; ++i) {
            const int query = q0 + ty * kR + i;
            float tile_max = neg_inf<float>();
#pragma unroll
            for (int j = 0; j < kC; ++j) {
                const int col = tx + 16 * j;
                const bool allowed = key_ok[col] && (!causal || k0 + col <= query + shift);
                s[i][j] = allowed ? s[i][j] * scale : neg_inf<float>();
                tile_max = fmaxf(tile_max, s[i][j]);
            }
            // online softmax: rescale what was summed so far to the new max
            const float new_max = fmaxf(row_max[i], row_max16(tile_max));
            const float m = new_max == neg_inf<float>() ? 0.f : new_max;  // all masked so far: p = 0
            const float alpha = expf(row_max[i] - m);
            row_max[i] = new_max;
            row_sum[i] *= alpha;
#pragma unroll
            for (int c = 0; c < 4 * kDC; ++c) acc[i][c] *= alpha;
#pragma unroll
            for (int j = 0; j < kC; ++j) {
                const float p = expf(s[i][j] - m);
                row_sum[i] += p;
                Ps[(ty * kR + i) * kLdP + tx + 16 * j] = p;
            }
        }
        __syncthreads();

        // acc += P V, four keys at a time (one float4 of P per row)
#pragma unroll 2
        for (int jj = 0; jj < kBC; jj += 4) {
            float4 p4[kR];
#pragma unroll
            for (int i = 0; i < kR; ++i) p4[i] = *reinterpret_cast<const float4*>(&Ps[(ty * kR + i) * kLdP + jj]);
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                float4 v4[kDC];
#pragma unroll
                for (int c = 0; c < kDC; ++c)
                    v4[c] = *reinterpret_cast<const float4*>(&Vs[(jj + e) * kD + 64 * c + 4 * tx]);
#pragma unroll
                for (int i = 0; i < kR; ++i) {
                    const float p = component(p4[i], e);
#pragma unroll
                    for (int c = 0; c < kDC; ++c) {
                        acc[i][4 * c + 0] += p * v4[c].x;
                        acc[i][4 * c + 1] += p * v4[c].y;
                        acc[i][4 * c + 2] += p * v4[c].z;
                        acc[i][4 * c + 3] += p * v4[c].w;
                    }
                }
            }
        }
    }

    // normalise once at the end (FlashAttention-2), and save lse for backward
    float inv_sum[kR];
#pragma unroll
    for (int i = 0; i < kR; ++i) {
        const float total = row_sum16(row_sum[i]);
        inv_sum[i] = total > 0.f ? 1.f / total : 0.f;
        const int query = q0 + ty * kR + i;
        if (tx == 0 && query < Nq)
            lse[static_cast<long long>(bh) * Nq + query] = total > 0.f ? row_max[i] + logf(total) : neg_inf<float>();
    }
    store_rows<kR, kDC>(o + q_offset, acc, inv_sum, q0, Nq, d);
}

// ---------------------------------------------------------------------------- backward

// delta[row] = sum_c dO[row, c] O[row, c] (= rowsum(P * dP)), one warp per row.
// Launch: grid = (ceil(rows / 8)), block = (256).
extern "C" __global__ void attention_backward_delta(const float* __restrict__ o, const float* __restrict__ d_o,
                                                    float* __restrict__ delta, long long rows, int d) {
    const long long row = static_cast<long long>(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32;
    const int lane = threadIdx.x % 32;
    if (row >= rows) return;  // whole warps leave together: the shuffles below stay full
    float sum = 0.f;
    for (int c = lane; c < d; c += 32) sum += d_o[row * d + c] * o[row * d + c];
    sum = warp_sum(sum);
    if (lane == 0) delta[row] = sum;
}

// For the (query tile x key tile) patch of this thread: P = exp(S scale - lse)
// where allowed (else 0), dS = P (dP - delta), both written to shared memory.
template <int kR, int kC, int kLd>
__device__ __forceinline__ void probs_and_dscores(const float (&s)[kR][kC], const float (&dp)[kR][kC], float* Ps,
                                                  float* dSs, const float* lse_s, const float* delta_s,
                                                  const bool* key_ok, int q0, int k0, int Nq, int shift, int causal,
                                                  float scale) {
    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
#pragma unroll
    for (int i = 0; i < kR; ++i) {
        const int r = ty * kR + i, query = q0 + r;
#pragma unroll
        for (int j = 0; j < kC; ++j) {
            const int col = tx + 16 * j;
            const bool allowed = query < Nq && key_ok[col] && (!causal || k0 + col <= query + shift);
            const float p = allowed ? expf(s[i][j] * scale - lse_s[r]) : 0.f;
            if (Ps != nullptr) Ps[r * kLd + col] = p;
            dSs[r * kLd + col] = p * (dp[i][j] - delta_s[r]);
        }
    }
}

// lse and delta of query rows [q0, q0 + n) into shared memory (0 past Nq).
__device__ __forceinline__ void load_row_stats(float* lse_s, float* delta_s, const float* __restrict__ lse,
                                               const float* __restrict__ delta, long long offset, int q0, int n,
                                               int Nq) {
    const int r = threadIdx.x, query = q0 + r;
    if (r < n) {
        lse_s[r] = query < Nq ? lse[offset + query] : 0.f;
        delta_s[r] = query < Nq ? delta[offset + query] : 0.f;
    }
}

// dK and dV for one key tile, looping over the query tiles that can see it:
// dV += P^T dO, dK += dS^T Q (times scale at the end).
// Launch: grid = (ceil(Nk / kBC), B * H), block = (256). Thread (ty, tx) owns
// key rows ty kRK + r of dK, dV and the columns 64 c + 4 tx + e.
template <int kD, int kBQ, int kBC>
__global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_backward_dkdv(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                            const float* __restrict__ d_o, const float* __restrict__ lse,
                            const float* __restrict__ delta, const bool* __restrict__ key_padding_mask, int has_mask,
                            float* __restrict__ dk, float* __restrict__ dv, int H, int Nq, int Nk, int d, int causal,
                            float scale) {
    constexpr int kR = kBQ / 16, kC = kBC / 16, kRK = kBC / 16, kDC = kD / 64;
    constexpr int kLdKV = kD + 4, kLdS = kBC + 4;
    static_assert(kBQ % 16 == 0 && kBC % 16 == 0 && kD % 64 == 0, "tile sizes must match the 16x16 threads");
    __shared__ __align__(16) float Ks[kBC * kLdKV];
    __shared__ __align__(16) float Vs[kBC * kLdKV];
    __shared__ __align__(16) float Qs[kBQ * kD];
    __shared__ __align__(16) float dOs[kBQ * kD];
    __shared__ __align__(16) float Ps[kBQ * kLdS];
    __shared__ __align__(16) float dSs[kBQ * kLdS];
    __shared__ float lse_s[kBQ], delta_s[kBQ];
    __shared__ bool key_ok[kBC];

    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    const int bh = blockIdx.y, b = bh / H;
    const int k0 = blockIdx.x * kBC;
    const long long q_offset = static_cast<long long>(bh) * Nq * d, k_offset = static_cast<long long>(bh) * Nk * d;
    const int shift = Nk - Nq;

    load_tile<kBC, kD, kLdKV>(Ks, k + k_offset, k0, Nk, d);
    load_tile<kBC, kD, kLdKV>(Vs, v + k_offset, k0, Nk, d);
    load_key_ok<kBC>(key_ok, key_padding_mask, has_mask, b, k0, Nk);

    float acc_dk[kRK][4 * kDC], acc_dv[kRK][4 * kDC];
#pragma unroll
    for (int r = 0; r < kRK; ++r)
#pragma unroll
        for (int c = 0; c < 4 * kDC; ++c) acc_dk[r][c] = acc_dv[r][c] = 0.f;

    // causal: queries before k0 - shift cannot see any key of this tile
    const int q_begin = causal ? (max(0, k0 - shift) / kBQ) * kBQ : 0;
    for (int q0 = q_begin; q0 < Nq; q0 += kBQ) {
        __syncthreads();  // the previous tile's readers of Qs, dOs, Ps, dSs are done
        load_tile<kBQ, kD, kD>(Qs, q + q_offset, q0, Nq, d);
        load_tile<kBQ, kD, kD>(dOs, d_o + q_offset, q0, Nq, d);
        load_row_stats(lse_s, delta_s, lse, delta, static_cast<long long>(bh) * Nq, q0, kBQ, Nq);
        __syncthreads();

        float s[kR][kC], dp[kR][kC];
        row_dots<kR, kC, kD, kD, kLdKV>(Qs, Ks, s);    // S  = Q K^T
        row_dots<kR, kC, kD, kD, kLdKV>(dOs, Vs, dp);  // dP = dO V^T
        probs_and_dscores<kR, kC, kLdS>(s, dp, Ps, dSs, lse_s, delta_s, key_ok, q0, k0, Nq, shift, causal, scale);
        __syncthreads();

#pragma unroll 4
        for (int qi = 0; qi < kBQ; ++qi) {
            float p[kRK], ds[kRK];
#pragma unroll
            for (int r = 0; r < kRK; ++r) {
                p[r] = Ps[qi * kLdS + ty * kRK + r];
                ds[r] = dSs[qi * kLdS + ty * kRK + r];
            }
#pragma unroll
            for (int c = 0; c < kDC; ++c) {
                const float4 g = *reinterpret_cast<const float4*>(&dOs[qi * kD + 64 * c + 4 * tx]);
                const float4 x = *reinterpret_cast<const float4*>(&Qs[qi * kD + 64 * c + 4 * tx]);
#pragma unroll
                for (int r = 0; r < kRK; ++r) {
                    acc_dv[r][4 * c + 0] += p[r] * g.x;
                    acc_dv[r][4 * c + 1] += p[r] * g.y;
                    acc_dv[r][4 * c + 2] += p[r] * g.z;
                    acc_dv[r][4 * c + 3] += p[r] * g.w;
                    acc_dk[r][4 * c + 0] += ds[r] * x.x;
                    acc_dk[r][4 * c + 1] += ds[r] * x.y;
                    acc_dk[r][4 * c + 2] += ds[r] * x.z;
                    acc_dk[r][4 * c + 3] += ds[r] * x.w;
                }
            }
        }
    }

    float ones[kRK], scales[kRK];
#pragma unroll
    for (int r = 0; r < kRK; ++r) {
        ones[r] = 1.f;
        scales[r] = scale;
    }
    store_rows<kRK, kDC>(dv + k_offset, acc_dv, ones, k0, Nk, d);
    store_rows<kRK, kDC>(dk + k_offset, acc_dk, scales, k0, Nk, d);
}

// dQ for one query tile, looping over the key tiles it can see: dQ += dS K
// (times scale). A separate pass instead of atomics: deterministic.
// Launch: grid = (ceil(Nq / kBQ), B * H), block = (256).
template <int kD, int kBQ, int kBC>
__global__ void __launch_bounds__(ATT_THREADS, 2)
    attention_backward_dq(const float* __restrict__ q, const float* __restrict__ k, const float* __restrict__ v,
                          const float* __restrict__ d_o, const float* __restrict__ lse,
                          const float* __restrict__ delta, const bool* __restrict__ key_padding_mask, int has_mask,
                          float* __restrict__ dq, int H, int Nq, int Nk, int d, int causal, float scale) {
    constexpr int kR = kBQ / 16, kC = kBC / 16, kDC = kD / 64;
    constexpr int kLdKV = kD + 4, kLdS = kBC + 4;
    static_assert(kBQ % 16 == 0 && kBC % 16 == 0 && kD % 64 == 0, "tile sizes must match the 16x16 threads");
    __shared__ __align__(16) float Qs[kBQ * kD];
    __shared__ __align__(16) float dOs[kBQ * kD];
    __shared__ __align__(16) float Ks[kBC * kLdKV];
    __shared__ __align__(16) float Vs[kBC * kLdKV];
    __shared__ __align__(16) float dSs[kBQ * kLdS];
    __shared__ float lse_s[kBQ], delta_s[kBQ];
    __shared__ bool key_ok[kBC];

    const int ty = threadIdx.x / 16, tx = threadIdx.x % 16;
    const int bh = blockIdx.y, b = bh / H;
    const int q0 = blockIdx.x * kBQ;
    const long long q_offset = static_cast<long long>(bh) * Nq * d, k_offset = static_cast<long long>(bh) * Nk * d;
    const int shift = Nk - Nq;
    const int kv_end = causal ? min(Nk, q0 + kBQ + shift) : Nk;

    load_tile<kBQ, kD, kD>(Qs, q + q_offset, q0, Nq, d);
    load_tile<kBQ, kD, kD>(dOs, d_o + q_offset, q0, Nq, d);
    load_row_stats(lse_s, delta_s, lse, delta, static_cast<long long>(bh) * Nq, q0, kBQ, Nq);

    float acc[kR][4 * kDC];
#pragma unroll
    for (int i = 0; i < kR; ++i)
#pragma unroll
        for (int c = 0; c < 4 * kDC; ++c) acc[i][c] = 0.f;

    for (int k0 = 0; k0 < kv_end; k0 += kBC) {
        __syncthreads();  // the previous tile's readers of Ks, Vs, dSs are done
        load_tile<kBC, kD, kLdKV>(Ks, k + k_offset, k0, Nk, d);
        load_tile<kBC, kD, kLdKV>(Vs, v + k_offset, k0, Nk, d);
        load_key_ok<kBC>(key_ok, key_padding_mask, has_mask, b, k0, Nk);
        __syncthreads();

        float s[kR][kC], dp[kR][kC];
        row_dots<kR, kC, kD, kD, kLdKV>(Qs, Ks, s);
        row_dots<kR, kC, kD, kD, kLdKV>(dOs, Vs, dp);
        probs_and_dscores<kR, kC, kLdS>(s, dp, nullptr, dSs, lse_s, delta_s, key_ok, q0, k0, Nq, shift, causal,
                                        scale);
        __syncthreads();

#pragma unroll 4
        for (int j = 0; j < kBC; ++j) {
            float4 k4[kDC];
#pragma unroll
            for (int c = 0; c < kDC; ++c) k4[c] = *reinterpret_cast<const float4*>(&Ks[j * kLdKV + 64 * c + 4 * tx]);
#pragma unroll
            for (int i = 0; i < kR; ++i) {
                const float ds = dSs[(ty * kR + i) * kLdS + j];
#pragma unroll
                for (int c = 0; c < kDC; ++c) {
                    acc[i][4 * c + 0] += ds * k4[c].x;
                    acc[i][4 * c + 1] += ds * k4[c].y;
                    acc[i][4 * c + 2] += ds * k4[c].z;
                    acc[i][4 * c + 3] += ds * k4[c].w;
                }
            }
        }
    }

    float scales[kR];
#pragma unroll
    for (int i = 0; i < kR; ++i) scales[i] = scale;
    store_rows<kR, kDC>(dq + q_offset, acc, scales, q0, Nq, d);
}

// The tile shapes the loader launches, one per head-dimension bucket; each
// keeps its static shared memory under 48 KB.
#ifndef __CUDACC_RTC__
#define INSTANTIATE(KD, BR, BC, BQ, BK)                                                                               \
    template __global__ void attention_forward<KD, BR, BC>(const float*, const float*, const float*, const bool*,   \
                                                           int, float*, float*, int, int, int, int, int, float);   \
    template __global__ void attention_backward_dkdv<KD, BQ, BK>(                                                   \
        const float*, const float*, const float*, const float*, const float*, const float*, const bool*, int,       \
        float*, float*, int, int, int, int, int, float);                                                            \
    template __global__ void attention_backward_dq<KD, BQ, BK>(const float*, const float*, const float*,           \
                                                               const float*, const float*, const float*,           \
                                                               const bool*, int, float*, int, int, int, int, int,  \
                                                               float);
INSTANTIATE(64, 64, 32, 32, 32)
INSTANTIATE(128, 32, 16, 16, 16)
#undef INSTANTIATE
#endif
