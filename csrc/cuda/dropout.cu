#include "dropout.h"

#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

constexpr uint64_t GOLDEN_GAMMA = 0x9E3779B97F4A7C15ull;

// splitmix64's output function (Steele, Lea, Flood 2014): a bijective mix of the 64 bits.
__device__ __forceinline__ uint64_t mix64(uint64_t z) {
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

__device__ __forceinline__ float uniform(uint64_t seed, int64_t i) {
    const uint64_t bits = mix64(seed + uint64_t(i + 1) * GOLDEN_GAMMA) >> 40;
    return float(bits) * (1.0f / 16777216.0f);   // exact: 24 bits
}

__global__ void dropout_kernel(const float* x, float* y, int64_t n, float probability, float scale, uint64_t seed) {
    for (int64_t i = grid_start(); i < n; i += grid_stride())
        y[i] = uniform(seed, i) < probability ? 0.0f : x[i] * scale;
}

}  // namespace

void dropout(const float* x, float* y, int64_t n, float probability, float scale, uint64_t seed,
             cudaStream_t stream) {
    if (n == 0) return;
    launch("dropout", dropout_kernel, grid_for(n), BLOCK, 0, stream, x, y, n, probability, scale, seed);
}

}  // namespace cuda
}  // namespace darknet_py
