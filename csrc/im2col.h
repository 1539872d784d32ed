// Convolution as im2col + GEMM for float32 NCHW images, darknet's column layout: rows = channels*kh*kw, columns =
// out_h*out_w (the training path's im2col/col2im are NumPy, darknet_py/backend.py).
#pragma once
#include <cstdint>

#include "activations.h"

namespace darknet_py {

struct ConvGeometry {   // of one group
    int64_t channels, height, width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    int64_t out_h() const { return (height + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) / stride_h + 1; }
    int64_t out_w() const { return (width + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) / stride_w + 1; }
    int64_t rows() const { return channels * kernel_h * kernel_w; }
    int64_t cols() const { return out_h() * out_w(); }
};

// y (batch, filters, out_h*out_w) = act((W @ columns) * scale[f] + shift[f]) for each image of images (batch,
// groups * channels, height, width), W the weights (filters x rows, row-major), in `groups` groups (g.channels
// channels and filters / groups filters each): the columns are built a slice at a time per thread (never the
// whole matrix) and multiplied at once, every group in one GEMM (csrc/gemm.h). scale may be null (1), shift null
// (no affine map, no activation).
void im2col_gemm(const float* images, int64_t batch, int64_t groups, const ConvGeometry& g, const float* weights,
                 int64_t filters, const float* scale, const float* shift, Activation act, float* y);

}  // namespace darknet_py
