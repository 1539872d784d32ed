#include "route.h"

#include "common.cuh"
#include "reduce.cuh"

namespace darknet_py {
namespace cuda {

namespace {

__global__ void copy_2d_kernel(const float* src, int64_t src_pitch, float* dst, int64_t dst_pitch, int64_t rows,
                               int64_t width, bool accumulate) {
    const int64_t n = rows * width;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t r = i / width, c = i % width;
        const float v = src[r * src_pitch + c];
        float& d = dst[r * dst_pitch + c];
        d = accumulate ? d + v : v;
    }
}

__global__ void scale_add_channels_kernel(const float* src, int64_t src_channels, float* dst, int64_t dst_channels,
                                          int64_t batch, int64_t channels, int64_t spatial, const float* weights,
                                          bool per_channel, bool accumulate) {
    const int64_t n = batch * channels * spatial;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t p = i % spatial, c = i / spatial % channels, b = i / (spatial * channels);
        float v = src[(b * src_channels + c) * spatial + p];
        if (weights) v *= weights[per_channel ? c : 0];
        float& d = dst[(b * dst_channels + c) * spatial + p];
        d = accumulate ? d + v : v;
    }
}

// One block per result (grid-stride over results).
// The products of segment j over every run, for segment_sums_kernel: value t is a[r][j][s] * b[r][j][s] with
// r = t / length, s = t % length (run r of a starts at r * a_stride).
struct SegmentProducts {
    const float* a;
    int64_t a_stride;
    const float* b;
    int64_t b_stride, length;
    __device__ float operator()(int64_t j, int64_t t) const {
        const int64_t r = t / length, offset = j * length + t % length;
        return a[r * a_stride + offset] * b[r * b_stride + offset];
    }
};

__global__ void dot_channels_kernel(const float* a, const float* b, float* out, int64_t batch, int64_t channels,
                                    int64_t spatial) {
    const int64_t n = batch * spatial;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t first = i / spatial * channels * spatial + i % spatial;
        float sum = 0.0f;
        for (int64_t c = 0; c < channels; ++c) sum += a[first + c * spatial] * b[first + c * spatial];
        out[i] = sum;
    }
}

__global__ void multiply_kernel(const float* a, const float* b, float* out, int64_t batch, int64_t channels,
                                int64_t spatial, Broadcast mode, bool accumulate) {
    const int64_t n = batch * channels * spatial;
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        int64_t j = i;
        if (mode == Broadcast::per_channel) j = i / spatial;
        if (mode == Broadcast::per_position) j = i / (channels * spatial) * spatial + i % spatial;
        const float v = a[i] * b[j];
        out[i] = accumulate ? out[i] + v : v;
    }
}

}  // namespace

void copy_2d(const float* src, int64_t src_pitch, float* dst, int64_t dst_pitch, int64_t rows, int64_t width,
             bool accumulate, cudaStream_t stream) {
    const int64_t n = rows * width;
    if (n == 0) return;
    launch("copy_2d", copy_2d_kernel, grid_for(n), BLOCK, 0, stream, src, src_pitch, dst, dst_pitch, rows, width,
           accumulate);
}

void scale_add_channels(const float* src, int64_t src_channels, float* dst, int64_t dst_channels, int64_t batch,
                        int64_t channels, int64_t spatial, const float* weights, bool per_channel, bool accumulate,
                        cudaStream_t stream) {
    const int64_t n = batch * channels * spatial;
    if (n == 0) return;
    launch("scale_add_channels", scale_add_channels_kernel, grid_for(n), BLOCK, 0, stream, src, src_channels, dst,
           dst_channels, batch, channels, spatial, weights, per_channel, accumulate);
}

void dot_segments(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out, int64_t count,
                  int64_t runs, int64_t length, cudaStream_t stream) {
    if (count == 0) return;
    launch("dot_segments", segment_sums_kernel<SegmentProducts>, segment_sums_grid(count, runs * length), REDUCE_BLOCK,
           0, stream, SegmentProducts{a, a_stride, b, b_stride, length}, count, runs * length, 1.0f, out);
}

void dot_channels(const float* a, const float* b, float* out, int64_t batch, int64_t channels, int64_t spatial,
                  cudaStream_t stream) {
    const int64_t n = batch * spatial;
    if (n == 0) return;
    launch("dot_channels", dot_channels_kernel, grid_for(n), BLOCK, 0, stream, a, b, out, batch, channels, spatial);
}

void multiply(const float* a, const float* b, float* out, int64_t batch, int64_t channels, int64_t spatial,
              Broadcast mode, bool accumulate, cudaStream_t stream) {
    const int64_t n = batch * channels * spatial;
    if (n == 0) return;
    launch("multiply", multiply_kernel, grid_for(n), BLOCK, 0, stream, a, b, out, batch, channels, spatial, mode,
           accumulate);
}

}  // namespace cuda
}  // namespace darknet_py
