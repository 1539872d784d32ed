// Softmax kernels (softmax.cu): darknet's softmax over the rows of strided arrays ([softmax], the class values of
// [region] and [detection]), its backward, and the elementwise part of the softmax cross-entropy loss.
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// Where the rows lie: `images` groups of `rows` rows of `length` consecutive values; row j of image b starts
// b * image_stride + j * row_stride values after the array's address.
struct RowLayout {
    int64_t images, rows, length, image_stride, row_stride;
};

// y = exp(x/t - max/t) / sum of those over each row (src/blas.c softmax). y may be x; both have `layout`.
void softmax_rows(const float* x, float* y, RowLayout layout, float temperature, cudaStream_t stream);

// dx = y * (dy - sum(dy * y)) / t over each row, for y = softmax_rows(x) and dy = d loss / d y. dx may be dy; y,
// dy and dx have `layout`.
void softmax_rows_backward(const float* y, const float* dy, float* dx, RowLayout layout, float temperature,
                           cudaStream_t stream);

// For n values of a softmax output y and its truth: grad = y - truth (d loss / d input for one-hot truth), and
// loss = -log(y) where truth != 0, else 0 (darknet's softmax_x_ent_cpu, summed by the caller).
void softmax_cross_entropy(const float* y, const float* truth, float* grad, float* loss, int64_t n,
                           cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
