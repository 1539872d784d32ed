// The CUDA runtime (nvcc builds) or its host emulation (DN_CUDA_EMULATION, emulation.h), and error checking:
// what the kernel files' host-side headers need. Kernel files include common.cuh, which includes this.
#pragma once
#if defined(DN_CUDA_EMULATION)
#include "emulation.h"
#else
#include <cuda_runtime.h>
#endif

#include <cstdint>
#include <stdexcept>
#include <string>

// Any failed CUDA call throws with file:line and CUDA's message (pybind11 turns it into RuntimeError).
#define DN_CUDA_CHECK(call)                                                                           \
    do {                                                                                              \
        const cudaError_t status_ = (call);                                                           \
        if (status_ != cudaSuccess)                                                                   \
            throw std::runtime_error(std::string(__FILE__) + ":" + std::to_string(__LINE__) + ": " + \
                                     cudaGetErrorString(status_));                                    \
    } while (0)

namespace darknet_py {
namespace cuda {

// The stream the engine passes in every call (CuPy's stream pointer; ignored by the emulation).
inline cudaStream_t as_stream(uintptr_t stream) { return reinterpret_cast<cudaStream_t>(stream); }

}  // namespace cuda
}  // namespace darknet_py
