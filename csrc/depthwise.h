// Depthwise convolution (groups == channels == filters) for float32 NCHW, with the fused inference epilogue.
#pragma once
#include <cstdint>

#include "activations.h"
#include "window.h"

namespace darknet_py {

// y[p] = sum over the window taps of weights[c, ky, kx] * x[p] (zero outside the image), plane p = (b, c), for
// x (batch, channels, h, w), weights (channels, 1, k, k), y (batch, channels, out_h, out_w); then, when
// shift is not null, y = act(y * scale[c] + shift[c]) (scale may be null). Parallel over planes.
void depthwise_conv2d(const float* x, const float* weights, float* y, int64_t batch, int64_t channels,
                      const WindowGeometry& g, const float* scale, const float* shift, Activation act);

// Floats depthwise_conv2d allocates per thread for this geometry.
int64_t depthwise_thread_floats(const WindowGeometry& g);

}  // namespace darknet_py
