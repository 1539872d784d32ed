#include "pooling.h"

#include <cfloat>

#include "common.cuh"
#include "reduce.cuh"

namespace darknet_py {
namespace cuda {

namespace {

// The range [first, last] of window indexes along one axis whose window (start index*stride - offset, `size`
// taps) contains input position `at`; empty (first > last) if none.
struct WindowRange {
    int64_t first, last;
};

__device__ __forceinline__ WindowRange windows_reading(int64_t at, int64_t offset, int64_t size, int64_t stride,
                                                       int64_t count) {
    const int64_t padded = at + offset;   // >= 0
    const int64_t first = padded < size ? 0 : (padded - size) / stride + 1;
    const int64_t last = padded / stride < count - 1 ? padded / stride : count - 1;
    return {first, last};
}

// The in-bounds part [begin, end) of a window starting at `start` (size taps) on an axis of `length` values.
__device__ __forceinline__ int64_t clamp_begin(int64_t start) { return start > 0 ? start : 0; }
__device__ __forceinline__ int64_t clamp_end(int64_t start, int64_t size, int64_t length) {
    return start + size < length ? start + size : length;
}

__global__ void maxpool_kernel(const float* x, float* out, int32_t* argmax, PoolWindows g) {
    const int64_t n = g.planes * g.out_h * g.out_w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t col = i % g.out_w, row = i / g.out_w % g.out_h, plane = i / (g.out_w * g.out_h);
        const float* in = x + plane * g.h * g.w;
        const int64_t y0 = row * g.stride_y - g.offset, x0 = col * g.stride_x - g.offset;
        float best = -FLT_MAX;
        int64_t best_at = -1;
        for (int64_t y = clamp_begin(y0); y < clamp_end(y0, g.size, g.h); ++y) {
            for (int64_t xx = clamp_begin(x0); xx < clamp_end(x0, g.size, g.w); ++xx) {
                const float v = in[y * g.w + xx];
                if (v > best) {
                    best = v;
                    best_at = y * g.w + xx;
                }
            }
        }
        out[i] = best;
        if (argmax) argmax[i] = static_cast<int32_t>(best_at);
    }
}

__global__ void maxpool_backward_kernel(const float* dy, const int32_t* argmax, float* dx, PoolWindows g) {
    const int64_t n = g.planes * g.h * g.w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t xx = i % g.w, y = i / g.w % g.h, plane = i / (g.w * g.h);
        const int32_t here = static_cast<int32_t>(y * g.w + xx);
        const WindowRange rows = windows_reading(y, g.offset, g.size, g.stride_y, g.out_h);
        const WindowRange cols = windows_reading(xx, g.offset, g.size, g.stride_x, g.out_w);
        float sum = 0.0f;
        for (int64_t r = rows.first; r <= rows.last; ++r) {
            const int64_t o = (plane * g.out_h + r) * g.out_w;
            for (int64_t c = cols.first; c <= cols.last; ++c)
                if (argmax[o + c] == here) sum += dy[o + c];
        }
        dx[i] = sum;
    }
}

__global__ void maxpool_depth_kernel(const float* x, float* out, int32_t* argmax, int64_t batch, int64_t channels,
                                     int64_t out_channels, int64_t spatial) {
    const int64_t n = batch * out_channels * spatial;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t p = i % spatial, g = i / spatial % out_channels, b = i / (spatial * out_channels);
        float best = -FLT_MAX;
        int32_t best_round = -1;
        for (int64_t ch = g, r = 0; ch < channels; ch += out_channels, ++r) {
            const float v = x[(b * channels + ch) * spatial + p];
            if (v > best) {
                best = v;
                best_round = static_cast<int32_t>(r);
            }
        }
        out[i] = best;
        if (argmax) argmax[i] = best_round;
    }
}

__global__ void maxpool_depth_backward_kernel(const float* dy, const int32_t* argmax, float* dx, int64_t batch,
                                              int64_t channels, int64_t out_channels, int64_t spatial) {
    const int64_t n = batch * channels * spatial;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t p = i % spatial, ch = i / spatial % channels, b = i / (spatial * channels);
        const int64_t o = (b * out_channels + ch % out_channels) * spatial + p;
        dx[i] = argmax[o] == ch / out_channels ? dy[o] : 0.0f;
    }
}

__global__ void local_avgpool_kernel(const float* x, float* out, PoolWindows g) {
    const int64_t n = g.planes * g.out_h * g.out_w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t col = i % g.out_w, row = i / g.out_w % g.out_h, plane = i / (g.out_w * g.out_h);
        const float* in = x + plane * g.h * g.w;
        const int64_t y0 = row * g.stride_y - g.offset, x0 = col * g.stride_x - g.offset;
        const int64_t y_begin = clamp_begin(y0), y_end = clamp_end(y0, g.size, g.h);
        const int64_t x_begin = clamp_begin(x0), x_end = clamp_end(x0, g.size, g.w);
        float sum = 0.0f;
        for (int64_t y = y_begin; y < y_end; ++y)
            for (int64_t xx = x_begin; xx < x_end; ++xx) sum += in[y * g.w + xx];
        const int64_t count = (y_end > y_begin ? y_end - y_begin : 0) * (x_end > x_begin ? x_end - x_begin : 0);
        out[i] = sum / static_cast<float>(count);   // 0 / 0 = NaN for an empty window, as darknet
    }
}

__global__ void local_avgpool_backward_kernel(const float* dy, float* dx, PoolWindows g) {
    const int64_t n = g.planes * g.h * g.w;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t xx = i % g.w, y = i / g.w % g.h, plane = i / (g.w * g.h);
        const WindowRange rows = windows_reading(y, g.offset, g.size, g.stride_y, g.out_h);
        const WindowRange cols = windows_reading(xx, g.offset, g.size, g.stride_x, g.out_w);
        float sum = 0.0f;
        for (int64_t r = rows.first; r <= rows.last; ++r) {
            const int64_t y0 = r * g.stride_y - g.offset;
            const int64_t rows_in = clamp_end(y0, g.size, g.h) - clamp_begin(y0);   // >= 1: y is inside
            const int64_t o = (plane * g.out_h + r) * g.out_w;
            for (int64_t c = cols.first; c <= cols.last; ++c) {
                const int64_t x0 = c * g.stride_x - g.offset;
                const int64_t cols_in = clamp_end(x0, g.size, g.w) - clamp_begin(x0);
                sum += dy[o + c] / static_cast<float>(rows_in * cols_in);
            }
        }
        dx[i] = sum;
    }
}

// The values of plane j of a (planes, spatial) array, for segment_sums_kernel.
struct PlaneValues {
    const float* x;
    int64_t spatial;
    __device__ float operator()(int64_t j, int64_t t) const { return x[j * spatial + t]; }
};

__global__ void avgpool_backward_kernel(const float* dy, float* dx, int64_t planes, int64_t spatial) {
    const int64_t n = planes * spatial;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) dx[i] = dy[i / spatial] / static_cast<float>(spatial);
}

}  // namespace

void maxpool(const float* x, float* out, int32_t* argmax, const PoolWindows& g, cudaStream_t stream) {
    const int64_t n = g.planes * g.out_h * g.out_w;
    if (n == 0) return;
    launch("maxpool", maxpool_kernel, grid_for(n), BLOCK, 0, stream, x, out, argmax, g);
}

void maxpool_backward(const float* dy, const int32_t* argmax, float* dx, const PoolWindows& g, cudaStream_t stream) {
    const int64_t n = g.planes * g.h * g.w;
    if (n == 0) return;
    launch("maxpool_backward", maxpool_backward_kernel, grid_for(n), BLOCK, 0, stream, dy, argmax, dx, g);
}

void maxpool_depth(const float* x, float* out, int32_t* argmax, int64_t batch, int64_t channels, int64_t out_channels,
                   int64_t spatial, cudaStream_t stream) {
    const int64_t n = batch * out_channels * spatial;
    if (n == 0) return;
    launch("maxpool_depth", maxpool_depth_kernel, grid_for(n), BLOCK, 0, stream, x, out, argmax, batch, channels,
           out_channels, spatial);
}

void maxpool_depth_backward(const float* dy, const int32_t* argmax, float* dx, int64_t batch, int64_t channels,
                            int64_t out_channels, int64_t spatial, cudaStream_t stream) {
    const int64_t n = batch * channels * spatial;
    if (n == 0) return;
    launch("maxpool_depth_backward", maxpool_depth_backward_kernel, grid_for(n), BLOCK, 0, stream, dy, argmax, dx,
           batch, channels, out_channels, spatial);
}

void local_avgpool(const float* x, float* out, const PoolWindows& g, cudaStream_t stream) {
    const int64_t n = g.planes * g.out_h * g.out_w;
    if (n == 0) return;
    launch("local_avgpool", local_avgpool_kernel, grid_for(n), BLOCK, 0, stream, x, out, g);
}

void local_avgpool_backward(const float* dy, float* dx, const PoolWindows& g, cudaStream_t stream) {
    const int64_t n = g.planes * g.h * g.w;
    if (n == 0) return;
    launch("local_avgpool_backward", local_avgpool_backward_kernel, grid_for(n), BLOCK, 0, stream, dy, dx, g);
}

void avgpool(const float* x, float* out, int64_t planes, int64_t spatial, cudaStream_t stream) {
    if (planes == 0) return;
    launch("avgpool", segment_sums_kernel<PlaneValues>, segment_sums_grid(planes, spatial), REDUCE_BLOCK, 0, stream,
           PlaneValues{x, spatial}, planes, spatial, static_cast<float>(spatial), out);
}

void avgpool_backward(const float* dy, float* dx, int64_t planes, int64_t spatial, cudaStream_t stream) {
    const int64_t n = planes * spatial;
    if (n == 0) return;
    launch("avgpool_backward", avgpool_backward_kernel, grid_for(n), BLOCK, 0, stream, dy, dx, planes, spatial);
}

}  // namespace cuda
}  // namespace darknet_py
