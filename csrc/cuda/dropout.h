// Dropout (dropout.cu) with a counter-based random number: the uniform of value i under a 64-bit seed is a hash of
// (seed, i), so a mask is the same on every engine (darknet_py/backend.py NumpyOps.dropout computes the same hash
// in NumPy) and backward recomputes it instead of keeping it.
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// y = u_i < probability ? 0 : x * scale for n values, u_i = uniform(seed, i) in [0, 1): the top 24 bits of
// splitmix64's output for index i + 1 of the stream `seed` (mix(seed + (i + 1) * 0x9E3779B97F4A7C15)), times 2^-24.
// y may be x.
void dropout(const float* x, float* y, int64_t n, float probability, float scale, uint64_t seed,
             cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
