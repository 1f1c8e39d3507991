// attention_mma.cu -- fused attention forward on tensor cores: fp16 or bf16
// inputs, fp32 accumulation and softmax, FlashAttention-2 style (sm_80+).
// Rung 5 of the attention ladder (attention_ladder.py): rung 3 on tensor cores.
//
// Follows kernels/reference.py (the spec) and Dao 2023, "FlashAttention-2",
// with the tensor-core instruction mma.sync.m16n8k16 (PTX ISA, "Warp-level
// matrix multiply-accumulate"). Same conventions as attention.cu: q, o
// (B, H, Nq, d), k, v (B, H, Nk, d), key_padding_mask (B, Nk), causal with the
// queries as the last Nq positions, lse (B, H, Nq) in fp32. Elements are passed
// as their 16-bit patterns (unsigned short), so no half-precision header is
// needed under NVRTC; d must be a multiple of 8 and at most kD (64 or 128).
//
// A block of 4 warps owns 64 queries, 16 per warp, and walks key tiles of 64:
//   S = Q K^T   : Q fragments stay in registers (A operand), K is the B
//                 operand read from shared memory with ldmatrix;
//   softmax     : online, in fp32 registers, rows reduced across the 4 lanes
//                 that share them (two shuffles);
//   O += P V    : P is re-packed from S's accumulator registers straight into
//                 A fragments (their layouts coincide), V is read with
//                 ldmatrix.trans;
// and O is divided by the row sums once, at the end.
//
// Fragment layouts (PTX ISA, mma.m16n8k16 .f16/.bf16): lane = 4 g + t.
//   A (16x16): reg 0 (row g, cols 2t, 2t+1), reg 1 (row g+8, same cols),
//              reg 2 (row g, cols 2t+8, 2t+9), reg 3 (row g+8, cols 2t+8, 2t+9)
//   B (16x8):  reg 0 (rows 2t, 2t+1, col g), reg 1 (rows 2t+8, 2t+9, col g)
//   C (16x8):  c0, c1 (row g, cols 2t, 2t+1), c2, c3 (row g+8, cols 2t, 2t+1)
#include "common.cuh"

#define MMA_WARPS 4
#define MMA_THREADS (32 * MMA_WARPS)
#define MMA_BR (16 * MMA_WARPS)  // queries per block
#define MMA_BC 64                // keys per tile
#define MMA_LOG2E 1.4426950408889634f
#define MMA_LN2 0.6931471805599453f

// ---------------------------------------------------------------------------- tensor-core primitives
// The only inline PTX in the project. The CPU emulator's host build
// (emulate.cuh) supplies C++ versions of these five functions.
#ifdef __CUDACC__
// Four 8x8 b16 matrices from shared memory; lane l gives the address of row
// l % 8 of matrix l / 8 and receives, of matrix i, the pair (row l/4, cols 2(l%4), +1).
__device__ __forceinline__ void ldmatrix_x4(unsigned (&r)[4], const unsigned short* row_address) {
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}

// Same, transposed: of matrix i, lane l receives (rows 2(l%4), +1, col l/4).
__device__ __forceinline__ void ldmatrix_x4_trans(unsigned (&r)[4], const unsigned short* row_address) {
    const unsigned address = static_cast<unsigned>(__cvta_generic_to_shared(row_address));
    asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0, %1, %2, %3}, [%4];\n"
                 : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
                 : "r"(address));
}

// d += a b for a 16x16 A fragment and a 16x8 B fragment, fp32 accumulators.
template <bool kBf16>
__device__ __forceinline__ void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1) {
    if constexpr (kBf16) {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    } else {
        asm volatile(
            "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0, %1, %2, %3}, {%4, %5, %6, %7}, {%8, %9}, "
            "{%0, %1, %2, %3};\n"
            : "+f"(d[0]), "+f"(d[1]), "+f"(d[2]), "+f"(d[3])
            : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
    }
}

// Two floats rounded to 16 bits each and packed, `lo` in the low half.
template <bool kBf16> __device__ __forceinline__ unsigned pack2(float lo, float hi) {
    unsigned r;
    if constexpr (kBf16) {
        asm("cvt.rn.bf16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    } else {
        asm("cvt.rn.f16x2.f32 %0, %1, %2;\n" : "=r"(r) : "f"(hi), "f"(lo));
    }
    return r;
}
#else
__device__ void ldmatrix_x4(unsigned (&r)[4], const unsigned short* row_address);
__device__ void ldmatrix_x4_trans(unsigned (&r)[4], const unsigned short* row_address);
template <bool kBf16> __device__ void mma_16x8x16(float (&d)[4], const unsigned (&a)[4], unsigned b0, unsigned b1);
template <bool kBf16> __device__ unsigned pack2(float lo, float hi);
#endif

// ---------------------------------------------------------------------------- tiles

// Rows [row0, row0 + kRows) of a row-major (n, d) matrix of 16-bit elements into
// a shared tile with row stride kLd, in 16-byte pieces; zeros past row n and
// column d (d % 8 == 0 and 16-byte aligned rows, which the loader checks).
template <int kRows, int kD, int kLd>
__device__ __forceinline__ void load_tile_16b(unsigned short* dst, const unsigned short* __restrict__ src, int row0,
                                              int n, int d) {
    constexpr int kPieces = kD / 8;
    for (int idx = threadIdx.x; idx < kRows * kPieces; idx += MMA_THREADS) {
        const int r = idx / kPieces, c = (idx % kPieces) * 8;
        uint4 piece = make_uint4(0u, 0u, 0u, 0u);
        if (row0 + r < n && c < d)
            piece = *reinterpret_cast<const uint4*>(src + static_cast<long long>(row0 + r) * d + c);
        *reinterpret_cast<uint4*>(dst + r * kLd + c) = piece;
    }
}

// ---------------------------------------------------------------------------- the kernel

// Launch: grid = (ceil(Nq / 64), B * H), block = (128).
template <bool kBf16, int kD>
__global__ void __launch_bounds__(MMA_THREADS)
    attention_forward_mma(const unsigned short* __restrict__ q, const unsigned short* __restrict__ k,
                          const unsigned short* __restrict__ v, const bool* __restrict__ key_padding_mask,
                          int has_mask, unsigned short* __restrict__ o, float* __restrict__ lse, int H, int Nq,
                          int Nk, int d, int causal, float scale) {
    static_assert(kD % 16 == 0 && kD <= 128, "head dimension bucket must be a multiple of 16, at most 128");
    // +8 elements (16 bytes) per row: ldmatrix's 8 row addresses land in 8 different 4-bank groups
    constexpr int kLd = kD + 8;
    __shared__ __align__(16) unsigned short Ks[MMA_BC * kLd];  // also stages Q before the loop
    __shared__ __align__(16) unsigned short Vs[MMA_BC * kLd];
    __shared__ bool key_ok[MMA_BC];

    const int warp = threadIdx.x / 32, lane = threadIdx.x % 32;
    const int g = lane / 4, t = lane % 4;  // fragment row group and column pair
    const int bh = blockIdx.y, b = bh / H;
    const int q0 = blockIdx.x * MMA_BR, warp_q0 = q0 + 16 * warp;
    const long long q_offset = static_cast<long long>(bh) * Nq * d, k_offset = static_cast<long long>(bh) * Nk * d;
    const int shift = Nk - Nq;
    const int kv_end = causal ? min(Nk, q0 + MMA_BR + shift) : Nk;
    const float scale_log2 = scale * MMA_LOG2E;  // softmax in base 2: exp2f is one instruction

    // Q (16 x kD per warp) -> A fragments, kept in registers for the whole loop
    load_tile_16b<MMA_BR, kD, kLd>(Ks, q + q_offset, q0, Nq, d);
    __syncthreads();
    unsigned q_frag[kD / 16][4];
#pragma unroll
    for (int kc = 0; kc < kD / 16; ++kc)
        ldmatrix_x4(q_frag[kc], &Ks[(16 * warp + lane % 8 + 8 * ((lane / 8) % 2)) * kLd + 16 * kc + 8 * (lane / 16)]);

    float acc[kD / 8][4];  // O, 16 x kD per warp: n-tile j covers columns 8 j .. 8 j + 7
#pragma unroll
    for (int j = 0; j < kD / 8; ++j) acc[j][0] = acc[j][1] = acc[j][2] = acc[j][3] = 0.f;
    float row_max[2] = {neg_inf<float>(), neg_inf<float>()};  // rows g and g + 8, base-2 scaled
    float row_sum[2] = {0.f, 0.f};                            // this lane's columns only

    for (int k0 = 0; k0 < kv_end; k0 += MMA_BC) {
        __syncthreads();  // Q staging (first tile) or the previous tile's ldmatrix reads are done
        load_tile_16b<MMA_BC, kD, kLd>(Ks, k + k_offset, k0, Nk, d);
        load_tile_16b<MMA_BC, kD, kLd>(Vs, v + k_offset, k0, Nk, d);
        if (threadIdx.x < MMA_BC) {
            const int key = k0 + threadIdx.x;
            key_ok[threadIdx.x] = key < Nk && (!has_mask || key_padding_mask[static_cast<long long>(b) * Nk + key]);
        }
        __syncthreads();

        // S = Q K^T: 16 x 64 per warp, as 8 n-tiles of 16 x 8
        float s[MMA_BC / 8][4];
#pragma unroll
        for (int j = 0; j < MMA_BC / 8; ++j) s[j][0] = s[j][1] = s[j][2] = s[j][3] = 0.f;
#pragma unroll
        for (int kc = 0; kc < kD / 16; ++kc) {
#pragma unroll
            for (int j = 0; j < MMA_BC / 8; j += 2) {
                // matrices: keys 8j.. x dims 16kc.., same keys x dims +8, keys +8 x dims 16kc.., keys +8 x dims +8
                unsigned kb[4];
                const int i = lane / 8;
                ldmatrix_x4(kb, &Ks[(8 * j + lane % 8 + 8 * (i / 2)) * kLd + 16 * kc + 8 * (i % 2)]);
                mma_16x8x16<kBf16>(s[j], q_frag[kc], kb[0], kb[1]);
                mma_16x8x16<kBf16>(s[j + 1], q_frag[kc], kb[2], kb[3]);
            }
        }

        // mask, scale, online softmax; element e of n-tile j: row g + 8 (e / 2), key 8 j + 2 t + e % 2
        float tile_max[2] = {neg_inf<float>(), neg_inf<float>()};
#pragma unroll
        for (int j = 0; j < MMA_BC / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                const int col = 8 * j + 2 * t + e % 2, query = warp_q0 + g + 8 * (e / 2);
                const bool allowed = key_ok[col] && (!causal || k0 + col <= query + shift);
                s[j][e] = allowed ? s[j][e] * scale_log2 : neg_inf<float>();
                tile_max[e / 2] = fmaxf(tile_max[e / 2], s[j][e]);
            }
        float m[2];
#pragma unroll
        for (int r = 0; r < 2; ++r) {
            // the 4 lanes of a row group hold its 64 columns
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(MINIVL_FULL_MASK, tile_max[r], 1));
            tile_max[r] = fmaxf(tile_max[r], __shfl_xor_sync(MINIVL_FULL_MASK, tile_max[r], 2));
            const float new_max = fmaxf(row_max[r], tile_max[r]);
            m[r] = new_max == neg_inf<float>() ? 0.f : new_max;  // all masked so far: p = 0
            const float alpha = exp2f(row_max[r] - m[r]);
            row_max[r] = new_max;
            row_sum[r] *= alpha;
#pragma unroll
            for (int j = 0; j < kD / 8; ++j) {
                acc[j][2 * r] *= alpha;
                acc[j][2 * r + 1] *= alpha;
            }
        }
#pragma unroll
        for (int j = 0; j < MMA_BC / 8; ++j)
#pragma unroll
            for (int e = 0; e < 4; ++e) {
                s[j][e] = exp2f(s[j][e] - m[e / 2]);  // now P, in fp32
                row_sum[e / 2] += s[j][e];
            }

        // O += P V: n-tiles 2 kc and 2 kc + 1 of P form the A fragment of keys 16 kc .. 16 kc + 15
#pragma unroll
        for (int kc = 0; kc < MMA_BC / 16; ++kc) {
            const unsigned p_frag[4] = {
                pack2<kBf16>(s[2 * kc][0], s[2 * kc][1]), pack2<kBf16>(s[2 * kc][2], s[2 * kc][3]),
                pack2<kBf16>(s[2 * kc + 1][0], s[2 * kc + 1][1]), pack2<kBf16>(s[2 * kc + 1][2], s[2 * kc + 1][3])};
#pragma unroll
            for (int j = 0; j < kD / 8; j += 2) {
                // matrices: keys 16kc.. x dims 8j.., keys +8 x dims 8j.., keys 16kc.. x dims +8, keys +8 x dims +8
                unsigned vb[4];
                const int i = lane / 8;
                ldmatrix_x4_trans(vb, &Vs[(16 * kc + lane % 8 + 8 * (i % 2)) * kLd + 8 * j + 8 * (i / 2)]);
                mma_16x8x16<kBf16>(acc[j], p_frag, vb[0], vb[1]);
                mma_16x8x16<kBf16>(acc[j + 1], p_frag, vb[2], vb[3]);
            }
        }
    }

    // normalise once, write O as 16-bit pairs and lse (natural log) in fp32
#pragma unroll
    for (int r = 0; r < 2; ++r) {
        float total = row_sum[r];
        total += __shfl_xor_sync(MINIVL_FULL_MASK, total, 1);
        total += __shfl_xor_sync(MINIVL_FULL_MASK, total, 2);
        const float inv = total > 0.f ? 1.f / total : 0.f;
        const int query = warp_q0 + g + 8 * r;
        if (query < Nq) {
            if (t == 0)
                lse[static_cast<long long>(bh) * Nq + query] =
                    total > 0.f ? row_max[r] * MMA_LN2 + logf(total) : neg_inf<float>();
#pragma unroll
            for (int j = 0; j < kD / 8; ++j) {
                const int col = 8 * j + 2 * t;
                if (col < d)
                    *reinterpret_cast<unsigned*>(o + q_offset + static_cast<long long>(query) * d + col) =
                        pack2<kBf16>(acc[j][2 * r] * inv, acc[j][2 * r + 1] * inv);
            }
        }
    }
}

#ifndef __CUDACC_RTC__
template __global__ void attention_forward_mma<false, 64>(const unsigned short*, const unsigned short*,
                                                          const unsigned short*, const bool*, int, unsigned short*,
                                                          float*, int, int, int, int, int, float);
template __global__ void attention_forward_mma<false, 128>(const unsigned short*, const unsigned short*,
                                                           const unsigned short*, const bool*, int, unsigned short*,
                                                           float*, int, int, int, int, int, float);
template __global__ void attention_forward_mma<true, 64>(const unsigned short*, const unsigned short*,
                                                         const unsigned short*, const bool*, int, unsigned short*,
                                                         float*, int, int, int, int, int, float);
template __global__ void attention_forward_mma<true, 128>(const unsigned short*, const unsigned short*,
                                                          const unsigned short*, const bool*, int, unsigned short*,
                                                          float*, int, int, int, int, int, float);
#endif
