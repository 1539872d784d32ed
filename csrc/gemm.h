// Single-precision GEMM for the inference convolutions: C = A B with A the weights (m x k), B the activations
// (k x n) read in place, C (m x n) row-major. A is either row-major or packed in advance as PACK_ROWS-row panels
// (Winograd's cached transformed weights, csrc/winograd.h). It runs on the kernels' own pool (csrc/parallel.cpp):
// no BLAS threads competing with it for the cores.
#pragma once
#include <cstdint>
#include <functional>

#include "activations.h"

namespace darknet_py {

// Rows per panel: the kernel computes PACK_ROWS rows of C at a time. A packed panel holds rows PACK_ROWS*r ...
// as k groups of PACK_ROWS values.
constexpr int64_t PACK_ROWS = 8;

inline int64_t packed_panels(int64_t m) { return (m + PACK_ROWS - 1) / PACK_ROWS; }

// The left matrix: m x k, row-major with row stride lda, or packed: packed_panels(m) panels, each k groups of
// PACK_ROWS values (rows past m zero).
struct LeftMatrix {
    const float* data;
    int64_t m, k, lda;
    bool packed;
};

// On the calling thread: rows [PACK_ROWS*panel_begin, PACK_ROWS*panel_end) (those below m) and columns
// [column_begin, column_end) of C = A B.
void gemm_block(const LeftMatrix& a, int64_t panel_begin, int64_t panel_end, const float* b, int64_t ldb,
                int64_t column_begin, int64_t column_end, float* c, int64_t ldc);

// Columns [first, last) of B for gemm(): returns where its row 0 starts, with its row stride in *ldb; may build
// them in `buffer` (k x (last - first) floats, when gemm() was told to provide one) and return that.
using ColumnSource = std::function<const float*(int64_t first, int64_t last, float* buffer, int64_t* ldb)>;

// C (n columns) = act(A B * scale[row] + shift[row]) on the kernels' pool, in parts of one panel by a slice of
// columns, each computed whole by one thread (results do not depend on the thread count); a thread asks `columns`
// once per slice it works on. scale may be null (1); shift may be null (no affine map, no activation).
void gemm(const LeftMatrix& a, int64_t n, const ColumnSource& columns, bool buffered, float* c, int64_t ldc,
          const float* scale, const float* shift, Activation act);

// gemm() of a B held in memory (k x n, row stride ldb).
void gemm(const LeftMatrix& a, const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* scale,
          const float* shift, Activation act);

// The instruction set the GEMM runs with ("avx512f", "avx2" or "baseline").
const char* gemm_isa();

}  // namespace darknet_py
