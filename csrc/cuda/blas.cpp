#include "blas.h"

#include <stdexcept>

#if defined(DN_CUDA_EMULATION)
#include "../parallel.h"
#else
#include <dlfcn.h>
#endif

namespace darknet_py {
namespace cuda {

namespace {

void check_sizes(int64_t m, int64_t n, int64_t k, int64_t lda, int64_t ldb, int64_t ldc, int64_t batch) {
    if (m < 0 || n < 0 || k < 0 || batch < 0) throw std::invalid_argument("gemm: negative size");
    if (m > INT32_MAX || n > INT32_MAX || k > INT32_MAX || lda > INT32_MAX || ldb > INT32_MAX || ldc > INT32_MAX ||
        batch > INT32_MAX)
        throw std::invalid_argument("gemm: a size or leading dimension past 2^31-1 (split the call)");
}

}  // namespace

#if defined(DN_CUDA_EMULATION)

std::string blas_init(const std::vector<std::string>&) { return "host GEMM (CUDA emulation)"; }
void blas_set_tf32(bool) {}
void blas_set_workspace(void*, size_t) {}

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                          int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta,
                          float* c, int64_t ldc, int64_t stride_c, int64_t batch, cudaStream_t) {
    check_sizes(m, n, k, lda, ldb, ldc, batch);
    if (m == 0 || n == 0) return;
    // one task per output column of one batch entry; A's columns (or rows, transposed) are read contiguously
    parallel_for(batch * n, [&](int64_t begin, int64_t end) {
        for (int64_t task = begin; task < end; ++task) {
            const int64_t index = task / n, j = task % n;
            const float* A = a + index * stride_a;
            const float* B = b + index * stride_b;
            float* C = c + index * stride_c + j * ldc;
            for (int64_t i = 0; i < m; ++i) C[i] = beta == 0.0f ? 0.0f : beta * C[i];
            if (!trans_a) {
                for (int64_t p = 0; p < k; ++p) {
                    const float bp = alpha * (trans_b ? B[j + p * ldb] : B[p + j * ldb]);
                    const float* column = A + p * lda;
                    for (int64_t i = 0; i < m; ++i) C[i] += column[i] * bp;
                }
            } else {
                for (int64_t i = 0; i < m; ++i) {
                    const float* row = A + i * lda;
                    float sum = 0.0f;
                    for (int64_t p = 0; p < k; ++p) sum += row[p] * (trans_b ? B[j + p * ldb] : B[p + j * ldb]);
                    C[i] += alpha * sum;
                }
            }
        }
    }, 1 + 65536 / (1 + m * k));
}

#else

// The few cuBLAS entry points we call, declared here and found with dlsym: the extension needs no cuBLAS headers
// or import library at build time (the build machines have none), and its handle is its own.
namespace {

using Handle = void*;
using Status = int;   // CUBLAS_STATUS_SUCCESS = 0
constexpr int OP_N = 0, OP_T = 1;
constexpr int DEFAULT_MATH = 0, TF32_TENSOR_OP_MATH = 3;

struct Cublas {
    void* library = nullptr;
    std::string path;
    Handle handle = nullptr;
    Status (*create)(Handle*) = nullptr;
    Status (*set_stream)(Handle, cudaStream_t) = nullptr;
    Status (*set_math_mode)(Handle, int) = nullptr;
    Status (*set_workspace)(Handle, void*, size_t) = nullptr;
    Status (*sgemm_strided_batched)(Handle, int, int, int, int, int, const float*, const float*, int, long long,
                                    const float*, int, long long, const float*, float*, int, long long, int) = nullptr;
};

Cublas& cublas() {
    static Cublas instance;
    return instance;
}

void check(Status status, const char* call) {
    if (status != 0) throw std::runtime_error(std::string("cuBLAS ") + call + " failed with status " + std::to_string(status));
}

template <typename F>
void resolve(void* library, const char* symbol, F& function) {
    function = reinterpret_cast<F>(dlsym(library, symbol));
    if (!function) throw std::runtime_error(std::string("cuBLAS: symbol ") + symbol + " not found");
}

Cublas& loaded() {
    Cublas& blas = cublas();
    if (!blas.handle) throw std::runtime_error("cuBLAS is not loaded: call blas_init first");
    return blas;
}

}  // namespace

std::string blas_init(const std::vector<std::string>& libraries) {
    Cublas& blas = cublas();
    if (blas.handle) return blas.path;
    std::string tried;
    for (const std::string& name : libraries) {
        blas.library = dlopen(name.c_str(), RTLD_NOW | RTLD_LOCAL);
        if (blas.library) {
            blas.path = name;
            break;
        }
        tried += (tried.empty() ? "" : ", ") + name;
    }
    if (!blas.library) throw std::runtime_error("cuBLAS not found (tried " + tried + ")");
    resolve(blas.library, "cublasCreate_v2", blas.create);
    resolve(blas.library, "cublasSetStream_v2", blas.set_stream);
    resolve(blas.library, "cublasSetMathMode", blas.set_math_mode);
    resolve(blas.library, "cublasSetWorkspace_v2", blas.set_workspace);
    resolve(blas.library, "cublasSgemmStridedBatched", blas.sgemm_strided_batched);
    check(blas.create(&blas.handle), "cublasCreate");
    check(blas.set_math_mode(blas.handle, DEFAULT_MATH), "cublasSetMathMode");
    return blas.path;
}

void blas_set_tf32(bool enabled) {
    Cublas& blas = loaded();
    check(blas.set_math_mode(blas.handle, enabled ? TF32_TENSOR_OP_MATH : DEFAULT_MATH), "cublasSetMathMode");
}

void blas_set_workspace(void* workspace, size_t bytes) {
    Cublas& blas = loaded();
    check(blas.set_workspace(blas.handle, workspace, workspace ? bytes : 0), "cublasSetWorkspace");
}

void gemm_strided_batched(bool trans_a, bool trans_b, int64_t m, int64_t n, int64_t k, float alpha, const float* a,
                          int64_t lda, int64_t stride_a, const float* b, int64_t ldb, int64_t stride_b, float beta,
                          float* c, int64_t ldc, int64_t stride_c, int64_t batch, cudaStream_t stream) {
    check_sizes(m, n, k, lda, ldb, ldc, batch);
    if (m == 0 || n == 0 || batch == 0) return;
    Cublas& blas = loaded();
    check(blas.set_stream(blas.handle, stream), "cublasSetStream");
    check(blas.sgemm_strided_batched(blas.handle, trans_a ? OP_T : OP_N, trans_b ? OP_T : OP_N, int(m), int(n), int(k),
                                     &alpha, a, int(lda), stride_a, b, int(ldb), stride_b, &beta, c, int(ldc),
                                     stride_c, int(batch)),
          "cublasSgemmStridedBatched");
}

#endif

}  // namespace cuda
}  // namespace darknet_py
