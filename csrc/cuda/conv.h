// Convolution kernels of the CUDA engine. Geometry is darknet's (darknet_py/backend.py, module docstring):
// output[f, oy, ox] = sum over the group's channels c and taps (ky, kx) of w[f, c, ky, kx] *
// x[c, oy*stride_y - offset + ky*dilation, ox*stride_x - offset + kx*dilation], zero outside the image, with
// offset = pad*dilation and out_h/out_w given (darknet's size formula ignores the dilation).
// conv.cu: im2col / col2im for the GEMM paths; depthwise.cu: the direct (no im2col) grouped kernels.
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// One convolution's shapes. Arrays are NCHW, C-contiguous: x (images, channels, height, width), weights
// (filters, channels/groups, size, size), output (images, filters, out_h, out_w). Plain data: kernels take it by
// value.
struct ConvShape {
    int64_t channels, height, width;
    int64_t filters, groups, size;
    int64_t stride_x, stride_y, dilation;
    int64_t offset;   // pad * dilation: window (0, 0) starts at input (-offset, -offset)
    int64_t out_h, out_w;
};

// Columns of one group for `images` images: x points at the group's first channel of the first image (images are
// channels*height*width apart); cols is (channels/groups * size*size, images * out_h*out_w): row (c, ky, kx) in
// darknet's order, column (image, oy, ox).
void im2col(const float* x, int64_t images, const ConvShape& s, float* cols, cudaStream_t stream);

// The adjoint of im2col: dx of the group's channels (same addressing as im2col's x) = the columns gathered back
// onto the input, every element written (one thread per input element sums its taps: no atomics).
void col2im(const float* cols, int64_t images, const ConvShape& s, float* dx, cudaStream_t stream);

// out (inner, outer, n) = in (outer, inner, n) with the two leading axes swapped: a chunk of (images, filters,
// pixels) gradients as (filters, images * pixels) rows for the weight-gradient GEMM.
void swap_leading_axes(const float* in, float* out, int64_t outer, int64_t inner, int64_t n, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
