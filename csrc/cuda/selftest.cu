#include "selftest.h"

#include <stdexcept>

#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

// out[block] = sum of the block's slice of x (blockDim.x a power of 2): a shared-memory tree with barriers.
__global__ void block_sum(const float* x, int64_t n, float* out) {
    __shared__ float partial[1024];
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    for (unsigned half = blockDim.x / 2; half > 0; half /= 2) {
        if (threadIdx.x < half) partial[threadIdx.x] += partial[threadIdx.x + half];
        __syncthreads();
    }
    if (threadIdx.x == 0) out[blockIdx.x] = partial[0];
}

// out[0] = sum of x: each warp reduces with shuffles (partial warps use only their existing lanes), lane 0 adds
// its warp's sum atomically.
__global__ void warp_sum(const float* x, int64_t n, float* out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const unsigned mask = __activemask();
    const int lanes = __popc(mask);
    const int lane = threadIdx.x % warpSize;
    float v = i < n ? x[i] : 0.0f;
    for (int offset = 16; offset > 0; offset /= 2) {
        const float other = __shfl_down_sync(mask, v, offset);
        if (lane + offset < lanes) v += other;
    }
    if (lane == 0) atomicAdd(out, v);
}

// Per thread, 6 values: the butterfly (xor) sum of its warp, lane 3's value, the inclusive scan (shfl_up) of its
// warp, how many lanes have x > 0 (popc of the ballot), any(x > 0), all(x > 0). Full warps only.
__global__ void warp_ops(const float* x, int64_t n, float* out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const float v = i < n ? x[i] : 0.0f;
    float sum = v;
    for (int m = 16; m > 0; m /= 2) sum += __shfl_xor_sync(0xffffffffu, sum, m);
    const float third = __shfl_sync(0xffffffffu, v, 3);
    float scan = v;
    const int lane = threadIdx.x % warpSize;
    for (int offset = 1; offset < 32; offset *= 2) {
        const float other = __shfl_up_sync(0xffffffffu, scan, offset);
        if (lane >= offset) scan += other;
    }
    const unsigned ballot = __ballot_sync(0xffffffffu, v > 0.0f);
    const int any = __any_sync(0xffffffffu, v > 0.0f), all = __all_sync(0xffffffffu, v > 0.0f);
    if (i < n) {
        float* o = out + 6 * i;
        o[0] = sum;
        o[1] = third;
        o[2] = scan;
        o[3] = float(__popc(ballot));
        o[4] = float(any);
        o[5] = float(all);
    }
}

// out[block] = how many threads of the block have x > 0 (__syncthreads_count).
__global__ void count_positive(const float* x, int64_t n, float* out) {
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    const int count = __syncthreads_count(i < n && x[i] > 0.0f);
    if (threadIdx.x == 0) out[blockIdx.x] = float(count);
}

// Reverses each block's slice of x through dynamic shared memory.
__global__ void reverse_blocks(const float* x, int64_t n, float* out) {
    DN_DYNAMIC_SHARED(float, tile);
    const int64_t base = int64_t(blockIdx.x) * blockDim.x;
    const int64_t i = base + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : 0.0f;
    __syncthreads();
    const int64_t j = base + (blockDim.x - 1 - threadIdx.x);
    if (j < n) out[j] = tile[threadIdx.x];
}

// Broken on purpose: each thread reads its neighbour's shared value without a barrier after the writes (a race:
// what it reads depends on which thread ran first).
__global__ void racy_neighbour(const float* x, int64_t n, float* out) {
    DN_DYNAMIC_SHARED(float, tile);
    const int64_t i = int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
    tile[threadIdx.x] = i < n ? x[i] : 0.0f;
    if (i < n) out[i] = tile[(threadIdx.x + 1) % blockDim.x];
}

// out[k] = how many x fall in [k, k+1), for k < 16 (atomicAdd on ints, read back as floats by the caller).
__global__ void histogram(const float* x, int64_t n, float* out) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int k = int(floorf(x[i]));
        if (k >= 0 && k < 16) atomicAdd(reinterpret_cast<int*>(out) + k, 1);
    }
}

// Broken on purpose (emulation only): a barrier only the first warp reaches; the others return.
__global__ void divergent_barrier(const float*, int64_t, float* out) {
    if (threadIdx.x < 32) {
        __syncthreads();
        out[threadIdx.x] = 1.0f;
    }
}

// Broken on purpose: half of each warp waits at __syncthreads, the other half at a barrier of the whole warp.
__global__ void split_barrier(const float*, int64_t, float*) {
    if (threadIdx.x % 32 < 16)
        __syncthreads();
    else
        __syncwarp();
}

}  // namespace

void selftest(const std::string& name, const float* x, int64_t n, float* out, unsigned blocks, unsigned threads,
              cudaStream_t stream) {
    using Kernel = void (*)(const float*, int64_t, float*);
    struct Entry { const char* name; Kernel kernel; size_t shared_per_thread, shared_fixed; };
    static const Entry entries[] = {
        {"block_sum", block_sum, 0, 0},           {"warp_sum", warp_sum, 0, 0},
        {"warp_ops", warp_ops, 0, 0},             {"count_positive", count_positive, 0, 0},
        {"reverse_blocks", reverse_blocks, 4, 0}, {"histogram", histogram, 0, 0},
        {"divergent_barrier", divergent_barrier, 0, 0}, {"split_barrier", split_barrier, 0, 0},
        {"oversized_shared", reverse_blocks, 0, 64 * 1024},   // more than a launch may ask for without an opt-in
        {"racy_neighbour", racy_neighbour, 4, 0},
    };
    for (const Entry& e : entries)
        if (name == e.name)
            return launch(e.name, e.kernel, blocks, threads, e.shared_fixed + e.shared_per_thread * threads, stream, x,
                          n, out);
    throw std::invalid_argument("unknown self-test kernel: " + name);
}

}  // namespace cuda
}  // namespace darknet_py
