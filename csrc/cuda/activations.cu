#include "activations.h"
#include "common.cuh"

namespace darknet_py {

__device__ __forceinline__ float apply(float x, Activation a) {
    switch (a) {
        case Activation::Logistic: return 1.f / (1.f + expf(-x));
        case Activation::Relu: return x > 0.f ? x : 0.f;
        case Activation::Leaky: return x > 0.f ? x : 0.1f * x;
        case Activation::Swish: return x / (1.f + expf(-x));
        case Activation::Mish: {
            // darknet's softplus with threshold 20: log1p(exp(x)) only where it does not overflow
            const float softplus = x > 20.f ? x : (x < -20.f ? expf(x) : log1pf(expf(x)));
            return x * tanhf(softplus);
        }
        default: return x;
    }
}

__global__ void activate_kernel(float* x, int64_t n, Activation a) {
    const int64_t step = static_cast<int64_t>(blockDim.x) * gridDim.x;
    for (int64_t i = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; i < n; i += step)
        x[i] = apply(x[i], a);
}

void activate_inplace(float* x, int64_t n, Activation a, cudaStream_t stream) {
    if (n <= 0) return;
    const unsigned block = 256;
    activate_kernel<<<grid_for(n, block), block, 0, stream>>>(x, n, a);
    DARKNET_CUDA_CHECK_LAUNCH();
}

}  // namespace darknet_py
