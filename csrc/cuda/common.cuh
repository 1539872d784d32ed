// What every kernel file includes: the runtime (runtime.h), kernel launches and index helpers. Kernels are written
// once against this header and compiled by nvcc or, under DN_CUDA_EMULATION, by the host compiler.
#pragma once
#include "runtime.h"

#if !defined(DN_CUDA_EMULATION)
// `DN_DYNAMIC_SHARED(float, tile)` declares the block's dynamic shared memory as `float* tile`.
#define DN_DYNAMIC_SHARED(type, name)             \
    extern __shared__ unsigned char dn_shared_[]; \
    type* name = reinterpret_cast<type*>(dn_shared_)
#endif

namespace darknet_py {
namespace cuda {

// kernel<<<grid, block, shared_bytes, stream>>>(args...), then a check of the launch. Under emulation it runs
// every block before returning. `name` appears in error messages.
template <typename... Params, typename... Args>
void launch(const char* name, void (*kernel)(Params...), dim3 grid, dim3 block, size_t shared_bytes,
            cudaStream_t stream, Args... args) {
#if defined(DN_CUDA_EMULATION)
    (void)stream;
    dn_emu::run_grid(name, grid, block, shared_bytes, [&] { kernel(static_cast<Params>(args)...); });
#else
    kernel<<<grid, block, shared_bytes, stream>>>(static_cast<Params>(args)...);
    const cudaError_t status = cudaGetLastError();
    if (status != cudaSuccess)
        throw std::runtime_error(std::string("kernel ") + name + ": " + cudaGetErrorString(status));
#endif
}

constexpr unsigned BLOCK = 256;   // threads per block of the elementwise kernels

// Blocks for a grid-stride loop over n items with `block` threads each: enough to fill any GPU, the loop covers
// the rest. n >= 1.
inline unsigned grid_for(int64_t n, unsigned block = BLOCK) {
    const int64_t blocks = (n + block - 1) / block;
    return static_cast<unsigned>(blocks > 65535 * 8 ? 65535 * 8 : (blocks < 1 ? 1 : blocks));
}

// The first index and the stride of a grid-stride loop over a 1-D grid (64-bit: sizes may pass 2^31).
__device__ __forceinline__ int64_t grid_start() { return int64_t(blockIdx.x) * blockDim.x + threadIdx.x; }
__device__ __forceinline__ int64_t grid_stride() { return int64_t(blockDim.x) * gridDim.x; }

}  // namespace cuda
}  // namespace darknet_py
