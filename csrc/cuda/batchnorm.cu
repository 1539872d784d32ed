#include "batchnorm.h"

#include <algorithm>

#include "activations.cuh"
#include "common.cuh"
#include "reduce.cuh"

namespace darknet_py {
namespace cuda {

namespace {

constexpr int ITEMS = 8;                   // values of a chunk per thread
constexpr int WARP = 32;                   // warpSize, which host code cannot read
constexpr int MAX_WARPS = BLOCK / WARP;    // warps of a reduction block

// Where the values of one channel lie: value k (0 <= k < count = batch * spatial) of channel c is position
// k % spatial of image k / spatial.
struct ChannelLayout {
    int64_t channels, spatial, count;

    __device__ __forceinline__ int64_t offset(int64_t c, int64_t k) const {
        const int64_t image = k / spatial;
        return (image * channels + c) * spatial + (k - image * spatial);
    }
};

// How the first stage cuts each channel: chunks of `chunk` = group * ITEMS values, each reduced by a group of
// `group` consecutive threads (a power of 2 from 32 to BLOCK, small when channels are short: a [connected] layer's
// batch); a block of `block` threads holds block / group groups.
struct Chunking {
    unsigned group, block;
    int64_t chunk, chunks;

    // values in chunk i of a channel of `count`
    __host__ __device__ int64_t size(int64_t i, int64_t count) const {
        return count - i * chunk < chunk ? count - i * chunk : chunk;
    }
};

Chunking chunking(int64_t channels, int64_t count) {
    Chunking cut{WARP, 0, 0, 0};
    while (cut.group < BLOCK && int64_t(cut.group) * ITEMS < count) cut.group *= 2;
    cut.chunk = int64_t(cut.group) * ITEMS;
    cut.chunks = (count + cut.chunk - 1) / cut.chunk;
    cut.block = cut.group * unsigned(std::min(int64_t(BLOCK / cut.group), channels * cut.chunks));
    return cut;
}

// Sums of v over each group of `group` consecutive threads (a power of 2 from warpSize to blockDim.x, the same in
// the whole block), returned to every thread of the group. Every thread of the block calls it: groups wider than a
// warp meet at barriers. scratch: N * MAX_WARPS floats of shared memory.
template <int N>
__device__ void group_sums(float (&v)[N], unsigned group, float* scratch) {
    warp_sums(v);
    if (group == warpSize) return;
    const unsigned warp = threadIdx.x / warpSize, lane = threadIdx.x % warpSize, warps = group / warpSize;
    if (lane == 0)
        for (int j = 0; j < N; ++j) scratch[warp * N + j] = v[j];
    __syncthreads();
    const unsigned first = warp - warp % warps;
    for (int j = 0; j < N; ++j) v[j] = lane < warps ? scratch[(first + lane) * N + j] : 0.0f;
    warp_sums(v);
    __syncthreads();   // scratch is free for the next call
}

// The forward's arithmetic, which the backward repeats to get the activation's input: x_hat, then z.
__device__ __forceinline__ float normalized(float x, float mean, float inv_std) { return (x - mean) * inv_std; }
__device__ __forceinline__ float preactivation(float x_hat, float scale, float bias) { return x_hat * scale + bias; }

// Stage 1 of the statistics, per chunk of a channel: its mean in float (`shift`), then the sums of d = x - shift
// and of d^2, from the chunk's values kept in registers (x is read once). Centred on the chunk's own mean, the
// squares do not cancel when mean^2 >> variance; stage 2 combines the chunks exactly, whatever the shift's rounding.
// partials: (shift, sum d, sum d^2) per (channel, chunk).
__global__ void statistics_partials_kernel(const float* x, ChannelLayout layout, Chunking cut, float* partials) {
    __shared__ float scratch[2 * MAX_WARPS];
    const int64_t groups = layout.channels * cut.chunks;
    const unsigned per_block = blockDim.x / cut.group, local = threadIdx.x % cut.group;
    // the loop is uniform over the block (every group takes part in group_sums' barriers, used or not)
    for (int64_t base = int64_t(blockIdx.x) * per_block; base < groups; base += int64_t(gridDim.x) * per_block) {
        const int64_t g = base + threadIdx.x / cut.group, c = g / cut.chunks, first = g % cut.chunks * cut.chunk;
        const int64_t n = g < groups ? cut.size(g % cut.chunks, layout.count) : 0;
        float v[ITEMS], sum[1] = {0.0f};
        for (int j = 0; j < ITEMS; ++j) {
            const int64_t k = local + int64_t(j) * cut.group;
            v[j] = k < n ? x[layout.offset(c, first + k)] : 0.0f;
            sum[0] += v[j];
        }
        group_sums(sum, cut.group, scratch);
        const float shift = n > 0 ? sum[0] / float(n) : 0.0f;
        float moments[2] = {0.0f, 0.0f};
        for (int j = 0; j < ITEMS; ++j) {
            if (local + int64_t(j) * cut.group < n) {
                const float d = v[j] - shift;
                moments[0] += d;
                moments[1] += d * d;
            }
        }
        group_sums(moments, cut.group, scratch);
        if (local == 0 && n > 0) {
            float* p = partials + 3 * g;
            p[0] = shift;
            p[1] = moments[0];
            p[2] = moments[1];
        }
    }
}

// Stage 2, one warp per channel, in double: sum x = sum over chunks of (n shift + sum d), and with e = shift - mean,
// sum (x - mean)^2 = sum over chunks of (sum d^2 + 2 e sum d + n e^2). Then mean, inv_std and the rolling statistics.
__global__ void statistics_kernel(const float* partials, ChannelLayout layout, Chunking cut, float momentum,
                                  float* mean, float* inv_std, float* rolling_mean, float* rolling_variance) {
    const unsigned lane = threadIdx.x % warpSize;
    for (int64_t c = grid_start() / warpSize; c < layout.channels; c += grid_stride() / warpSize) {
        const float* p = partials + 3 * c * cut.chunks;
        double total = 0.0;
        for (int64_t i = lane; i < cut.chunks; i += warpSize)
            total += double(cut.size(i, layout.count)) * p[3 * i] + p[3 * i + 1];
        const double m = warp_sum(total) / double(layout.count);
        double squares = 0.0;
        for (int64_t i = lane; i < cut.chunks; i += warpSize) {
            const double e = double(p[3 * i]) - m;
            squares += p[3 * i + 2] + 2.0 * e * p[3 * i + 1] + double(cut.size(i, layout.count)) * e * e;
        }
        // rounding may leave a constant channel's sum a hair below 0
        const float variance = float(fmax(warp_sum(squares), 0.0) / double(layout.count - 1));
        if (lane == 0) {
            mean[c] = float(m);
            inv_std[c] = 1.0f / sqrtf(variance + BN_EPSILON);
            if (rolling_mean) rolling_mean[c] = (1.0f - momentum) * rolling_mean[c] + momentum * float(m);
            if (rolling_variance) rolling_variance[c] = (1.0f - momentum) * rolling_variance[c] + momentum * variance;
        }
    }
}

__global__ void inverse_std_kernel(const float* variance, float* inv_std, int64_t channels) {
    for (int64_t c = grid_start(); c < channels; c += grid_stride()) inv_std[c] = 1.0f / sqrtf(variance[c] + BN_EPSILON);
}

__global__ void normalize_kernel(const float* x, float* y, int64_t n, int64_t channels, int64_t spatial,
                                 const float* mean, const float* inv_std, const float* scale, const float* bias,
                                 Activation act) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t c = i / spatial % channels;
        y[i] = activate(preactivation(normalized(x[i], mean[c], inv_std[c]), scale[c], bias[c]), act);
    }
}

// Stage 1 of the gradient sums, per chunk of a channel: (sum dz, sum dz * x_hat) with dz = dy * act'(z) (see
// batchnorm_backward); with x null, (sum dy, 0).
__global__ void gradient_partials_kernel(const float* dy, const float* x, ChannelLayout layout, Chunking cut,
                                         const float* mean, const float* inv_std, const float* scale,
                                         const float* bias, Activation act, float* partials) {
    __shared__ float scratch[2 * MAX_WARPS];
    const int64_t groups = layout.channels * cut.chunks;
    const unsigned per_block = blockDim.x / cut.group, local = threadIdx.x % cut.group;
    for (int64_t base = int64_t(blockIdx.x) * per_block; base < groups; base += int64_t(gridDim.x) * per_block) {
        const int64_t g = base + threadIdx.x / cut.group, c = g / cut.chunks, first = g % cut.chunks * cut.chunk;
        const int64_t n = g < groups ? cut.size(g % cut.chunks, layout.count) : 0;
        float sums[2] = {0.0f, 0.0f};
        for (int j = 0; j < ITEMS; ++j) {
            const int64_t k = local + int64_t(j) * cut.group;
            if (k >= n) break;
            const int64_t i = layout.offset(c, first + k);
            float dz = dy[i];
            if (x) {
                const float x_hat = normalized(x[i], mean[c], inv_std[c]);
                dz *= gradient(preactivation(x_hat, scale[c], bias[c]), act);
                sums[1] += dz * x_hat;
            }
            sums[0] += dz;
        }
        group_sums(sums, cut.group, scratch);
        if (local == 0 && n > 0) {
            partials[2 * g] = sums[0];
            partials[2 * g + 1] = sums[1];
        }
    }
}

// Stage 2 of the gradient sums, one warp per channel, in double: first[c] and (if not null) second[c].
__global__ void gradient_sums_kernel(const float* partials, int64_t channels, int64_t chunks, float* first,
                                     float* second) {
    const unsigned lane = threadIdx.x % warpSize;
    for (int64_t c = grid_start() / warpSize; c < channels; c += grid_stride() / warpSize) {
        const float* p = partials + 2 * c * chunks;
        double a = 0.0, b = 0.0;
        for (int64_t i = lane; i < chunks; i += warpSize) {
            a += p[2 * i];
            b += p[2 * i + 1];
        }
        a = warp_sum(a);
        b = warp_sum(b);
        if (lane == 0) {
            first[c] = float(a);
            if (second) second[c] = float(b);
        }
    }
}

// dx = (dz scale - mean of (dz scale) - x_hat * sum(dz scale x_hat)/(M - 1)) * inv_std in training (the gradient
// through the batch mean and variance, M = count), dz scale inv_std in inference.
__global__ void backward_dx_kernel(const float* dy, const float* x, int64_t n, ChannelLayout layout, const float* mean,
                                   const float* inv_std, const float* scale, const float* bias, Activation act,
                                   bool train, const float* dscale, const float* dbias, float* dx) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t c = i / layout.spatial % layout.channels;
        const float x_hat = normalized(x[i], mean[c], inv_std[c]);
        float g = dy[i] * gradient(preactivation(x_hat, scale[c], bias[c]), act) * scale[c];
        if (train)
            g = g - scale[c] * dbias[c] / float(layout.count) - x_hat * (scale[c] * dscale[c] / float(layout.count - 1));
        dx[i] = g * inv_std[c];
    }
}

// Both stages of the gradient sums (x null: channel sums of dy).
void gradient_sums(const float* dy, const float* x, const ChannelLayout& layout, const float* mean,
                   const float* inv_std, const float* scale, const float* bias, Activation act, float* first,
                   float* second, float* workspace, cudaStream_t stream) {
    if (layout.count == 0) {   // an empty batch: zero sums
        DN_CUDA_CHECK(cudaMemsetAsync(first, 0, layout.channels * sizeof(float), stream));
        if (second) DN_CUDA_CHECK(cudaMemsetAsync(second, 0, layout.channels * sizeof(float), stream));
        return;
    }
    const Chunking cut = chunking(layout.channels, layout.count);
    launch("batchnorm_gradient_partials", gradient_partials_kernel,
           grid_for(layout.channels * cut.chunks, cut.block / cut.group), cut.block, 0, stream, dy, x, layout, cut, mean,
           inv_std, scale, bias, act, workspace);
    launch("batchnorm_gradient_sums", gradient_sums_kernel, grid_for(layout.channels * WARP), BLOCK, 0, stream,
           workspace, layout.channels, cut.chunks, first, second);
}

}  // namespace

int64_t batchnorm_workspace_floats(int64_t batch, int64_t channels, int64_t spatial) {
    return 3 * channels * chunking(channels, batch * spatial).chunks;
}

void batchnorm_statistics(const float* x, int64_t batch, int64_t channels, int64_t spatial, float momentum,
                          float* mean, float* inv_std, float* rolling_mean, float* rolling_variance, float* workspace,
                          cudaStream_t stream) {
    if (channels == 0) return;
    const ChannelLayout layout{channels, spatial, batch * spatial};
    const Chunking cut = chunking(channels, layout.count);
    launch("batchnorm_statistics_partials", statistics_partials_kernel,
           grid_for(channels * cut.chunks, cut.block / cut.group), cut.block, 0, stream, x, layout, cut, workspace);
    launch("batchnorm_statistics", statistics_kernel, grid_for(channels * WARP), BLOCK, 0, stream, workspace,
           layout, cut, momentum, mean, inv_std, rolling_mean, rolling_variance);
}

void batchnorm_inverse_std(const float* variance, float* inv_std, int64_t channels, cudaStream_t stream) {
    if (channels == 0) return;
    launch("batchnorm_inverse_std", inverse_std_kernel, grid_for(channels), BLOCK, 0, stream, variance, inv_std,
           channels);
}

void batchnorm_normalize(const float* x, float* y, int64_t batch, int64_t channels, int64_t spatial,
                         const float* mean, const float* inv_std, const float* scale, const float* bias,
                         Activation act, cudaStream_t stream) {
    const int64_t n = batch * channels * spatial;
    if (n == 0) return;
    launch("batchnorm_normalize", normalize_kernel, grid_for(n), BLOCK, 0, stream, x, y, n, channels, spatial, mean,
           inv_std, scale, bias, act);
}

void batchnorm_backward(const float* dy, const float* x, int64_t batch, int64_t channels, int64_t spatial,
                        const float* mean, const float* inv_std, const float* scale, const float* bias, Activation act,
                        bool train, float* dx, float* dscale, float* dbias, float* workspace, cudaStream_t stream) {
    if (channels == 0) return;
    const ChannelLayout layout{channels, spatial, batch * spatial};
    gradient_sums(dy, x, layout, mean, inv_std, scale, bias, act, dbias, dscale, workspace, stream);
    const int64_t n = channels * layout.count;
    if (n == 0) return;
    launch("batchnorm_backward_dx", backward_dx_kernel, grid_for(n), BLOCK, 0, stream, dy, x, n, layout, mean, inv_std,
           scale, bias, act, train, dscale, dbias, dx);
}

void channel_sum(const float* x, int64_t batch, int64_t channels, int64_t spatial, float* sums, float* workspace,
                 cudaStream_t stream) {
    if (channels == 0) return;
    gradient_sums(x, nullptr, ChannelLayout{channels, spatial, batch * spatial}, nullptr, nullptr, nullptr, nullptr,
                  Activation::linear, sums, nullptr, workspace, stream);
}

}  // namespace cuda
}  // namespace darknet_py
