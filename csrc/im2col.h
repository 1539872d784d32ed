// im2col / col2im for one float32 NCHW image, darknet's layout: rows = channels*kh*kw, columns = out_h*out_w.
#pragma once
#include <cstdint>

#include "activations.h"

namespace darknet_py {

struct ConvGeometry {
    int64_t channels, height, width;
    int64_t kernel_h, kernel_w, stride_h, stride_w, pad_h, pad_w, dilation_h, dilation_w;
    int64_t out_h() const { return (height + 2 * pad_h - (dilation_h * (kernel_h - 1) + 1)) / stride_h + 1; }
    int64_t out_w() const { return (width + 2 * pad_w - (dilation_w * (kernel_w - 1) + 1)) / stride_w + 1; }
    int64_t rows() const { return channels * kernel_h * kernel_w; }
    int64_t cols() const { return out_h() * out_w(); }
};

// columns[rows, cols] = patches of image[channels, height, width]; zero outside the image.
void im2col(const float* image, const ConvGeometry& g, float* columns);

// y (batch, filters, out_h*out_w) = act((W @ columns) * scale[f] + shift[f]) for each image of images (batch,
// channels, height, width), W the weights (filters x rows, row-major): the columns are built a slice at a time per
// thread (never the whole matrix) and multiplied at once (csrc/gemm.h). scale may be null (1), shift null (no
// affine map, no activation).
void im2col_gemm(const float* images, int64_t batch, const ConvGeometry& g, const float* weights, int64_t filters,
                 const float* scale, const float* shift, Activation act, float* y);

// image[channels, height, width] += the patches in columns (the adjoint of im2col).
void col2im(const float* columns, const ConvGeometry& g, float* image);

}  // namespace darknet_py
