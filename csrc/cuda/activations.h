// Activation kernels (activations.cu): darknet's activations forward and backward on device arrays.
#pragma once
#include <cstdint>

#include "../activations.h"
#include "runtime.h"

namespace darknet_py {
namespace cuda {

// y = act(x * scale[c] + shift[c]) over planes = batch * channels planes of `spatial` values; plane p has channel
// p % channels. scale null means 1, shift null means 0. y may be x.
void affine_activate(const float* x, float* y, int64_t planes, int64_t channels, int64_t spatial, const float* scale,
                     const float* shift, Activation act, cudaStream_t stream);

// dx = dy * act'(x) for n values; dx may be dy.
void activate_backward(const float* x, const float* dy, float* dx, int64_t n, Activation act, cudaStream_t stream);

// The activations that mix the channels of one position (normalize_channels*), over (batch, channels, spatial).
enum class ChannelNorm : int { positive, softmax, softmax_maxval };
void normalize_channels(const float* x, float* y, int64_t batch, int64_t channels, int64_t spatial, ChannelNorm kind,
                        cudaStream_t stream);
// dx from the pre-activation x and dy = d loss / d output; dx may be dy.
void normalize_channels_backward(const float* x, const float* dy, float* dx, int64_t batch, int64_t channels,
                                 int64_t spatial, ChannelNorm kind, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
