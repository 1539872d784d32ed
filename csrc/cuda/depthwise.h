// Direct grouped convolutions (no im2col; depthwise.cu): each group's output reads only its own channels, so a
// block stages one input plane tile at a time in shared memory instead of building columns. Depthwise
// (groups == channels, one channel per group) is the main case; ResNeXt-style groups of several channels and
// channel multipliers (filters = m * channels) run on the same kernels. Geometry and ConvShape: conv.h.
#pragma once
#include <cstdint>

#include "../activations.h"
#include "conv.h"
#include "runtime.h"

namespace darknet_py {
namespace cuda {

// Whether the kernels' shared-memory tiles fit every block shape they may use for this kernel size, strides and
// dilation (otherwise the convolution takes the im2col path).
bool grouped_conv_fits(int64_t size, int64_t stride_x, int64_t stride_y, int64_t dilation);

// out = act(conv(x, w) * scale[f] + shift[f]) for `images` images; scale null means 1, shift null means 0.
void grouped_conv_forward(const float* x, const float* w, const float* scale, const float* shift, Activation act,
                          float* out, int64_t images, const ConvShape& s, cudaStream_t stream);

// dx = d loss / d x from dy = d loss / d output (every element of dx written).
void grouped_conv_dgrad(const float* dy, const float* w, float* dx, int64_t images, const ConvShape& s,
                        cudaStream_t stream);

// Floats of the partial sums grouped_conv_wgrad needs for `images` images.
int64_t grouped_conv_wgrad_partials(int64_t images, const ConvShape& s);

// dw = d loss / d w (written, not accumulated): blocks of (filter, channel, output tile, share of the images) sum
// all size*size taps into `partials`, then one thread per weight adds the partials up (no atomics: the result does
// not depend on scheduling).
void grouped_conv_wgrad(const float* x, const float* dy, float* partials, float* dw, int64_t images,
                        const ConvShape& s, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
