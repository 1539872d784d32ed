// Darknet's elementwise activations and their derivatives as device functions, for every kernel that applies an
// activation in its epilogue (activations.cu, batch normalization, convolutions). Formulas and constants are
// darknet_py/activations.py's (darknet's own): the derivative is taken at the pre-activation x, with the values at
// the kinks listed there.
#pragma once
#include "../activations.h"
#include "common.cuh"

namespace darknet_py {
namespace cuda {

__device__ __forceinline__ float sigmoid(float x) {
    const float e = expf(-fabsf(x));   // never overflows
    return x >= 0.0f ? 1.0f / (1.0f + e) : e / (1.0f + e);
}

// darknet's softplus with threshold 20 (activate_array_mish)
__device__ __forceinline__ float softplus20(float x) {
    return x > 20.0f ? x : (x < -20.0f ? expf(x) : log1pf(expf(x)));
}

__device__ __forceinline__ float activate(float x, Activation act) {
    switch (act) {
        case Activation::linear: return x;
        case Activation::logistic: return sigmoid(x);
        case Activation::loggy: return 2.0f * sigmoid(x) - 1.0f;
        case Activation::tanh: return tanhf(x);
        case Activation::relu: return x > 0.0f ? x : 0.0f;
        case Activation::relu6: return fminf(fmaxf(x, 0.0f), 6.0f);
        case Activation::leaky: return x > 0.0f ? x : 0.1f * x;
        case Activation::relie: return x > 0.0f ? x : 0.01f * x;
        case Activation::ramp: return (x > 0.0f ? x : 0.0f) + 0.1f * x;
        case Activation::elu: return x >= 0.0f ? x : expm1f(fminf(x, 0.0f));
        case Activation::selu: return x >= 0.0f ? 1.0507f * x : (1.0507f * 1.6732f) * expm1f(fminf(x, 0.0f));
        case Activation::gelu: return 0.5f * x * (1.0f + tanhf(0.797885f * x + 0.035677f * x * x * x));
        case Activation::plse:
            return x < -4.0f ? 0.01f * (x + 4.0f) : (x > 4.0f ? 0.01f * (x - 4.0f) + 1.0f : 0.125f * x + 0.5f);
        case Activation::hardtan: return fminf(fmaxf(x, -1.0f), 1.0f);
        case Activation::lhtan: return x < 0.0f ? 0.001f * x : (x > 1.0f ? 0.001f * (x - 1.0f) + 1.0f : x);
        case Activation::stair: {
            const float n = floorf(x), half = floorf(x / 2.0f);
            return fmodf(n, 2.0f) == 0.0f ? half : (x - n) + half;
        }
        case Activation::swish: return x * sigmoid(x);
        case Activation::mish: return x * tanhf(softplus20(x));
        case Activation::hard_mish: return x > 0.0f ? x : (x > -2.0f ? 0.5f * x * x + x : 0.0f);
    }
    return x;
}

// d activate(x) / dx
__device__ __forceinline__ float gradient(float x, Activation act) {
    switch (act) {
        case Activation::linear: return 1.0f;
        case Activation::logistic: {
            const float s = sigmoid(x);
            return s * (1.0f - s);
        }
        case Activation::loggy: {
            const float s = sigmoid(x);
            return 2.0f * s * (1.0f - s);
        }
        case Activation::tanh: {
            const float t = tanhf(x);
            return 1.0f - t * t;
        }
        case Activation::relu: return x > 0.0f ? 1.0f : 0.0f;
        case Activation::relu6: return x > 0.0f && x < 6.0f ? 1.0f : 0.0f;
        case Activation::leaky: return x > 0.0f ? 1.0f : 0.1f;
        case Activation::relie: return x > 0.0f ? 1.0f : 0.01f;
        case Activation::ramp: return (x > 0.0f ? 1.0f : 0.0f) + 0.1f;
        case Activation::elu: return x >= 0.0f ? 1.0f : expf(fminf(x, 0.0f));
        case Activation::selu: return x >= 0.0f ? 1.0507f : (1.0507f * 1.6732f) * expf(fminf(x, 0.0f));
        case Activation::gelu: {
            const float x2 = x * x, t = tanhf(0.797885f * x + 0.035677f * x2 * x);
            return 0.5f * (1.0f + t) + 0.5f * x * (1.0f - t * t) * (0.797885f + 3.0f * 0.035677f * x2);
        }
        case Activation::plse: return x < -4.0f || x > 4.0f ? 0.01f : 0.125f;
        case Activation::hardtan: return x > -1.0f && x < 1.0f ? 1.0f : 0.0f;
        case Activation::lhtan: return x > 0.0f && x < 1.0f ? 1.0f : 0.001f;
        case Activation::stair: {
            const float n = floorf(x);
            return fmodf(n, 2.0f) != 0.0f && x != n ? 1.0f : 0.0f;
        }
        case Activation::swish: {
            const float s = sigmoid(x);
            return s + x * s * (1.0f - s);
        }
        case Activation::mish: {
            const float t = tanhf(softplus20(x));
            const float dsoftplus = x > 20.0f ? 1.0f : (x < -20.0f ? expf(x) : sigmoid(x));
            return t + x * (1.0f - t * t) * dsoftplus;
        }
        case Activation::hard_mish: return x > 0.0f ? 1.0f : (x > -2.0f ? x + 1.0f : 0.0f);
    }
    return 1.0f;
}

}  // namespace cuda
}  // namespace darknet_py
