#include "conv.h"

#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

// One thread per column element: cols[(c, ky, kx)][(image, oy, ox)].
__global__ void im2col_kernel(const float* x, int64_t images, ConvShape s, float* cols) {
    const int64_t k = s.size, pixels = s.out_h * s.out_w, columns = images * pixels;
    const int64_t n = s.channels / s.groups * k * k * columns;
    const int64_t image_stride = s.channels * s.height * s.width;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t column = i % columns, row = i / columns;
        const int64_t image = column / pixels, pixel = column % pixels;
        const int64_t kx = row % k, ky = row / k % k, c = row / (k * k);
        const int64_t iy = pixel / s.out_w * s.stride_y - s.offset + ky * s.dilation;
        const int64_t ix = pixel % s.out_w * s.stride_x - s.offset + kx * s.dilation;
        const bool inside = iy >= 0 && iy < s.height && ix >= 0 && ix < s.width;
        cols[i] = inside ? x[image * image_stride + (c * s.height + iy) * s.width + ix] : 0.0f;
    }
}

// One thread per input element: the sum of the column entries of every window tap that reads it. Tap ky reads
// input row iy from output row oy = (iy + offset - ky*dilation) / stride_y where that divides exactly.
__global__ void col2im_kernel(const float* cols, int64_t images, ConvShape s, float* dx) {
    const int64_t k = s.size, pixels = s.out_h * s.out_w, columns = images * pixels;
    const int64_t channels = s.channels / s.groups, plane = s.height * s.width;
    const int64_t n = images * channels * plane;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t ix = i % s.width, iy = i / s.width % s.height;
        const int64_t c = i / plane % channels, image = i / (plane * channels);
        float sum = 0.0f;
        for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t y = iy + s.offset - ky * s.dilation;
            if (y < 0) break;   // and every later tap
            if (y % s.stride_y != 0 || y / s.stride_y >= s.out_h) continue;
            for (int64_t kx = 0; kx < k; ++kx) {
                const int64_t x = ix + s.offset - kx * s.dilation;
                if (x < 0) break;
                if (x % s.stride_x != 0 || x / s.stride_x >= s.out_w) continue;
                const int64_t row = (c * k + ky) * k + kx;
                sum += cols[row * columns + image * pixels + y / s.stride_y * s.out_w + x / s.stride_x];
            }
        }
        dx[image * s.channels * plane + c * plane + iy * s.width + ix] = sum;
    }
}

__global__ void swap_leading_axes_kernel(const float* in, float* out, int64_t outer, int64_t inner, int64_t n) {
    const int64_t total = outer * inner * n;
    for (int64_t i = grid_start(); i < total; i += grid_stride()) {
        const int64_t p = i % n, o = i / n % outer, j = i / (n * outer);   // out[j][o][p]
        out[i] = in[(o * inner + j) * n + p];
    }
}

}  // namespace

void im2col(const float* x, int64_t images, const ConvShape& s, float* cols, cudaStream_t stream) {
    const int64_t n = s.channels / s.groups * s.size * s.size * images * s.out_h * s.out_w;
    if (n == 0) return;
    launch("im2col", im2col_kernel, grid_for(n), BLOCK, 0, stream, x, images, s, cols);
}

void col2im(const float* cols, int64_t images, const ConvShape& s, float* dx, cudaStream_t stream) {
    const int64_t n = images * s.channels / s.groups * s.height * s.width;
    if (n == 0) return;
    launch("col2im", col2im_kernel, grid_for(n), BLOCK, 0, stream, cols, images, s, dx);
}

void swap_leading_axes(const float* in, float* out, int64_t outer, int64_t inner, int64_t n, cudaStream_t stream) {
    const int64_t total = outer * inner * n;
    if (total == 0) return;
    launch("swap_leading_axes", swap_leading_axes_kernel, grid_for(total), BLOCK, 0, stream, in, out, outer, inner, n);
}

}  // namespace cuda
}  // namespace darknet_py
