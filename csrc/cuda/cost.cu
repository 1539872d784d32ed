#include "cost.h"

#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

constexpr float SECRET_NUM = -1234.0f;

__global__ void cost_loss_kernel(const float* x, const float* truth, float* grad, float* error, int64_t n,
                                 CostType type, float scale) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        float diff = truth[i] - x[i];
        if (type == CostType::masked && truth[i] == SECRET_NUM) diff = 0.0f;
        float e = diff * diff;
        if (type == CostType::smooth && fabsf(diff) >= 1.0f) {
            e = 2.0f * fabsf(diff) - 1.0f;
            diff = diff > 0.0f ? 1.0f : -1.0f;
        }
        error[i] = e;
        grad[i] = scale * -diff;
    }
}

}  // namespace

void cost_loss(const float* x, const float* truth, float* grad, float* error, int64_t n, CostType type, float scale,
               cudaStream_t stream) {
    if (n == 0) return;
    launch("cost_loss", cost_loss_kernel, grid_for(n), BLOCK, 0, stream, x, truth, grad, error, n, type, scale);
}

}  // namespace cuda
}  // namespace darknet_py
