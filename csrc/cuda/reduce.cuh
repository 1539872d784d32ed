// Block-wide reductions for kernel files (after common.cuh): one block sums many values in a fixed order, so the
// result does not depend on timing (unlike atomics).
#pragma once
#include "common.cuh"

namespace darknet_py {
namespace cuda {

constexpr unsigned REDUCE_BLOCK = 256;   // threads per block of the kernels that reduce with block_sum

constexpr unsigned FULL_WARP = 0xffffffffu;

// The sum of `value` over the 32 lanes of a full warp, by a butterfly: every lane gets the same bits (each step adds
// the same two numbers in both lanes).
template <typename T>
__device__ __forceinline__ T warp_sum(T value) {
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_xor_sync(FULL_WARP, value, offset);
    return value;
}

// warp_sum of each of the N values.
template <int N>
__device__ __forceinline__ void warp_sums(float (&values)[N]) {
    for (int offset = 16; offset > 0; offset /= 2)
        for (int j = 0; j < N; ++j) values[j] += __shfl_xor_sync(FULL_WARP, values[j], offset);
}

// The sums over the warp of 2*HALF values per lane, scattered: lane l returns the total of value (l / 2) %
// (2*HALF) (lanes l and l^1 the same). Recursive halving: each step sends half of the values still held to the
// partner lane and keeps the sums of the other half, 2*HALF shuffles in all instead of warp_sum's 5 per value.
template <int HALF>
__device__ __forceinline__ float warp_sum_scatter(float* values, unsigned lane) {
    const bool upper = lane & (2 * HALF);   // partner: lane ^ 2*HALF; this lane keeps the upper half if set
    for (int i = 0; i < HALF; ++i) {
        const float send = upper ? values[i] : values[HALF + i];
        values[i] = (upper ? values[HALF + i] : values[i]) + __shfl_xor_sync(FULL_WARP, send, 2 * HALF);
    }
    if constexpr (HALF > 1) {
        return warp_sum_scatter<HALF / 2>(values, lane);
    } else {
        return values[0] + __shfl_xor_sync(FULL_WARP, values[0], 1);
    }
}

// The sum of `value` over the threads of the block, valid in thread 0 (the others get a partial sum). Every thread
// of the block must call it; blockDim.x a multiple of 32. It may be called again at once (it ends at a barrier).
__device__ __forceinline__ float block_sum(float value) {
    __shared__ float warp_sums[32];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    value = warp_sum(value);
    if (lane == 0) warp_sums[warp] = value;
    __syncthreads();
    if (warp == 0) value = warp_sum(lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f);
    __syncthreads();   // warp_sums is free again
    return value;
}

// Segments up to this long are summed by one warp each (REDUCE_BLOCK / 32 per block), longer ones by a whole block:
// a block on a short segment leaves most of its threads idle, a warp on a long one takes long.
constexpr int64_t WARP_SEGMENT = 2048;

// out[j] = (sum over t < length of term(j, t)) / divisor, for j < count; term(j, t) is the t-th value of segment j.
// One warp per segment when length <= WARP_SEGMENT, else one block; either way a fixed order of additions.
template <typename Term>
__global__ void segment_sums_kernel(Term term, int64_t count, int64_t length, float divisor, float* out) {
    if (length <= WARP_SEGMENT) {
        const int64_t warps = int64_t(gridDim.x) * (blockDim.x / 32);
        const unsigned lane = threadIdx.x % 32;
        // every lane of a warp has the same j: the warp stays converged for warp_sum's shuffles
        for (int64_t j = int64_t(blockIdx.x) * (blockDim.x / 32) + threadIdx.x / 32; j < count; j += warps) {
            float sum = 0.0f;
            for (int64_t t = lane; t < length; t += 32) sum += term(j, t);
            sum = warp_sum(sum);
            if (lane == 0) out[j] = sum / divisor;
        }
        return;
    }
    for (int64_t j = blockIdx.x; j < count; j += gridDim.x) {
        float sum = 0.0f;
        for (int64_t t = threadIdx.x; t < length; t += blockDim.x) sum += term(j, t);
        sum = block_sum(sum);
        if (threadIdx.x == 0) out[j] = sum / divisor;
    }
}

// Blocks of REDUCE_BLOCK threads for segment_sums_kernel over `count` segments of `length`.
inline unsigned segment_sums_grid(int64_t count, int64_t length) {
    return length <= WARP_SEGMENT ? grid_for(count, REDUCE_BLOCK / 32) : grid_for(count, 1);
}

}  // namespace cuda
}  // namespace darknet_py
