#include "depthwise.h"

#include <algorithm>
#include <climits>
#include <stdexcept>

#include "activations.cuh"
#include "common.cuh"
#include "reduce.cuh"

namespace darknet_py {
namespace cuda {

namespace {

// Block shapes: a tile of TILE_W x TILE_H outputs (forward, weight gradient) or inputs (input gradient), one
// thread each; widths 8-32 and a whole number of warps (the weight gradient reduces with full-warp shuffles).
constexpr unsigned MIN_TILE_W = 8, MAX_TILE_W = 32, MAX_THREADS = 256, WARP = 32;
constexpr size_t SHARED_LIMIT = 48 * 1024;   // without the opt-in for larger dynamic shared memory
// Filters (forward) or channels (input gradient) one thread computes: the staged tile is read once for all of
// them. 1 for depthwise; groups with more channels take MANY_PER_THREAD.
constexpr int MANY_PER_THREAD = 4;
constexpr int WGRAD_TAPS = 16;                 // taps one thread accumulates at once (registers); more: passes
static_assert(WGRAD_TAPS == 16, "the wgrad reduction scatters the taps over the lanes: 2 lanes per tap");
constexpr int64_t WGRAD_TARGET_BLOCKS = 1024;  // shares of the images: enough blocks to fill a GPU

struct Tile {
    unsigned w, h;
};

unsigned pow2_at_least(int64_t n) {
    unsigned p = 1;
    while (p < n && p < MAX_THREADS) p *= 2;
    return p;
}

Tile tile_for(int64_t height, int64_t width) {
    const unsigned w = std::min(MAX_TILE_W, std::max(MIN_TILE_W, pow2_at_least(width)));
    return {w, std::min(MAX_THREADS / w, std::max(WARP / w, pow2_at_least(height)))};
}

// The largest block shapes tile_for returns (the shared memory grows with both sides).
constexpr Tile LARGEST_TILES[] = {{8, 32}, {16, 16}, {32, 8}};

// Input rows (or columns) that `threads` consecutive outputs read.
__host__ __device__ inline int window_extent(int threads, int stride, int size, int dilation) {
    return (threads - 1) * stride + (size - 1) * dilation + 1;
}

// Output rows (or columns) whose windows reach `threads` consecutive inputs: at most this many (conv.cu's col2im
// has the divisibility rule).
__host__ __device__ inline int reach_extent(int threads, int stride, int size, int dilation) {
    return (threads - 1 + (size - 1) * dilation) / stride + 1;
}

__device__ __forceinline__ int64_t floor_div(int64_t a, int64_t b) { return a >= 0 ? a / b : -((-a + b - 1) / b); }

// tile[ty][tx] = plane[y0 + ty][x0 + tx], zero outside the plane (height x width): the block's threads together.
__device__ void stage_tile(const float* plane, int64_t height, int64_t width, int64_t y0, int64_t x0, float* tile,
                           int tile_h, int tile_w) {
    const int threads = blockDim.x * blockDim.y;
    for (int t = threadIdx.y * blockDim.x + threadIdx.x; t < tile_h * tile_w; t += threads) {
        const int64_t y = y0 + t / tile_w, x = x0 + t % tile_w;
        tile[t] = y >= 0 && y < height && x >= 0 && x < width ? plane[y * width + x] : 0.0f;
    }
}

// Block (tile, group and PER_THREAD of its filters), images strided over grid z. For each channel of the group:
// stage the input tile its windows read and the filters' taps, then every thread adds its window.
template <int PER_THREAD>
__global__ void grouped_forward_kernel(const float* x, const float* w, const float* scale, const float* shift,
                                       Activation act, float* out, int64_t images, ConvShape s, int64_t tiles_x,
                                       int64_t tiles) {
    DN_DYNAMIC_SHARED(float, shared);
    const int k = int(s.size), taps = k * k, sx = int(s.stride_x), sy = int(s.stride_y), d = int(s.dilation);
    const int64_t cg = s.channels / s.groups, fg = s.filters / s.groups, chunks = (fg + PER_THREAD - 1) / PER_THREAD;
    const int64_t tile = blockIdx.x % tiles, chunk = blockIdx.x / tiles, group = chunk / chunks;
    const int64_t f0 = group * fg + chunk % chunks * PER_THREAD, f_end = (group + 1) * fg;
    const int64_t oy0 = tile / tiles_x * blockDim.y, ox0 = tile % tiles_x * blockDim.x;
    const int64_t oy = oy0 + threadIdx.y, ox = ox0 + threadIdx.x;
    const int tile_h = window_extent(blockDim.y, sy, k, d), tile_w = window_extent(blockDim.x, sx, k, d);
    float* input = shared;
    float* weights = shared + tile_h * tile_w;
    const int window = threadIdx.y * sy * tile_w + threadIdx.x * sx;
    const int threads = blockDim.x * blockDim.y;
    for (int64_t n = blockIdx.z; n < images; n += gridDim.z) {
        float acc[PER_THREAD] = {};
        for (int64_t c = 0; c < cg; ++c) {
            __syncthreads();   // every thread is done with the previous tile
            stage_tile(x + (n * s.channels + group * cg + c) * s.height * s.width, s.height, s.width,
                       oy0 * sy - s.offset, ox0 * sx - s.offset, input, tile_h, tile_w);
            for (int t = threadIdx.y * blockDim.x + threadIdx.x; t < PER_THREAD * taps; t += threads) {
                const int64_t f = f0 + t / taps;
                weights[t] = f < f_end ? w[(f * cg + c) * taps + t % taps] : 0.0f;
            }
            __syncthreads();
            for (int ky = 0; ky < k; ++ky)
                for (int kx = 0; kx < k; ++kx) {
                    const float v = input[window + ky * d * tile_w + kx * d];
                    for (int j = 0; j < PER_THREAD; ++j) acc[j] += weights[j * taps + ky * k + kx] * v;
                }
        }
        if (oy < s.out_h && ox < s.out_w) {
            for (int j = 0; j < PER_THREAD && f0 + j < f_end; ++j) {
                const int64_t f = f0 + j;
                float v = acc[j];
                if (scale) v *= scale[f];
                if (shift) v += shift[f];
                out[((n * s.filters + f) * s.out_h + oy) * s.out_w + ox] = activate(v, act);
            }
        }
    }
}

// Block (tile of inputs, group and PER_THREAD of its channels). For each filter of the group: stage the part of dy
// whose windows reach the tile and the filter's taps on those channels; each thread gathers, per tap, the output
// that tap connects it to (if the stride divides exactly).
template <int PER_THREAD>
__global__ void grouped_dgrad_kernel(const float* dy, const float* w, float* dx, int64_t images, ConvShape s,
                                     int64_t tiles_x, int64_t tiles) {
    DN_DYNAMIC_SHARED(float, shared);
    const int k = int(s.size), taps = k * k, sx = int(s.stride_x), sy = int(s.stride_y), d = int(s.dilation);
    const int64_t cg = s.channels / s.groups, fg = s.filters / s.groups, chunks = (cg + PER_THREAD - 1) / PER_THREAD;
    const int64_t tile = blockIdx.x % tiles, chunk = blockIdx.x / tiles, group = chunk / chunks;
    const int64_t c0 = chunk % chunks * PER_THREAD;   // within the group
    const int64_t iy0 = tile / tiles_x * blockDim.y, ix0 = tile % tiles_x * blockDim.x;
    const int64_t iy = iy0 + threadIdx.y, ix = ix0 + threadIdx.x;
    const int region_h = reach_extent(blockDim.y, sy, k, d), region_w = reach_extent(blockDim.x, sx, k, d);
    // the first output row/column a tap reaches the tile from: ceil((i0 + offset - (k-1)*dilation) / stride)
    const int64_t oy_base = -floor_div((k - 1) * d - iy0 - s.offset, sy);
    const int64_t ox_base = -floor_div((k - 1) * d - ix0 - s.offset, sx);
    float* region = shared;
    float* weights = shared + region_h * region_w;
    const int threads = blockDim.x * blockDim.y;
    for (int64_t n = blockIdx.z; n < images; n += gridDim.z) {
        float acc[PER_THREAD] = {};
        for (int64_t f = group * fg; f < (group + 1) * fg; ++f) {
            __syncthreads();
            stage_tile(dy + (n * s.filters + f) * s.out_h * s.out_w, s.out_h, s.out_w, oy_base, ox_base, region,
                       region_h, region_w);
            for (int t = threadIdx.y * blockDim.x + threadIdx.x; t < PER_THREAD * taps; t += threads) {
                const int64_t c = c0 + t / taps;
                weights[t] = c < cg ? w[(f * cg + c) * taps + t % taps] : 0.0f;
            }
            __syncthreads();
            for (int ky = 0; ky < k; ++ky) {
                const int64_t y = iy + s.offset - ky * d;
                if (y % sy != 0) continue;   // exact: y / sy is the output row (region row y / sy - oy_base)
                for (int kx = 0; kx < k; ++kx) {
                    const int64_t x = ix + s.offset - kx * d;
                    if (x % sx != 0) continue;
                    const float v = region[(y / sy - oy_base) * region_w + (x / sx - ox_base)];
                    for (int j = 0; j < PER_THREAD; ++j) acc[j] += weights[j * taps + ky * k + kx] * v;
                }
            }
        }
        if (iy < s.height && ix < s.width) {
            for (int j = 0; j < PER_THREAD && c0 + j < cg; ++j)
                dx[((n * s.channels + group * cg + c0 + j) * s.height + iy) * s.width + ix] = acc[j];
        }
    }
}

// Block (filter f, channel c of its group, output tile, share of the images): each thread multiplies its output's
// dy by every tap of its window, over the share's images, then the block sums each tap (warp shuffles, then
// across warps) into partials[share, tile][f, c, tap].
__global__ void grouped_wgrad_kernel(const float* x, const float* dy, float* partials, int64_t images, ConvShape s,
                                     int64_t tiles_x, int64_t tiles) {
    DN_DYNAMIC_SHARED(float, shared);
    const int k = int(s.size), taps = k * k, sx = int(s.stride_x), sy = int(s.stride_y), d = int(s.dilation);
    const int64_t cg = s.channels / s.groups, fg = s.filters / s.groups;
    const int64_t tile = blockIdx.x % tiles, row = blockIdx.x / tiles;   // row = f * cg + c
    const int64_t f = row / cg, c = cg * (f / fg) + row % cg;
    const int64_t oy0 = tile / tiles_x * blockDim.y, ox0 = tile % tiles_x * blockDim.x;
    const int64_t oy = oy0 + threadIdx.y, ox = ox0 + threadIdx.x;
    const bool inside = oy < s.out_h && ox < s.out_w;
    const int tile_h = window_extent(blockDim.y, sy, k, d), tile_w = window_extent(blockDim.x, sx, k, d);
    float* input = shared;
    float* warp_sums = shared + tile_h * tile_w;   // [warp][tap of the pass]
    const int window = threadIdx.y * sy * tile_w + threadIdx.x * sx;
    const int thread = threadIdx.y * blockDim.x + threadIdx.x, warps = blockDim.x * blockDim.y / WARP;
    float* out = partials + (blockIdx.y * tiles + tile) * s.filters * cg * taps + row * taps;
    for (int tap0 = 0; tap0 < taps; tap0 += WGRAD_TAPS) {
        float acc[WGRAD_TAPS] = {};
        for (int64_t n = blockIdx.y; n < images; n += gridDim.y) {
            __syncthreads();
            stage_tile(x + (n * s.channels + c) * s.height * s.width, s.height, s.width, oy0 * sy - s.offset,
                       ox0 * sx - s.offset, input, tile_h, tile_w);
            __syncthreads();
            const float g = inside ? dy[((n * s.filters + f) * s.out_h + oy) * s.out_w + ox] : 0.0f;
            for (int j = 0; j < WGRAD_TAPS; ++j) {
                const int tap = tap0 + j;
                if (tap < taps) acc[j] += g * input[window + tap / k * d * tile_w + tap % k * d];
            }
        }
        // lane l gets the warp's total of tap tap0 + (l / 2) % 16 (taps past the last are zeros)
        const unsigned lane = thread % WARP;
        const float v = warp_sum_scatter<WGRAD_TAPS / 2>(acc, lane);
        if (lane % 2 == 0) warp_sums[thread / WARP * WGRAD_TAPS + lane / 2] = v;
        __syncthreads();
        if (thread < WGRAD_TAPS && tap0 + thread < taps) {
            float total = 0.0f;
            for (int i = 0; i < warps; ++i) total += warp_sums[i * WGRAD_TAPS + thread];
            out[tap0 + thread] = total;
        }
        __syncthreads();   // warp_sums is rewritten by the next pass
    }
}

// out[i] = sum over p < parts of partials[p * count + i], in order.
__global__ void sum_partials_kernel(const float* partials, int64_t parts, int64_t count, float* out) {
    for (int64_t i = grid_start(); i < count; i += grid_stride()) {
        float total = 0.0f;
        for (int64_t p = 0; p < parts; ++p) total += partials[p * count + i];
        out[i] = total;
    }
}

int64_t per_thread(int64_t per_group) { return per_group == 1 ? 1 : MANY_PER_THREAD; }

size_t forward_shared(Tile t, const ConvShape& s, int64_t filters_per_thread) {
    const int k = int(s.size), d = int(s.dilation);
    return sizeof(float) * (window_extent(t.h, int(s.stride_y), k, d) * window_extent(t.w, int(s.stride_x), k, d) +
                            filters_per_thread * k * k);
}

size_t dgrad_shared(Tile t, const ConvShape& s, int64_t channels_per_thread) {
    const int k = int(s.size), d = int(s.dilation);
    return sizeof(float) * (reach_extent(t.h, int(s.stride_y), k, d) * reach_extent(t.w, int(s.stride_x), k, d) +
                            channels_per_thread * k * k);
}

size_t wgrad_shared(Tile t, const ConvShape& s) {
    const int k = int(s.size), d = int(s.dilation);
    return sizeof(float) * (window_extent(t.h, int(s.stride_y), k, d) * window_extent(t.w, int(s.stride_x), k, d) +
                            t.w * t.h / WARP * WGRAD_TAPS);
}

// Blocks along x: tiles times the (group, chunk of filters or channels) pairs.
unsigned blocks_x(int64_t tiles, int64_t pairs) {
    if (tiles * pairs > INT_MAX) throw std::invalid_argument("grouped convolution: too many blocks for one launch");
    return unsigned(tiles * pairs);
}

int64_t wgrad_shares(int64_t images, int64_t blocks) {
    return std::max<int64_t>(1, std::min({images, int64_t(65535), (WGRAD_TARGET_BLOCKS + blocks - 1) / blocks}));
}

}  // namespace

bool grouped_conv_fits(int64_t size, int64_t stride_x, int64_t stride_y, int64_t dilation) {
    ConvShape s{};
    s.size = size;
    s.stride_x = stride_x;
    s.stride_y = stride_y;
    s.dilation = dilation;
    if (std::max({size, stride_x, stride_y, dilation}) > 4096) return false;   // keeps the kernels' int indices small
    for (const Tile& t : LARGEST_TILES)
        if (forward_shared(t, s, MANY_PER_THREAD) > SHARED_LIMIT || dgrad_shared(t, s, MANY_PER_THREAD) > SHARED_LIMIT ||
            wgrad_shared(t, s) > SHARED_LIMIT)
            return false;
    return true;
}

void grouped_conv_forward(const float* x, const float* w, const float* scale, const float* shift, Activation act,
                          float* out, int64_t images, const ConvShape& s, cudaStream_t stream) {
    if (images == 0) return;
    const Tile t = tile_for(s.out_h, s.out_w);
    const int64_t tiles_x = (s.out_w + t.w - 1) / t.w, tiles = tiles_x * ((s.out_h + t.h - 1) / t.h);
    const int64_t fg = s.filters / s.groups, per = per_thread(fg);
    const dim3 grid(blocks_x(tiles, s.groups * ((fg + per - 1) / per)), 1, unsigned(std::min<int64_t>(images, 65535)));
    const dim3 block(t.w, t.h);
    if (per == 1)
        launch("grouped_conv_forward", grouped_forward_kernel<1>, grid, block, forward_shared(t, s, 1), stream, x, w,
               scale, shift, act, out, images, s, tiles_x, tiles);
    else
        launch("grouped_conv_forward", grouped_forward_kernel<MANY_PER_THREAD>, grid, block,
               forward_shared(t, s, MANY_PER_THREAD), stream, x, w, scale, shift, act, out, images, s, tiles_x, tiles);
}

void grouped_conv_dgrad(const float* dy, const float* w, float* dx, int64_t images, const ConvShape& s,
                        cudaStream_t stream) {
    if (images == 0) return;
    const Tile t = tile_for(s.height, s.width);
    const int64_t tiles_x = (s.width + t.w - 1) / t.w, tiles = tiles_x * ((s.height + t.h - 1) / t.h);
    const int64_t cg = s.channels / s.groups, per = per_thread(cg);
    const dim3 grid(blocks_x(tiles, s.groups * ((cg + per - 1) / per)), 1, unsigned(std::min<int64_t>(images, 65535)));
    const dim3 block(t.w, t.h);
    if (per == 1)
        launch("grouped_conv_dgrad", grouped_dgrad_kernel<1>, grid, block, dgrad_shared(t, s, 1), stream, dy, w, dx,
               images, s, tiles_x, tiles);
    else
        launch("grouped_conv_dgrad", grouped_dgrad_kernel<MANY_PER_THREAD>, grid, block,
               dgrad_shared(t, s, MANY_PER_THREAD), stream, dy, w, dx, images, s, tiles_x, tiles);
}

int64_t grouped_conv_wgrad_partials(int64_t images, const ConvShape& s) {
    const Tile t = tile_for(s.out_h, s.out_w);
    const int64_t tiles = (s.out_w + t.w - 1) / t.w * ((s.out_h + t.h - 1) / t.h);
    const int64_t weights = s.filters * (s.channels / s.groups) * s.size * s.size;
    return wgrad_shares(images, tiles * s.filters * (s.channels / s.groups)) * tiles * weights;
}

void grouped_conv_wgrad(const float* x, const float* dy, float* partials, float* dw, int64_t images,
                        const ConvShape& s, cudaStream_t stream) {
    const int64_t weights = s.filters * (s.channels / s.groups) * s.size * s.size;
    if (images == 0) {
        DN_CUDA_CHECK(cudaMemsetAsync(dw, 0, weights * sizeof(float), stream));
        return;
    }
    const Tile t = tile_for(s.out_h, s.out_w);
    const int64_t tiles_x = (s.out_w + t.w - 1) / t.w, tiles = tiles_x * ((s.out_h + t.h - 1) / t.h);
    const int64_t rows = s.filters * (s.channels / s.groups);
    const int64_t shares = wgrad_shares(images, tiles * rows);
    launch("grouped_conv_wgrad", grouped_wgrad_kernel, dim3(blocks_x(tiles, rows), unsigned(shares)), dim3(t.w, t.h),
           wgrad_shared(t, s), stream, x, dy, partials, images, s, tiles_x, tiles);
    launch("grouped_conv_wgrad_sum", sum_partials_kernel, grid_for(weights), BLOCK, 0, stream, partials,
           shares * tiles, weights, dw);
}

}  // namespace cuda
}  // namespace darknet_py
