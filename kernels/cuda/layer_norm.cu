// layer_norm.cu -- layer normalisation over the last axis, forward and backward.
//
// Follows kernels/reference.py (Ba et al. 2016, "Layer Normalization").
// Forward and dx: one block per row (rows = product of the leading axes).
// The mean and the variance are two block reductions, the variance taken
// around the mean (two-pass) as the reference does, which stays accurate for
// inputs with a large offset where E[x^2] - E[x]^2 would cancel.
// dgamma and dbeta sum over *rows*, so they are a column reduction: each
// block adds up a slab of rows for 32 columns into a partial sum, and a second
// kernel adds the partials -- no atomics, the same answer on every run.
#include "common.cuh"

// Launch: grid = (rows), block = (multiple of 32, <= 1024).
template <typename T>
__global__ void layer_norm_forward(const T* __restrict__ x, const T* __restrict__ gamma, const T* __restrict__ beta,
                                   T* __restrict__ y, T* __restrict__ mean_out, T* __restrict__ rstd_out, int cols,
                                   T eps) {
    const long long offset = static_cast<long long>(blockIdx.x) * cols;
    const T* xr = x + offset;

    T sum = T(0);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) sum += xr[c];
    const T mean = block_sum(sum) / T(cols);

    T sq = T(0);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const T d = xr[c] - mean;
        sq += d * d;
    }
    const T rstd = T(1) / math_sqrt(block_sum(sq) / T(cols) + eps);

#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) y[offset + c] = (xr[c] - mean) * rstd * gamma[c] + beta[c];
    if (threadIdx.x == 0) {
        mean_out[blockIdx.x] = mean;
        rstd_out[blockIdx.x] = rstd;
    }
}

// dx = rstd * (g - mean(g) - xhat * mean(g * xhat)),  g = dy * gamma.
// Launch: grid = (rows), block = (multiple of 32, <= 1024).
template <typename T>
__global__ void layer_norm_backward_dx(const T* __restrict__ dy, const T* __restrict__ x, const T* __restrict__ gamma,
                                       const T* __restrict__ mean, const T* __restrict__ rstd, T* __restrict__ dx,
                                       int cols) {
    const long long offset = static_cast<long long>(blockIdx.x) * cols;
    const T mu = mean[blockIdx.x], rs = rstd[blockIdx.x];

    T sum_g = T(0), sum_g_xhat = T(0);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const T g = mul_rn(dy[offset + c], gamma[c]);  // rounded as in the loop below: no FMA
        sum_g += g;
        sum_g_xhat += g * (x[offset + c] - mu) * rs;
    }
    const T mean_g = block_sum(sum_g) / T(cols);
    const T mean_g_xhat = block_sum(sum_g_xhat) / T(cols);

#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) {
        const T xhat = (x[offset + c] - mu) * rs;
        dx[offset + c] = rs * (mul_rn(dy[offset + c], gamma[c]) - mean_g - xhat * mean_g_xhat);
    }
}

// Partial sums of dgamma = sum_rows dy * xhat and dbeta = sum_rows dy.
// Launch: grid = (ceil(cols / 32), slabs), block = (32, LN_SLAB_ROWS). Block
// (bx, by) covers columns [32 bx, 32 bx + 32) and rows by*16, by*16 + slabs*16,
// ...; a warp reads 32 neighbouring columns of one row (coalesced). Writes
// partial_{gamma,beta}[by * cols + col].
#define LN_SLAB_ROWS 16
template <typename T>
__global__ void layer_norm_backward_params_partial(const T* __restrict__ dy, const T* __restrict__ x,
                                                   const T* __restrict__ mean, const T* __restrict__ rstd,
                                                   T* __restrict__ partial_gamma, T* __restrict__ partial_beta,
                                                   int rows, int cols) {
    __shared__ T sum_gamma[LN_SLAB_ROWS][33];  // +1 column: no bank conflicts when read by column
    __shared__ T sum_beta[LN_SLAB_ROWS][33];
    const int col = blockIdx.x * 32 + threadIdx.x;
    T acc_gamma = T(0), acc_beta = T(0);
    if (col < cols) {
#pragma unroll 4
        for (int row = blockIdx.y * LN_SLAB_ROWS + threadIdx.y; row < rows; row += gridDim.y * LN_SLAB_ROWS) {
            const long long i = static_cast<long long>(row) * cols + col;
            acc_gamma += dy[i] * (x[i] - mean[row]) * rstd[row];
            acc_beta += dy[i];
        }
    }
    sum_gamma[threadIdx.y][threadIdx.x] = acc_gamma;
    sum_beta[threadIdx.y][threadIdx.x] = acc_beta;
    __syncthreads();
    if (threadIdx.y == 0 && col < cols) {
        T g = T(0), b = T(0);
#pragma unroll
        for (int r = 0; r < LN_SLAB_ROWS; ++r) {
            g += sum_gamma[r][threadIdx.x];
            b += sum_beta[r][threadIdx.x];
        }
        partial_gamma[static_cast<long long>(blockIdx.y) * cols + col] = g;
        partial_beta[static_cast<long long>(blockIdx.y) * cols + col] = b;
    }
}

// dgamma[col] = sum over slabs of partial_gamma[slab, col] (and dbeta alike).
// Launch: grid = (ceil(cols / 256)), block = (256).
template <typename T>
__global__ void layer_norm_backward_params_reduce(const T* __restrict__ partial_gamma, const T* __restrict__ partial_beta,
                                                  T* __restrict__ dgamma, T* __restrict__ dbeta, int slabs, int cols) {
    const int col = blockIdx.x * blockDim.x + threadIdx.x;
    if (col >= cols) return;
    T g = T(0), b = T(0);
    for (int s = 0; s < slabs; ++s) {
        g += partial_gamma[static_cast<long long>(s) * cols + col];
        b += partial_beta[static_cast<long long>(s) * cols + col];
    }
    dgamma[col] = g;
    dbeta[col] = b;
}

#ifndef __CUDACC_RTC__
#define INSTANTIATE(T)                                                                                               \
    template __global__ void layer_norm_forward<T>(const T*, const T*, const T*, T*, T*, T*, int, T);                \
    template __global__ void layer_norm_backward_dx<T>(const T*, const T*, const T*, const T*, const T*, T*, int);   \
    template __global__ void layer_norm_backward_params_partial<T>(const T*, const T*, const T*, const T*, T*, T*,   \
                                                                   int, int);                                        \
    template __global__ void layer_norm_backward_params_reduce<T>(const T*, const T*, T*, T*, int, int);
INSTANTIATE(float)
INSTANTIATE(double)
#undef INSTANTIATE
#endif
