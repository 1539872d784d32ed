// Batch normalization kernels (batchnorm.cu), darknet's (darknet_py/layers/batchnorm.py has the formulas), on
// arrays of shape (batch, channels, spatial): a [convolutional] output has spatial = h*w, a [connected] one 1.
// Per-channel statistics and sums are reductions over the batch*spatial values of a channel, in two stages: a
// group of threads reduces each chunk of a channel into partial results (`workspace`), then one warp per channel
// combines its chunks in double precision. Deterministic: no atomics.
#pragma once
#include <cstdint>

#include "../activations.h"
#include "runtime.h"

namespace darknet_py {
namespace cuda {

constexpr float BN_EPSILON = 0.00001f;   // darknet's: x_hat = (x - mean) / sqrt(variance + .00001)

// Floats of `workspace` any of the reductions below needs for this shape.
int64_t batchnorm_workspace_floats(int64_t batch, int64_t channels, int64_t spatial);

// Training statistics of x over batch*spatial (>= 2) values per channel: mean[c], and inv_std[c] =
// 1/sqrt(variance + BN_EPSILON) with the unbiased variance (divided by batch*spatial - 1, as darknet's CPU code).
// rolling_mean and rolling_variance (if not null) become (1 - momentum) * rolling + momentum * statistic.
void batchnorm_statistics(const float* x, int64_t batch, int64_t channels, int64_t spatial, float momentum,
                          float* mean, float* inv_std, float* rolling_mean, float* rolling_variance, float* workspace,
                          cudaStream_t stream);

// inv_std[c] = 1/sqrt(variance[c] + BN_EPSILON) (inference: from the rolling variance).
void batchnorm_inverse_std(const float* variance, float* inv_std, int64_t channels, cudaStream_t stream);

// y = act(x_hat * scale[c] + bias[c]) with x_hat = (x - mean[c]) * inv_std[c]; y may be x.
void batchnorm_normalize(const float* x, float* y, int64_t batch, int64_t channels, int64_t spatial,
                         const float* mean, const float* inv_std, const float* scale, const float* bias,
                         Activation act, cudaStream_t stream);

// The gradients of batchnorm_normalize for dy = d loss / d y, where mean and inv_std are the training statistics
// of x (`train`: the gradient flows through them, with darknet's 1/(M-1) variance) or constants (inference):
// dz = dy * act'(z) at z = x_hat * scale + bias; dbias[c] = sum of dz, dscale[c] = sum of dz * x_hat; dx (may be
// dy). Two passes over dy and x: the per-channel sums, then dx.
void batchnorm_backward(const float* dy, const float* x, int64_t batch, int64_t channels, int64_t spatial,
                        const float* mean, const float* inv_std, const float* scale, const float* bias, Activation act,
                        bool train, float* dx, float* dscale, float* dbias, float* workspace, cudaStream_t stream);

// sums[c] = the sum of x over batch and spatial (the bias gradient of a layer without batch normalization).
void channel_sum(const float* x, int64_t batch, int64_t channels, int64_t spatial, float* sums, float* workspace,
                 cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
