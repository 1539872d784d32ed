// Kernels that exercise the CUDA features the emulation provides (selftest.cu), for the emulation's own tests and
// the same tests on a GPU: shared-memory barriers, warp shuffles and votes on full and partial warps, atomics,
// dynamic shared memory, and (emulation only: they would hang or fail on a GPU) broken kernels and launches.
#pragma once
#include <cstdint>
#include <string>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// Runs the self-test kernel `name` on n floats x with `blocks` blocks of `threads` threads, writing out (its size
// depends on the kernel: tests/test_cuda_emulation.py has the references).
void selftest(const std::string& name, const float* x, int64_t n, float* out, unsigned blocks, unsigned threads,
              cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
