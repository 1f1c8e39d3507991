// attention_ladder.cu -- the first two rungs of the attention ladder, fp32
// forward: the slow, plain versions that attention.cu (rungs 3 and 4) and
// attention_mma.cu (rung 5) improve on. The whole ladder, one line a rung, with
// the command that runs it, is in attention_ladder.py's docstring.
//
//   1  naive: S = scale Q K^T written to device memory (Nq x Nk per head), a
//      softmax over each row of S, then O = P V: three kernels, O(N^2) memory
//   2  online softmax: one thread per query row walks the keys once, keeping
//      the running max and sum (Milakov and Gimelshein 2018) and rescaling its
//      output accumulator; no N x N memory, but every K and V row is read
//      from global memory by every query
//
// Follows kernels/reference.py. Layout as in attention.cu: q, o (B, H, Nq, d);
// k, v (B, H, Nk, d); lse (B, H, Nq); key_padding_mask (B, Nk), True = a real
// key (read only when has_mask); causal: query i sits at position
// i + (Nk - Nq). Fully masked rows give o = 0 and lse = -inf.
#include "common.cuh"

#define LADDER_MAX_D 128  // the accumulator of rung 2 lives in registers / local memory

__device__ __forceinline__ bool key_allowed(const bool* __restrict__ key_padding_mask, int has_mask, int b, int Nk,
                                            int key, int query, int shift, int causal) {
    return (!has_mask || key_padding_mask[static_cast<long long>(b) * Nk + key]) &&
           (!causal || key <= query + shift);
}

// ============================================================================ 1
// 1a: s[bh, i, j] = scale q_i . k_j, or -inf where the key is masked.
// Launch: grid (ceil(Nk / 32), ceil(Nq / 8), B * H), block (32, 8).
extern "C" __global__ void attention1_scores(const float* __restrict__ q, const float* __restrict__ k,
                                             const bool* __restrict__ key_padding_mask, int has_mask,
                                             float* __restrict__ s, int H, int Nq, int Nk, int d, int causal,
                                             float scale) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    const int bh = blockIdx.z;
    if (i >= Nq || j >= Nk) return;
    float score = neg_inf<float>();
    if (key_allowed(key_padding_mask, has_mask, bh / H, Nk, j, i, Nk - Nq, causal)) {
        const float* qi = q + (static_cast<long long>(bh) * Nq + i) * d;
        const float* kj = k + (static_cast<long long>(bh) * Nk + j) * d;
        float dot = 0.f;
        for (int c = 0; c < d; ++c) dot += qi[c] * kj[c];
        score = dot * scale;
    }
    s[(static_cast<long long>(bh) * Nq + i) * Nk + j] = score;
}

// 1b: each row of s becomes its softmax, in place, and lse = max + log(sum).
// One thread per row, three passes over it. Launch: grid (ceil(rows / 256)), block (256).
extern "C" __global__ void attention1_softmax(float* __restrict__ s, float* __restrict__ lse, long long rows, int Nk) {
    const long long row = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;
    if (row >= rows) return;
    float* x = s + row * Nk;
    float m = neg_inf<float>();
    for (int j = 0; j < Nk; ++j) m = fmaxf(m, x[j]);
    if (m == neg_inf<float>()) {  // every key masked
        for (int j = 0; j < Nk; ++j) x[j] = 0.f;
        lse[row] = neg_inf<float>();
        return;
    }
    float total = 0.f;
    for (int j = 0; j < Nk; ++j) {
        x[j] = expf(x[j] - m);
        total += x[j];
    }
    for (int j = 0; j < Nk; ++j) x[j] /= total;
    lse[row] = m + logf(total);
}

// 1c: o[bh, i, c] = sum_j p[bh, i, j] v[bh, j, c], one thread per output element.
// Launch: grid (ceil(d / 32), ceil(Nq / 8), B * H), block (32, 8).
extern "C" __global__ void attention1_values(const float* __restrict__ p, const float* __restrict__ v,
                                             float* __restrict__ o, int Nq, int Nk, int d) {
    const int c = blockIdx.x * blockDim.x + threadIdx.x, i = blockIdx.y * blockDim.y + threadIdx.y;
    const int bh = blockIdx.z;
    if (i >= Nq || c >= d) return;
    const float* pi = p + (static_cast<long long>(bh) * Nq + i) * Nk;
    const float* vh = v + static_cast<long long>(bh) * Nk * d;
    float acc = 0.f;
    for (int j = 0; j < Nk; ++j) acc += pi[j] * vh[static_cast<long long>(j) * d + c];
    o[(static_cast<long long>(bh) * Nq + i) * d + c] = acc;
}

// ============================================================================ 2
// One thread per (head, query row), one pass over the keys: a score above the
// running max m rescales the running sum and the accumulator by exp(m_old - m).
// Launch: grid (ceil(rows / 128)), block (128), rows = B * H * Nq; d <= LADDER_MAX_D.
extern "C" __global__ void attention2_online(const float* __restrict__ q, const float* __restrict__ k,
                                             const float* __restrict__ v, const bool* __restrict__ key_padding_mask,
                                             int has_mask, float* __restrict__ o, float* __restrict__ lse,
                                             long long rows, int H, int Nq, int Nk, int d, int causal, float scale) {
    const long long row = static_cast<long long>(blockIdx.x) * blockDim.x + threadIdx.x;  // bh * Nq + i
    if (row >= rows) return;
    const long long bh = row / Nq;
    const int i = static_cast<int>(row % Nq), b = static_cast<int>(bh / H);
    const float* qi = q + row * d;
    const float* kh = k + bh * Nk * d;
    const float* vh = v + bh * Nk * d;
    float acc[LADDER_MAX_D];
    for (int c = 0; c < d; ++c) acc[c] = 0.f;
    float m = neg_inf<float>(), total = 0.f;
    for (int j = 0; j < Nk; ++j) {
        if (!key_allowed(key_padding_mask, has_mask, b, Nk, j, i, Nk - Nq, causal)) continue;
        const float* kj = kh + static_cast<long long>(j) * d;
        const float* vj = vh + static_cast<long long>(j) * d;
        float x = 0.f;
        for (int c = 0; c < d; ++c) x += qi[c] * kj[c];
        x *= scale;
        if (x > m) {  // a new maximum: what was summed so far shrinks by exp(m - x)
            const float alpha = expf(m - x);  // m = -inf at the first key: alpha = 0
            total = total * alpha + 1.f;
            for (int c = 0; c < d; ++c) acc[c] = acc[c] * alpha + vj[c];
            m = x;
        } else {
            const float p = expf(x - m);
            total += p;
            for (int c = 0; c < d; ++c) acc[c] += p * vj[c];
        }
    }
    const float inv = total > 0.f ? 1.f / total : 0.f;
    for (int c = 0; c < d; ++c) o[row * d + c] = acc[c] * inv;
    lse[row] = total > 0.f ? m + logf(total) : neg_inf<float>();
}
