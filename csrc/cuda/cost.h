// The [cost] layer's loss (cost.cu): darknet's per-value errors and deltas (forward_cost_layer, l2_cpu,
// smooth_l1_cpu), elementwise; the caller sums the errors.
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// sse: squared error; masked: sse where truth != -1234 (darknet's SECRET_NUM), 0 elsewhere; smooth: sse where
// |truth - x| < 1, else 2|truth - x| - 1 (smooth L1 with darknet's scaling).
enum class CostType : int { sse, masked, smooth };

// For n values x and their truth, with diff = truth - x (masked: 0 where truth is SECRET_NUM): error = the cost of
// `type`, grad = scale * -d, d = diff (smooth: sign(diff) where |diff| >= 1), the gradient's sign of darknet's delta.
void cost_loss(const float* x, const float* truth, float* grad, float* error, int64_t n, CostType type, float scale,
               cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
