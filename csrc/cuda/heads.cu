#include "heads.h"

#include "activations.cuh"
#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

__device__ __forceinline__ bool contains(const ValueSet& set, int64_t value) {
    return value >= set.from || (value < 32 && ((set.bits >> value) & 1u));
}

__global__ void head_activate_kernel(const float* x, float* y, HeadLayout layout, ValueSet logistic,
                                     ValueSet scaled, float alpha, float beta) {
    for (int64_t i = grid_start(); i < layout.n; i += grid_stride()) {
        const int64_t value = i / layout.inner % layout.values;
        float v = x[i];
        if (contains(logistic, value)) v = sigmoid(v);
        if (contains(scaled, value)) v = v * alpha + beta;
        y[i] = v;
    }
}

__global__ void head_activate_backward_kernel(const float* x, const float* dy, float* dx, HeadLayout layout,
                                              ValueSet logistic, ValueSet scaled, float alpha) {
    for (int64_t i = grid_start(); i < layout.n; i += grid_stride()) {
        const int64_t value = i / layout.inner % layout.values;
        float d = dy[i];
        if (contains(scaled, value)) d *= alpha;
        if (contains(logistic, value)) d *= gradient(x[i], Activation::logistic);
        dx[i] = d;
    }
}

}  // namespace

void head_activate(const float* x, float* y, HeadLayout layout, ValueSet logistic, ValueSet scaled, float alpha,
                   float beta, cudaStream_t stream) {
    if (layout.n == 0) return;
    launch("head_activate", head_activate_kernel, grid_for(layout.n), BLOCK, 0, stream, x, y, layout, logistic,
           scaled, alpha, beta);
}

void head_activate_backward(const float* x, const float* dy, float* dx, HeadLayout layout, ValueSet logistic,
                            ValueSet scaled, float alpha, cudaStream_t stream) {
    if (layout.n == 0) return;
    launch("head_activate_backward", head_activate_backward_kernel, grid_for(layout.n), BLOCK, 0, stream, x, dy,
           dx, layout, logistic, scaled, alpha);
}

}  // namespace cuda
}  // namespace darknet_py
