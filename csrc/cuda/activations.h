#pragma once
#include <cuda_runtime.h>
#include <cstdint>

namespace darknet_py {
enum class Activation { Linear, Logistic, Relu, Leaky, Mish, Swish };

// x[i] = activation(x[i]) for i < n, on `stream`.
void activate_inplace(float* x, int64_t n, Activation a, cudaStream_t stream);
}  // namespace darknet_py
