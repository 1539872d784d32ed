// Resampling kernels (resample.cu): [upsample] in both directions, darknet's reorg_cpu ([reorg], [reorg3d]) and the
// [crop] window. Every kernel writes each output value once from the inputs it reads (gathers): no atomics.
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// Planes (planes, h, w) <-> (planes, h * stride, w * stride). upsample: out[p, y, x] = scale * x[p, y / stride,
// x / stride]; downsample: out[p, y, x] = the sum of scale * x over the stride x stride block at (y * stride,
// x * stride), added in row-major order from 0. Each is the other's adjoint. h, w are the small side's.
void upsample(const float* x, float* out, int64_t planes, int64_t h, int64_t w, int64_t stride, float scale,
              cudaStream_t stream);
void downsample(const float* x, float* out, int64_t planes, int64_t h, int64_t w, int64_t stride, float scale,
                cudaStream_t stream);

// darknet's reorg_cpu on each of `batch` images: a "small" (channels, h, w) buffer and a "big" (channels / s^2,
// h * s, w * s) one (s = stride), small (k, j, i) = big (k % (channels / s^2), j*s + (k / (channels/s^2)) / s,
// i*s + (k / (channels/s^2)) % s). to_big: x is small, out big; else x is big, out small. channels % s^2 == 0.
void reorg(const float* x, float* out, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t stride,
           bool to_big, cudaStream_t stream);

// out (planes, out_h, out_w) = x[p, top + i, column(j)] * scale + shift with column(j) = left + j, or with flip
// w - 1 - left - j; crop_backward writes dx (planes, h, w): scale * dy at the positions read, 0 elsewhere.
struct CropWindow {
    int64_t planes, h, w, out_h, out_w, top, left;
    bool flip;
};
void crop(const float* x, float* out, const CropWindow& window, float scale, float shift, cudaStream_t stream);
void crop_backward(const float* dy, float* dx, const CropWindow& window, float scale, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
