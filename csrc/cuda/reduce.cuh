// Block-wide reductions for kernel files (after common.cuh): one block sums many values in a fixed order, so the
// result does not depend on timing (unlike atomics).
#pragma once
#include "common.cuh"

namespace darknet_py {
namespace cuda {

constexpr unsigned REDUCE_BLOCK = 256;   // threads per block of the kernels that reduce with block_sum

// The sum of `value` over the threads of the block, valid in thread 0 (the others get a partial sum). Every thread
// of the block must call it; blockDim.x a multiple of 32. It may be called again at once (it ends at a barrier).
__device__ __forceinline__ float block_sum(float value) {
    __shared__ float warp_sums[32];
    const unsigned lane = threadIdx.x % 32, warp = threadIdx.x / 32;
    for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    if (lane == 0) warp_sums[warp] = value;
    __syncthreads();
    if (warp == 0) {
        value = lane < blockDim.x / 32 ? warp_sums[lane] : 0.0f;
        for (int offset = 16; offset > 0; offset /= 2) value += __shfl_down_sync(0xffffffffu, value, offset);
    }
    __syncthreads();   // warp_sums is free again
    return value;
}

}  // namespace cuda
}  // namespace darknet_py
