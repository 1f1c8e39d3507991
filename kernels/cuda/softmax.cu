// softmax.cu -- softmax and log-softmax over the last axis, forward and backward.
//
// Follows kernels/reference.py (the spec). One block per row: pass 1 reads the
// row once and keeps the online (max, sum of exp) statistics per thread
// (Milakov & Gimelshein 2018), merged across the block with warp shuffles;
// pass 2 writes the output (its re-read of the row hits L1/L2). A row of all
// -inf gives zeros for softmax and -inf for log-softmax, never NaN.
//
// Launch: grid = (rows), block = (a multiple of 32, <= 1024), no dynamic smem.
#include "common.cuh"

template <typename T>
__device__ MaxSum<T> row_max_sum(const T* __restrict__ row, int cols) {
    MaxSum<T> stats = max_sum_empty<T>();
    const int stride = blockDim.x;
    int c = threadIdx.x;
    // Four independent loads before the dependent updates: a memory-bound pass
    // needs several loads in flight per thread, not one at a time.
    for (; c + 3 * stride < cols; c += 4 * stride) {
        const T x0 = row[c], x1 = row[c + stride], x2 = row[c + 2 * stride], x3 = row[c + 3 * stride];
        stats = max_sum_push(max_sum_push(max_sum_push(max_sum_push(stats, x0), x1), x2), x3);
    }
    for (; c < cols; c += stride) stats = max_sum_push(stats, row[c]);
    return block_max_sum(stats);
}

// y = exp(x - max) / sum(exp(x - max))
template <typename T>
__global__ void softmax_forward(const T* __restrict__ x, T* __restrict__ y, int cols) {
    const long long offset = static_cast<long long>(blockIdx.x) * cols;
    const MaxSum<T> stats = row_max_sum(x + offset, cols);
    // all -inf row: exp(-inf - 0) * 0 = 0 instead of exp(-inf + inf) / 0 = NaN
    const T max = stats.max == neg_inf<T>() ? T(0) : stats.max;
    const T inv_sum = stats.sum > T(0) ? T(1) / stats.sum : T(0);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) y[offset + c] = math_exp(x[offset + c] - max) * inv_sum;
}

// y = x - logsumexp(x)
template <typename T>
__global__ void log_softmax_forward(const T* __restrict__ x, T* __restrict__ y, int cols) {
    const long long offset = static_cast<long long>(blockIdx.x) * cols;
    const MaxSum<T> stats = row_max_sum(x + offset, cols);
    // all -inf row: logsumexp is -inf; subtracting 0 leaves every entry at -inf
    const T lse = stats.sum > T(0) ? stats.max + math_log(stats.sum) : T(0);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) y[offset + c] = x[offset + c] - lse;
}

// dx = y * (dy - sum(dy * y))
template <typename T>
__global__ void softmax_backward(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx, int cols) {
    const long long offset = static_cast<long long>(blockIdx.x) * cols;
    T dot = T(0);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dot += dy[offset + c] * y[offset + c];
    dot = block_sum(dot);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dx[offset + c] = y[offset + c] * (dy[offset + c] - dot);
}

// dx = dy - exp(y) * sum(dy), exp(y) being the softmax
template <typename T>
__global__ void log_softmax_backward(const T* __restrict__ y, const T* __restrict__ dy, T* __restrict__ dx, int cols) {
    const long long offset = static_cast<long long>(blockIdx.x) * cols;
    T total = T(0);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) total += dy[offset + c];
    total = block_sum(total);
#pragma unroll 4
    for (int c = threadIdx.x; c < cols; c += blockDim.x) dx[offset + c] = dy[offset + c] - math_exp(y[offset + c]) * total;
}

// NVRTC builds only the instantiations the loader names (name_expressions);
// nvcc (CI, no GPU) builds them all so every template body is compiled.
#ifndef __CUDACC_RTC__
template __global__ void softmax_forward<float>(const float*, float*, int);
template __global__ void softmax_forward<double>(const double*, double*, int);
template __global__ void log_softmax_forward<float>(const float*, float*, int);
template __global__ void log_softmax_forward<double>(const double*, double*, int);
template __global__ void softmax_backward<float>(const float*, const float*, float*, int);
template __global__ void softmax_backward<double>(const double*, const double*, double*, int);
template __global__ void log_softmax_backward<float>(const float*, const float*, float*, int);
template __global__ void log_softmax_backward<double>(const double*, const double*, double*, int);
#endif
