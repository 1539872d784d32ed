#include "optimizer.h"

#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

// darknet's constrain_cpu: min(clip, max(-clip, w)), which a negative clip makes clip everywhere, as there
__device__ __forceinline__ float clipped(float w, float clip) {
    return clip != 0.0f ? fminf(fmaxf(w, -clip), clip) : w;
}

__global__ void sgd_update_kernel(float* w, const float* grad, float* velocity, int64_t n, float step,
                                  float momentum, float decay, float clip) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        float s = velocity[i] + grad[i];
        if (decay != 0.0f) s += decay * w[i];
        w[i] = clipped(w[i] - step * s, clip);
        velocity[i] = momentum * s;
    }
}

__global__ void adam_update_kernel(float* w, const float* grad, float* m, float* v, int64_t n, AdamStep p) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const float g = grad[i] + p.decay * w[i];
        const float mi = p.beta1 * m[i] + p.one_minus_beta1 * g;
        const float vi = p.beta2 * v[i] + p.one_minus_beta2 * g * g;
        m[i] = mi;
        v[i] = vi;
        w[i] = clipped(w[i] - p.rate * (mi / p.correction1) / (sqrtf(vi / p.correction2) + p.eps), p.clip);
    }
}

}  // namespace

void sgd_update(float* w, const float* grad, float* velocity, int64_t n, float step, float momentum, float decay,
                float clip, cudaStream_t stream) {
    if (n == 0) return;
    launch("sgd_update", sgd_update_kernel, grid_for(n), BLOCK, 0, stream, w, grad, velocity, n, step, momentum,
           decay, clip);
}

void adam_update(float* w, const float* grad, float* m, float* v, int64_t n, AdamStep step, cudaStream_t stream) {
    if (n == 0) return;
    launch("adam_update", adam_update_kernel, grid_for(n), BLOCK, 0, stream, w, grad, m, v, n, step);
}

}  // namespace cuda
}  // namespace darknet_py
