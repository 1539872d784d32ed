#include "resample.h"

#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

__global__ void upsample_kernel(const float* x, float* out, int64_t planes, int64_t h, int64_t w, int64_t stride,
                                float scale) {
    const int64_t big_w = w * stride, big_h = h * stride, n = planes * big_h * big_w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t col = i % big_w, row = i / big_w % big_h, plane = i / (big_w * big_h);
        out[i] = x[(plane * h + row / stride) * w + col / stride] * scale;
    }
}

__global__ void downsample_kernel(const float* x, float* out, int64_t planes, int64_t h, int64_t w, int64_t stride,
                                  float scale) {
    const int64_t big_w = w * stride, n = planes * h * w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t col = i % w, row = i / w % h, plane = i / (w * h);
        const float* block = x + ((plane * h + row) * stride * big_w + col * stride);
        float sum = 0.0f;
        for (int64_t dy = 0; dy < stride; ++dy)
            for (int64_t dx = 0; dx < stride; ++dx) sum += block[dy * big_w + dx] * scale;
        out[i] = sum;
    }
}

// One thread per output value, reading its input (a permutation of each image).
__global__ void reorg_kernel(const float* x, float* out, int64_t batch, int64_t channels, int64_t h, int64_t w,
                             int64_t stride, bool to_big) {
    const int64_t big_c = channels / (stride * stride), big_h = h * stride, big_w = w * stride;
    const int64_t image = channels * h * w, n = batch * image;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t b = i / image, r = i % image;
        int64_t source;
        if (to_big) {   // out is big (c2, y2, x2): small channel c2 + big_c * (its place in the stride x stride block)
            const int64_t x2 = r % big_w, y2 = r / big_w % big_h, c2 = r / (big_w * big_h);
            const int64_t k = c2 + big_c * ((y2 % stride) * stride + x2 % stride);
            source = (k * h + y2 / stride) * w + x2 / stride;
        } else {        // out is small (k, row, col)
            const int64_t col = r % w, row = r / w % h, k = r / (w * h);
            const int64_t place = k / big_c;
            source = ((k % big_c) * big_h + row * stride + place / stride) * big_w + col * stride + place % stride;
        }
        out[i] = x[b * image + source];
    }
}

__global__ void crop_kernel(const float* x, float* out, CropWindow cw, float scale, float shift) {
    const int64_t n = cw.planes * cw.out_h * cw.out_w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t j = i % cw.out_w, row = i / cw.out_w % cw.out_h, plane = i / (cw.out_w * cw.out_h);
        const int64_t col = cw.flip ? cw.w - 1 - cw.left - j : cw.left + j;
        out[i] = x[(plane * cw.h + cw.top + row) * cw.w + col] * scale + shift;
    }
}

__global__ void crop_backward_kernel(const float* dy, float* dx, CropWindow cw, float scale) {
    const int64_t n = cw.planes * cw.h * cw.w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t col = i % cw.w, y = i / cw.w % cw.h, plane = i / (cw.w * cw.h);
        const int64_t row = y - cw.top, j = cw.flip ? cw.w - 1 - cw.left - col : col - cw.left;
        const bool read = row >= 0 && row < cw.out_h && j >= 0 && j < cw.out_w;
        dx[i] = read ? dy[(plane * cw.out_h + row) * cw.out_w + j] * scale : 0.0f;
    }
}

}  // namespace

void upsample(const float* x, float* out, int64_t planes, int64_t h, int64_t w, int64_t stride, float scale,
              cudaStream_t stream) {
    const int64_t n = planes * h * w * stride * stride;
    if (n == 0) return;
    launch("upsample", upsample_kernel, grid_for(n), BLOCK, 0, stream, x, out, planes, h, w, stride, scale);
}

void downsample(const float* x, float* out, int64_t planes, int64_t h, int64_t w, int64_t stride, float scale,
                cudaStream_t stream) {
    const int64_t n = planes * h * w;
    if (n == 0) return;
    launch("downsample", downsample_kernel, grid_for(n), BLOCK, 0, stream, x, out, planes, h, w, stride, scale);
}

void reorg(const float* x, float* out, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t stride,
           bool to_big, cudaStream_t stream) {
    const int64_t n = batch * channels * h * w;
    if (n == 0) return;
    launch("reorg", reorg_kernel, grid_for(n), BLOCK, 0, stream, x, out, batch, channels, h, w, stride, to_big);
}

void crop(const float* x, float* out, const CropWindow& window, float scale, float shift, cudaStream_t stream) {
    const int64_t n = window.planes * window.out_h * window.out_w;
    if (n == 0) return;
    launch("crop", crop_kernel, grid_for(n), BLOCK, 0, stream, x, out, window, scale, shift);
}

void crop_backward(const float* dy, float* dx, const CropWindow& window, float scale, cudaStream_t stream) {
    const int64_t n = window.planes * window.h * window.w;
    if (n == 0) return;
    launch("crop_backward", crop_backward_kernel, grid_for(n), BLOCK, 0, stream, dy, dx, window, scale);
}

}  // namespace cuda
}  // namespace darknet_py
