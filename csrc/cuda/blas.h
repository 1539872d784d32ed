// GEMMs for the CUDA engine: cuBLAS through the extension's own handle on a GPU (CuPy's handle cannot be captured
// in a CUDA graph), a host GEMM with cuBLAS's semantics under emulation. Column-major, as cuBLAS.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// For each b < batch: C_b = alpha * op(A_b) * op(B_b) + beta * C_b, with X_b = X + b * stride_x, op(A) m x k,
// op(B) k x n, C m x n, column-major with leading dimensions lda, ldb, ldc. C is not read when beta is 0.
void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                          int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta,
                          float* c, int64_t ldc, int64_t stride_c, int64_t batch, cudaStream_t stream);

// Loads cuBLAS from the first of `libraries` that opens (file names or paths) and creates the handle; returns what
// was loaded. Under emulation: nothing to load.
std::string blas_init(const std::vector<std::string>& libraries);
// TF32 tensor-core math for float32 GEMMs (off: strict float32, the default).
void blas_set_tf32(bool enabled);
// The workspace cuBLAS uses (device memory the caller owns; needed for graph capture); null releases it.
void blas_set_workspace(void* workspace, size_t bytes);

}  // namespace cuda
}  // namespace darknet_py
