// Error checking shared by every CUDA file: any failed call throws with file:line and CUDA's message.
#pragma once
#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#define DARKNET_CUDA_CHECK(call)                                                                      \
    do {                                                                                              \
        cudaError_t status_ = (call);                                                                 \
        if (status_ != cudaSuccess)                                                                   \
            throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + \
                                     cudaGetErrorString(status_));                                    \
    } while (0)

// After a kernel launch: launch-configuration errors surface here, asynchronous ones at the next sync.
#define DARKNET_CUDA_CHECK_LAUNCH() DARKNET_CUDA_CHECK(cudaGetLastError())

namespace darknet_py {
// Blocks for a grid-stride loop over n elements: capped (enough to fill any GPU), the loop covers the rest.
inline unsigned grid_for(int64_t n, unsigned block) {
    int64_t blocks = (n + block - 1) / block;
    return static_cast<unsigned>(blocks > 65535 * 16 ? 65535 * 16 : (blocks < 1 ? 1 : blocks));
}
}  // namespace darknet_py
