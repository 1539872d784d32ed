// The weight update (optimizer.cu): darknet's SGD with momentum and decay, and Adam, each one fused pass over a
// weight array and its optimizer state, in place (darknet_py/training.py update_network holds the rules).
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// For n weights: s = velocity + grad (+ decay * w where decay != 0); w -= step * s; velocity = momentum * s; then
// w = min(clip, max(-clip, w)) where clip != 0. step = rate / images per iteration, decay = decay * images.
void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float step, float momentum, float decay,
                float clip, cudaStream_t stream);

// Adam's constants for one update: beta1/beta2 and 1 - beta1/beta2 (rounded from double by the caller, as NumPy
// rounds them), the bias corrections 1 - beta^t, the rate, eps, decay (times images) and clip
// (0: none).
struct AdamStep {
    float beta1, beta2, one_minus_beta1, one_minus_beta2, correction1, correction2, rate, eps, decay, clip;
};

// For n weights: g = grad + decay * w; m = beta1*m + (1-beta1)*g; v = beta2*v + (1-beta2)*g*g;
// w -= rate * (m / correction1) / (sqrt(v / correction2) + eps); then the clip as sgd_update.
void adam_update(float* w, const float* grad, float* m, float* v, int64_t n, AdamStep step, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
