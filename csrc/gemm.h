// Single-precision GEMM for the inference convolutions: C = A B with A the weights (m x k), B the activations
// (k x n), C (m x n) row-major, optionally in groups (A's and C's rows and B's rows split into `groups` equal parts,
// part g of C = part g of A times part g of B). A is either row-major or packed in advance as PACK_ROWS-row panels
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
// gemm_block computes whole runs of COLUMN_ALIGN columns (the widest vector): callers pad B and C to them.
constexpr int64_t COLUMN_ALIGN = 16;

inline int64_t packed_panels(int64_t m) { return (m + PACK_ROWS - 1) / PACK_ROWS; }

// The left matrix (of one group): m x k, row-major with row stride lda, or packed: packed_panels(m) panels, each k
// groups of PACK_ROWS values (rows past m zero).
struct LeftMatrix {
    const float* data;
    int64_t m, k, lda;
    bool packed;
};

// On the calling thread: rows [PACK_ROWS*panel_begin, PACK_ROWS*panel_end) (those below m) and columns
// [column_begin, column_end) of C = A B; column_end - column_begin a multiple of COLUMN_ALIGN.
void gemm_block(const LeftMatrix& a, int64_t panel_begin, int64_t panel_end, const float* b, int64_t ldb,
                int64_t column_begin, int64_t column_end, float* c, int64_t ldc);

// Writes columns [first, last) of rows [row_begin, row_end) of group `group`'s part of B (k rows) to `panel`, row r
// at panel + r * stride.
using ColumnSource = std::function<void(int64_t group, int64_t first, int64_t last, int64_t row_begin,
                                        int64_t row_end, float* panel, int64_t stride)>;

// C (n columns; a.m rows per group, groups stacked, A's groups likewise) = act(A B * scale[row] + shift[row]) on
// the kernels' pool, in parts of a few panels of one group by a slice of columns, each computed whole by one thread
// (results do not depend on the thread count). Each thread copies the slice of B it works on into a panel padded
// to whole vectors (`columns` fills it), multiplies it into a tile, and writes the tile's rows to C through the
// epilogue; where B is one slice wide and every thread would copy the same panels, the threads copy them once,
// together, first. Fewer than 8 columns (with a row-major A) are dot products along k instead, the epilogue applied in
// place. scale may be null (1); shift may be null (no affine map, no activation).
void gemm(const LeftMatrix& a, int64_t groups, int64_t n, const ColumnSource& columns, float* c, int64_t ldc,
          const float* scale, const float* shift, Activation act);

// Floats gemm() allocates per thread (its panel of B and its tile of C) for k rows and n columns.
int64_t gemm_thread_floats(int64_t k, int64_t n);

// gemm() of a B held in memory (groups * k rows of n columns, row stride ldb).
void gemm(const LeftMatrix& a, int64_t groups, const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc,
          const float* scale, const float* shift, Activation act);

}  // namespace darknet_py
