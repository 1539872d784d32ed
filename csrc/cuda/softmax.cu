#include "softmax.h"

#include "common.cuh"
#include "reduce.cuh"

namespace darknet_py {
namespace cuda {

namespace {


__device__ __forceinline__ float warp_max(float v) {
    for (int lanes = 16; lanes > 0; lanes /= 2) v = fmaxf(v, __shfl_xor_sync(FULL_WARP, v, lanes));
    return v;
}

__device__ __forceinline__ int64_t row_offset(const RowLayout& layout, int64_t row) {
    return row / layout.rows * layout.image_stride + row % layout.rows * layout.row_stride;
}

// One warp per row (the block size is a multiple of 32, so a row index is the same on every lane of a warp and
// the whole warp takes part in each shuffle); each lane walks every 32nd value of the row.
__global__ void softmax_rows_kernel(const float* x, float* y, RowLayout layout, float temperature) {
    const int lane = threadIdx.x % warpSize;
    const int64_t warps = grid_stride() / warpSize;
    for (int64_t row = grid_start() / warpSize; row < layout.images * layout.rows; row += warps) {
        const float* in = x + row_offset(layout, row);
        float* out = y + row_offset(layout, row);
        float peak = -INFINITY;
        for (int64_t i = lane; i < layout.length; i += warpSize) peak = fmaxf(peak, in[i]);
        const float shift = warp_max(peak) / temperature;
        float sum = 0.0f;
        for (int64_t i = lane; i < layout.length; i += warpSize) sum += expf(in[i] / temperature - shift);
        sum = warp_sum(sum);
        for (int64_t i = lane; i < layout.length; i += warpSize) out[i] = expf(in[i] / temperature - shift) / sum;
    }
}

__global__ void softmax_rows_backward_kernel(const float* y, const float* dy, float* dx, RowLayout layout,
                                             float temperature) {
    const int lane = threadIdx.x % warpSize;
    const int64_t warps = grid_stride() / warpSize;
    for (int64_t row = grid_start() / warpSize; row < layout.images * layout.rows; row += warps) {
        const int64_t offset = row_offset(layout, row);
        float dot = 0.0f;
        for (int64_t i = lane; i < layout.length; i += warpSize) dot += dy[offset + i] * y[offset + i];
        dot = warp_sum(dot);
        for (int64_t i = lane; i < layout.length; i += warpSize)
            dx[offset + i] = y[offset + i] * (dy[offset + i] - dot) / temperature;
    }
}

__global__ void softmax_cross_entropy_kernel(const float* y, const float* truth, float* grad, float* loss,
                                             int64_t n) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        grad[i] = y[i] - truth[i];
        loss[i] = truth[i] != 0.0f ? -logf(y[i]) : 0.0f;
    }
}

// Blocks for one warp per row.
unsigned row_grid(const RowLayout& layout) { return grid_for(layout.images * layout.rows * 32); }

}  // namespace

void softmax_rows(const float* x, float* y, RowLayout layout, float temperature, cudaStream_t stream) {
    if (layout.images * layout.rows == 0 || layout.length == 0) return;
    launch("softmax_rows", softmax_rows_kernel, row_grid(layout), BLOCK, 0, stream, x, y, layout, temperature);
}

void softmax_rows_backward(const float* y, const float* dy, float* dx, RowLayout layout, float temperature,
                           cudaStream_t stream) {
    if (layout.images * layout.rows == 0 || layout.length == 0) return;
    launch("softmax_rows_backward", softmax_rows_backward_kernel, row_grid(layout), BLOCK, 0, stream, y, dy, dx,
           layout, temperature);
}

void softmax_cross_entropy(const float* y, const float* truth, float* grad, float* loss, int64_t n,
                           cudaStream_t stream) {
    if (n == 0) return;
    launch("softmax_cross_entropy", softmax_cross_entropy_kernel, grid_for(n), BLOCK, 0, stream, y, truth, grad,
           loss, n);
}

}  // namespace cuda
}  // namespace darknet_py
