// gelu.cu -- GELU (Hendrycks & Gimpel 2016), exact erf form, GPT-2's tanh form
// and the sigmoid form (CLIP's QuickGELU), forward and backward, elementwise.
//
// Follows kernels/reference.py. GELU(x) = x * Phi(x), Phi the standard normal
// CDF = (1 + erf(x / sqrt 2)) / 2; the tanh form replaces Phi(x) by
// (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, the sigmoid form by
// sigmoid(1.702 x).
// Launch: grid-stride loop, any grid = (blocks), block = (threads) (the bias backward: see there).
// bias_gelu_*: GELU(x + bias) with the bias broadcast along rows, fused (reference.bias_gelu_forward).
#include "common.cuh"

#define GELU_SQRT_1_2 0.70710678118654752440          // 1 / sqrt(2)
#define GELU_SQRT_2_PI 0.79788456080286535588         // sqrt(2 / pi)
#define GELU_INV_SQRT_2PI 0.39894228040143267794      // 1 / sqrt(2 pi)
#define GELU_TANH_CUBIC 0.044715
#define GELU_SIGMOID_SCALE 1.702

// the `approximate` argument of both kernels (gelu.py's _FORMS)
#define GELU_ERF 0
#define GELU_TANH 1
#define GELU_SIGMOID 2

template <typename T> __device__ __forceinline__ T gelu_tanh_arg(T x) {
    return T(GELU_SQRT_2_PI) * (x + T(GELU_TANH_CUBIC) * x * x * x);
}

// 1 / (1 + exp(-z)): exp(-z) = inf for very negative z gives exactly 0, no NaN.
template <typename T> __device__ __forceinline__ T gelu_sigmoid(T z) {
    return T(1) / (T(1) + math_exp(-z));
}

// GELU(v) in the form `approximate`.
template <typename T> __device__ __forceinline__ T gelu_value(T v, int approximate) {
    if (approximate == GELU_SIGMOID) return v * gelu_sigmoid(T(GELU_SIGMOID_SCALE) * v);
    const T phi2 = approximate == GELU_TANH ? math_tanh(gelu_tanh_arg(v))
                                            : math_erf(v * T(GELU_SQRT_1_2));  // 2 Phi - 1
    return T(0.5) * v * (T(1) + phi2);
}

// dGELU/dv: Phi(v) + v phi(v) (erf form); the approximations differentiate
// their own formulas: 0.5 (1 + t) + 0.5 v (1 - t^2) du/dv (tanh form) and
// s + 1.702 v s (1 - s) (sigmoid form).
template <typename T> __device__ __forceinline__ T gelu_slope(T v, int approximate) {
    if (approximate == GELU_SIGMOID) {
        const T z = T(GELU_SIGMOID_SCALE) * v;
        const T s = gelu_sigmoid(z);
        // 1 - s as sigmoid(-z), not by subtraction: full precision where s is near 1
        return s + z * s * gelu_sigmoid(-z);
    }
    if (approximate == GELU_TANH) {
        const T t = math_tanh(gelu_tanh_arg(v));
        const T du = T(GELU_SQRT_2_PI) * (T(1) + T(3 * GELU_TANH_CUBIC) * v * v);
        return T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du;
    }
    const T cdf = T(0.5) * (T(1) + math_erf(v * T(GELU_SQRT_1_2)));
    const T pdf = math_exp(T(-0.5) * v * v) * T(GELU_INV_SQRT_2PI);
    return cdf + v * pdf;
}

template <typename T>
__global__ void gelu_forward(const T* __restrict__ x, T* __restrict__ y, long long n, int approximate) {
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        y[i] = gelu_value(x[i], approximate);
    }
}

// dy * dGELU/dx
template <typename T>
__global__ void gelu_backward(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx, long long n,
                              int approximate) {
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        dx[i] = dy[i] * gelu_slope(x[i], approximate);
    }
}

// ---------------------------------------------------------------- GELU(x + bias)
// x, y: (rows, cols) row-major; bias: (cols,). Grid-stride over the elements.
template <typename T>
__global__ void bias_gelu_forward(const T* __restrict__ x, const T* __restrict__ bias, T* __restrict__ y,
                                  long long n, int cols, int approximate) {
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        y[i] = gelu_value(x[i] + bias[i % cols], approximate);
    }
}

// dx = dy * GELU'(x + bias), and partial[chunk, j] = the sum of dx[r, j] over the rows r of
// chunk `blockIdx.y` (rows_per_chunk of them). Thread j of a block handles column j: a warp
// reads 32 neighbouring columns of a row, so every access is coalesced.
// Launch: grid = (ceil(cols / blockDim.x), chunks), block = (threads).
template <typename T>
__global__ void bias_gelu_backward(const T* __restrict__ x, const T* __restrict__ bias, const T* __restrict__ dy,
                                   T* __restrict__ dx, T* __restrict__ partial, long long rows, int cols,
                                   long long rows_per_chunk, int approximate) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    const long long r0 = blockIdx.y * rows_per_chunk;
    const long long r1 = r0 + rows_per_chunk < rows ? r0 + rows_per_chunk : rows;
    const T b = bias[j];
    T acc = T(0);
    for (long long r = r0; r < r1; ++r) {
        const long long i = r * cols + j;
        const T d = dy[i] * gelu_slope(x[i] + b, approximate);
        dx[i] = d;
        acc += d;
    }
    partial[blockIdx.y * static_cast<long long>(cols) + j] = acc;
}

// dbias[j] = the sum over chunks of partial[chunk, j], in chunk order (deterministic).
// Launch: grid = (ceil(cols / blockDim.x)), block = (threads).
template <typename T>
__global__ void bias_grad_reduce(const T* __restrict__ partial, T* __restrict__ dbias, int chunks, int cols) {
    const int j = blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= cols) return;
    T acc = T(0);
    for (int c = 0; c < chunks; ++c) acc += partial[static_cast<long long>(c) * cols + j];
    dbias[j] = acc;
}

#ifndef __CUDACC_RTC__
template __global__ void gelu_forward<float>(const float*, float*, long long, int);
template __global__ void gelu_forward<double>(const double*, double*, long long, int);
template __global__ void gelu_backward<float>(const float*, const float*, float*, long long, int);
template __global__ void gelu_backward<double>(const double*, const double*, double*, long long, int);
template __global__ void bias_gelu_forward<float>(const float*, const float*, float*, long long, int, int);
template __global__ void bias_gelu_forward<double>(const double*, const double*, double*, long long, int, int);
template __global__ void bias_gelu_backward<float>(const float*, const float*, const float*, float*, float*,
                                                   long long, int, long long, int);
template __global__ void bias_gelu_backward<double>(const double*, const double*, const double*, double*, double*,
                                                    long long, int, long long, int);
template __global__ void bias_grad_reduce<float>(const float*, float*, int, int);
template __global__ void bias_grad_reduce<double>(const double*, double*, int, int);
#endif
