// gelu.cu -- GELU (Hendrycks & Gimpel 2016), exact erf form, GPT-2's tanh form
// and the sigmoid form (CLIP's QuickGELU), forward and backward, elementwise.
//
// Follows kernels/reference.py. GELU(x) = x * Phi(x), Phi the standard normal
// CDF = (1 + erf(x / sqrt 2)) / 2; the tanh form replaces Phi(x) by
// (1 + tanh(sqrt(2/pi) (x + 0.044715 x^3))) / 2, the sigmoid form by
// sigmoid(1.702 x).
// Launch: grid-stride loop, any grid = (blocks), block = (threads).
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

template <typename T>
__global__ void gelu_forward(const T* __restrict__ x, T* __restrict__ y, long long n, int approximate) {
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const T v = x[i];
        if (approximate == GELU_SIGMOID) {
            y[i] = v * gelu_sigmoid(T(GELU_SIGMOID_SCALE) * v);
        } else {
            const T phi2 = approximate == GELU_TANH ? math_tanh(gelu_tanh_arg(v))
                                                    : math_erf(v * T(GELU_SQRT_1_2));  // 2 Phi - 1
            y[i] = T(0.5) * v * (T(1) + phi2);
        }
    }
}

// dy * dGELU/dx: Phi(x) + x phi(x) (erf form); the approximations differentiate
// their own formulas: 0.5 (1 + t) + 0.5 x (1 - t^2) du/dx (tanh form) and
// s + 1.702 x s (1 - s) (sigmoid form).
template <typename T>
__global__ void gelu_backward(const T* __restrict__ x, const T* __restrict__ dy, T* __restrict__ dx, long long n,
                              int approximate) {
    for (long long i = blockIdx.x * static_cast<long long>(blockDim.x) + threadIdx.x; i < n;
         i += static_cast<long long>(gridDim.x) * blockDim.x) {
        const T v = x[i];
        T slope;
        if (approximate == GELU_SIGMOID) {
            const T z = T(GELU_SIGMOID_SCALE) * v;
            const T s = gelu_sigmoid(z);
            // 1 - s as sigmoid(-z), not by subtraction: full precision where s is near 1
            slope = s + z * s * gelu_sigmoid(-z);
        } else if (approximate == GELU_TANH) {
            const T t = math_tanh(gelu_tanh_arg(v));
            const T du = T(GELU_SQRT_2_PI) * (T(1) + T(3 * GELU_TANH_CUBIC) * v * v);
            slope = T(0.5) * (T(1) + t) + T(0.5) * v * (T(1) - t * t) * du;
        } else {
            const T cdf = T(0.5) * (T(1) + math_erf(v * T(GELU_SQRT_1_2)));
            const T pdf = math_exp(T(-0.5) * v * v) * T(GELU_INV_SQRT_2PI);
            slope = cdf + v * pdf;
        }
        dx[i] = dy[i] * slope;
    }
}

#ifndef __CUDACC_RTC__
template __global__ void gelu_forward<float>(const float*, float*, long long, int);
template __global__ void gelu_forward<double>(const double*, double*, long long, int);
template __global__ void gelu_backward<float>(const float*, const float*, float*, long long, int);
template __global__ void gelu_backward<double>(const double*, const double*, double*, long long, int);
#endif
