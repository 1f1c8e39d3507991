// common.cuh -- the few device helpers every kernel file shares: -inf, math
// overloads for float and double, and warp/block reductions with shuffles.
//
// The loader pastes this file in place of `#include "common.cuh"` before it
// hands a source to NVRTC, and nvcc finds it beside the .cu files, so it must
// use CUDA builtins only: NVRTC has no <cmath>, <cfloat> or INFINITY.
#ifndef MINIVL_COMMON_CUH
#define MINIVL_COMMON_CUH

#define MINIVL_FULL_MASK 0xffffffffu

// ----------------------------------------------------------------- constants

template <typename T> __device__ __forceinline__ T neg_inf();
template <> __device__ __forceinline__ float neg_inf<float>() {
    return __int_as_float(static_cast<int>(0xff800000u));
}
template <> __device__ __forceinline__ double neg_inf<double>() {
    return __longlong_as_double(static_cast<long long>(0xfff0000000000000ull));
}

// ----------------------------------------------------------------- math, one name for both types

__device__ __forceinline__ float math_exp(float x) { return expf(x); }
__device__ __forceinline__ double math_exp(double x) { return exp(x); }
__device__ __forceinline__ float math_log(float x) { return logf(x); }
__device__ __forceinline__ double math_log(double x) { return log(x); }
__device__ __forceinline__ float math_sqrt(float x) { return sqrtf(x); }
__device__ __forceinline__ double math_sqrt(double x) { return sqrt(x); }
__device__ __forceinline__ float math_erf(float x) { return erff(x); }
__device__ __forceinline__ double math_erf(double x) { return erf(x); }
__device__ __forceinline__ float math_tanh(float x) { return tanhf(x); }
__device__ __forceinline__ double math_tanh(double x) { return tanh(x); }

// A product that nvcc and NVRTC may not fuse into an FMA with the add that follows it
// (they contract a * b + c by default). Use it where one product must round the same way
// twice: layer norm's backward recomputes dy * gamma after averaging it, and a fused
// fma(dy, gamma, -mean) would leave the rounding error of the first product behind.
__device__ __forceinline__ float mul_rn(float a, float b) { return __fmul_rn(a, b); }
__device__ __forceinline__ double mul_rn(double a, double b) { return __dmul_rn(a, b); }

// ----------------------------------------------------------------- reductions

// Butterfly sum: after log2(32) = 5 exchanges every lane holds the warp's total.
template <typename T> __device__ __forceinline__ T warp_sum(T v) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) v += __shfl_xor_sync(MINIVL_FULL_MASK, v, offset);
    return v;
}

// Sum over the whole block; every thread gets the result. blockDim.x must be a
// multiple of 32 (whole warps), at most 1024.
template <typename T> __device__ T block_sum(T v) {
    __shared__ T warp_totals[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    v = warp_sum(v);
    __syncthreads();  // a previous call's readers must be done with warp_totals
    if (lane == 0) warp_totals[warp] = v;
    __syncthreads();
    v = (lane < static_cast<int>(blockDim.x / 32)) ? warp_totals[lane] : T(0);
    return warp_sum(v);  // every warp reduces the (at most 32) warp totals itself
}

// ----------------------------------------------------------------- online softmax statistics

// The running (max, sum of exp(x - max)) of a stream of scores (Milakov and
// Gimelshein 2018, "Online normalizer calculation for softmax"). An empty or
// all -inf stream is (-inf, 0).
template <typename T> struct MaxSum {
    T max;
    T sum;
};

template <typename T> __device__ __forceinline__ MaxSum<T> max_sum_empty() {
    return {neg_inf<T>(), T(0)};
}

// Add one score: a new maximum rescales the old sum, any other score adds its exp.
template <typename T> __device__ __forceinline__ MaxSum<T> max_sum_push(MaxSum<T> a, T x) {
    if (x > a.max) {
        a.sum = a.sum * math_exp(a.max - x) + T(1);
        a.max = x;
    } else if (x != neg_inf<T>()) {
        a.sum += math_exp(x - a.max);
    }
    return a;
}

// Merge two partial statistics (associative, so it can be a shuffle tree).
template <typename T> __device__ __forceinline__ MaxSum<T> max_sum_merge(MaxSum<T> a, MaxSum<T> b) {
    const T m = a.max > b.max ? a.max : b.max;
    if (m == neg_inf<T>()) return max_sum_empty<T>();
    return {m, a.sum * math_exp(a.max - m) + b.sum * math_exp(b.max - m)};
}

template <typename T> __device__ __forceinline__ MaxSum<T> warp_max_sum(MaxSum<T> a) {
#pragma unroll
    for (int offset = 16; offset > 0; offset >>= 1) {
        MaxSum<T> other;
        other.max = __shfl_xor_sync(MINIVL_FULL_MASK, a.max, offset);
        other.sum = __shfl_xor_sync(MINIVL_FULL_MASK, a.sum, offset);
        a = max_sum_merge(a, other);
    }
    return a;
}

// Same contract as block_sum: whole warps, every thread gets the result.
template <typename T> __device__ MaxSum<T> block_max_sum(MaxSum<T> a) {
    __shared__ T warp_max[32];
    __shared__ T warp_sum_[32];
    const int lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    a = warp_max_sum(a);
    __syncthreads();
    if (lane == 0) {
        warp_max[warp] = a.max;
        warp_sum_[warp] = a.sum;
    }
    __syncthreads();
    a = max_sum_empty<T>();
    if (lane < static_cast<int>(blockDim.x / 32)) a = {warp_max[lane], warp_sum_[lane]};
    return warp_max_sum(a);
}

#endif  // MINIVL_COMMON_CUH
