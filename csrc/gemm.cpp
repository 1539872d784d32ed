#include "gemm.h"

#include <algorithm>
#include <cstring>

#include "parallel.h"
#include "scratch.h"
#include "simd.h"

namespace darknet_py {

namespace {

// C[rows x NV*W] (rows <= PACK_ROWS) = the panel of A at `a` times B[k x NV*W]: the PACK_ROWS*NV accumulators stay
// in registers; each step loads NV vectors of B and broadcasts PACK_ROWS values of A, read from a packed panel
// (PACKED: consecutive) or from PACK_ROWS rows of a row-major A (stride lda; rows past `rows` repeat the last row,
// their results are not stored).
template <class V, int NV, bool PACKED, bool ACCUMULATE>
DARKNET_PY_INLINE void block(const float* __restrict a, int64_t lda, int64_t k, const float* __restrict b,
                             int64_t ldb, float* __restrict c, int64_t ldc, int64_t rows) {
    constexpr int64_t W = lanes<V>();
    const float* row_of[PACK_ROWS];
#pragma GCC unroll 16
    for (int r = 0; r < PACK_ROWS; ++r) row_of[r] = a + (PACKED ? r : std::min<int64_t>(r, rows - 1) * lda);
    V acc[PACK_ROWS][NV];
#pragma GCC unroll 16
    for (int r = 0; r < PACK_ROWS; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] = ACCUMULATE && r < rows ? load<V>(c + r * ldc + j * W) : V{};
    for (int64_t p = 0; p < k; ++p) {
        V row[NV];
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) std::memcpy(&row[j], b + p * ldb + j * W, sizeof(V));
#pragma GCC unroll 16
        for (int r = 0; r < PACK_ROWS; ++r) {
            const float value = PACKED ? row_of[r][p * PACK_ROWS] : row_of[r][p];
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) acc[r][j] += value * row[j];
        }
    }
#pragma GCC unroll 16
    for (int r = 0; r < PACK_ROWS; ++r)
        if (r < rows)
#pragma GCC unroll 4
            for (int j = 0; j < NV; ++j) std::memcpy(c + r * ldc + j * W, &acc[r][j], sizeof(V));
}

// B is read in slices of columns whose part (k x slice) stays in L2 while the panels pass over it.
constexpr int64_t B_SLICE_FLOATS = 1 << 16;   // 256 KiB

// k is taken KC rows at a time (the tile accumulating across them), so that a strip of B (KC x NV vectors) and the
// panels' part of A (PART_PANELS x PACK_ROWS x KC) both stay in L1 (48 KiB) while they serve each other; over
// the whole k they spilled to L2 from k = 128 or so.
constexpr int64_t KC = 128;

// gemm_block: strips of NV vectors of columns, then single vectors (the columns are a multiple of COLUMN_ALIGN),
// each strip multiplied by every panel in turn while it is in L1.
template <class V, int NV, bool PACKED>
DARKNET_PY_INLINE void panels(const LeftMatrix& a, int64_t panel_begin, int64_t panel_end, const float* b,
                              int64_t ldb, int64_t column_begin, int64_t column_end, float* c, int64_t ldc) {
    constexpr int64_t W = lanes<V>(), WIDE = NV * W;
    const int64_t slice = std::max<int64_t>(1, B_SLICE_FLOATS / (std::max<int64_t>(1, a.k) * WIDE)) * WIDE;
    for (int64_t start = column_begin; start < column_end; start += slice) {
        const int64_t stop = std::min(column_end, start + slice);
        const int64_t wide_end = start + (stop - start) / WIDE * WIDE;
        for (int64_t k0 = 0; k0 < std::max<int64_t>(a.k, 1); k0 += KC) {
            const int64_t kc = std::min(KC, a.k - k0);
            for (int64_t j = start; j < stop; j += j < wide_end ? WIDE : W) {
                for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
                    const float* rows_of_a = a.data + panel * PACK_ROWS * (PACKED ? a.k : a.lda) +
                                             k0 * (PACKED ? PACK_ROWS : 1);
                    const float* rows_of_b = b + k0 * ldb + j;
                    const int64_t rows = std::min(PACK_ROWS, a.m - panel * PACK_ROWS);
                    float* out = c + panel * PACK_ROWS * ldc + j;
                    if (j < wide_end) {
                        if (k0) block<V, NV, PACKED, true>(rows_of_a, a.lda, kc, rows_of_b, ldb, out, ldc, rows);
                        else block<V, NV, PACKED, false>(rows_of_a, a.lda, kc, rows_of_b, ldb, out, ldc, rows);
                    } else {
                        if (k0) block<V, 1, PACKED, true>(rows_of_a, a.lda, kc, rows_of_b, ldb, out, ldc, rows);
                        else block<V, 1, PACKED, false>(rows_of_a, a.lda, kc, rows_of_b, ldb, out, ldc, rows);
                    }
                }
            }
        }
    }
}

// gemm_block in the widest instruction set allowed (simd.h), with as many accumulators as its registers hold (32
// zmm: 8 x 2 vectors of 16 floats; 16 ymm or xmm: 8 x 1).
struct Panels {
    template <class V>
    static DARKNET_PY_INLINE void run(const LeftMatrix* a, int64_t pb, int64_t pe, const float* b, int64_t ldb,
                                      int64_t cb, int64_t ce, float* c, int64_t ldc) {
        constexpr int NV = lanes<V>() == 16 ? 2 : 1;
        if (a->packed) {
            panels<V, NV, true>(*a, pb, pe, b, ldb, cb, ce, c, ldc);
        } else {
            panels<V, NV, false>(*a, pb, pe, b, ldb, cb, ce, c, ldc);
        }
    }
};

// Rows of B ahead of the copy that gemm() of a B in memory prefetches.
constexpr int64_t PREFETCH_ROWS = 6;

int64_t round_up(int64_t n, int64_t multiple) { return (n + multiple - 1) / multiple * multiple; }

// Rows [row_begin, row_end) of a panel of B from `columns`, each padded with zeros to whole vectors.
void fill_panel(const ColumnSource& columns, int64_t group, int64_t first, int64_t last, int64_t row_begin,
                int64_t row_end, float* panel, int64_t ldb) {
    columns(group, first, last, row_begin, row_end, panel, ldb);
    const int64_t count = last - first, padded = round_up(count, COLUMN_ALIGN);
    for (int64_t r = row_begin; r < row_end; ++r) std::fill(panel + r * ldb + count, panel + r * ldb + padded, 0.0f);
}

// Columns per part of gemm(): up to 256, fewer where k is large, so that a thread's panel of B (k x columns)
// stays within L2 (256 KiB).
int64_t part_columns(int64_t k) {
    return std::clamp<int64_t>(B_SLICE_FLOATS / std::max<int64_t>(1, k) / 32 * 32, 32, 256);
}

// The widest part's columns, rounded up to whole vectors: the row length of a thread's tile (its panel of B
// rows are a vector longer).
int64_t part_stride(int64_t k, int64_t n) { return round_up(std::min(part_columns(k), n), COLUMN_ALIGN); }

// Panels of A per part of gemm(): each strip of B serves them all while it is in L1.
constexpr int64_t PART_PANELS = 4;

// Fewer columns than DOT_COLUMNS are computed as dot products along k instead: whole vectors of columns would be
// mostly padding (n = 1, a squeeze-and-excitation layer's or a classifier's single pixel, uses one lane in 16).
constexpr int64_t DOT_COLUMNS = 8;
// Rows of A per dot-product step (one load of B serves them all) and per part of the work.
constexpr int DOT_ROWS = 4;
constexpr int64_t DOT_PART_ROWS = 32;

// out[r][j] = row r of A (rows rows, stride lda) . row j of bt (n rows of k floats), r < rows, j < n.
struct DotProducts {
    template <class V>
    static DARKNET_PY_INLINE void run(const float* a, int64_t lda, int64_t rows, int64_t k, const float* bt,
                                      int64_t n, float* out, int64_t ldc) {
        constexpr int64_t W = lanes<V>();
        for (int64_t r0 = 0; r0 < rows; r0 += DOT_ROWS) {
            const float* row_of[DOT_ROWS];
            for (int r = 0; r < DOT_ROWS; ++r) row_of[r] = a + std::min<int64_t>(r0 + r, rows - 1) * lda;
            for (int64_t j = 0; j < n; ++j) {
                const float* column = bt + j * k;
                V acc[DOT_ROWS] = {};
                int64_t p = 0;
                for (; p + W <= k; p += W) {
                    const V b = load<V>(column + p);
#pragma GCC unroll 4
                    for (int r = 0; r < DOT_ROWS; ++r) acc[r] += load<V>(row_of[r] + p) * b;
                }
                for (int r = 0; r < DOT_ROWS && r0 + r < rows; ++r) {
                    float sum = 0.0f;
                    for (int64_t l = 0; l < W; ++l) sum += acc[r][l];
                    for (int64_t q = p; q < k; ++q) sum += row_of[r][q] * column[q];
                    out[(r0 + r) * ldc + j] = sum;
                }
            }
        }
    }
};

// gemm() for n < DOT_COLUMNS and a row-major A, in parts of DOT_PART_ROWS rows of one group: each thread copies
// the group's B (k x n) and transposes it, computes the dot products into C and applies the epilogue there with
// the rows' coefficients spread per value (gemm_thread_floats counts these four buffers).
void dot_gemm(const LeftMatrix& a, int64_t groups, int64_t n, const ColumnSource& columns, float* c, int64_t ldc,
              const float* scale, const float* shift, Activation act) {
    const int64_t parts = (a.m + DOT_PART_ROWS - 1) / DOT_PART_ROWS;
    parallel_for(groups * parts, [&](int64_t begin, int64_t end) {
        const auto b = scratch_floats(a.k * n), bt = scratch_floats(a.k * n);
        const auto factors = scratch_floats(DOT_PART_ROWS * n), offsets = scratch_floats(DOT_PART_ROWS * n);
        int64_t loaded = -1;
        for (int64_t item = begin; item < end; ++item) {
            const int64_t group = item / parts, row0 = item % parts * DOT_PART_ROWS;
            const int64_t rows = std::min(DOT_PART_ROWS, a.m - row0);
            if (group != loaded) {
                loaded = group;
                columns(group, 0, n, 0, a.k, b.get(), n);
                for (int64_t p = 0; p < a.k; ++p)
                    for (int64_t j = 0; j < n; ++j) bt[j * a.k + p] = b[p * n + j];
            }
            float* out = c + (group * a.m + row0) * ldc;
            simd_run<DotProducts>(a.data + (group * a.m + row0) * a.lda, a.lda, rows, a.k, bt.get(), n, out, ldc);
            if (!shift) continue;
            // the epilogue with a coefficient per value: in one call where the rows are contiguous
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t row = group * a.m + row0 + r;
                std::fill_n(factors.get() + r * n, n, scale ? scale[row] : 1.0f);
                std::fill_n(offsets.get() + r * n, n, shift[row]);
            }
            if (ldc == n) {   // the part's rows are one run of values
                affine_activate_each(out, out, rows * n, factors.get(), offsets.get(), act);
            } else {
                for (int64_t r = 0; r < rows; ++r)
                    affine_activate_each(out + r * ldc, out + r * ldc, n, factors.get() + r * n, offsets.get() + r * n,
                                         act);
            }
        }
    }, 1 + (1 << 16) / (DOT_PART_ROWS * std::max<int64_t>(1, a.k) * n));
}

}  // namespace

void gemm_block(const LeftMatrix& a, int64_t panel_begin, int64_t panel_end, const float* b, int64_t ldb,
                int64_t column_begin, int64_t column_end, float* c, int64_t ldc) {
    if (panel_end > panel_begin && column_end > column_begin)
        simd_run<Panels>(&a, panel_begin, panel_end, b, ldb, column_begin, column_end, c, ldc);
}

int64_t gemm_thread_floats(int64_t k, int64_t n) {
    if (n < DOT_COLUMNS) return 2 * (k + DOT_PART_ROWS) * n;
    const int64_t stride = part_stride(k, n);
    return k * (stride + COLUMN_ALIGN) + PART_PANELS * PACK_ROWS * stride;
}

void gemm(const LeftMatrix& a, int64_t groups, int64_t n, const ColumnSource& columns, float* c, int64_t ldc,
          const float* scale, const float* shift, Activation act) {
    if (n < DOT_COLUMNS && !a.packed) return dot_gemm(a, groups, n, columns, c, ldc, scale, shift, act);
    const int64_t panels = packed_panels(a.m), chunks = (panels + PART_PANELS - 1) / PART_PANELS;
    const int64_t width = part_columns(a.k), slices = (n + width - 1) / width, stride = part_stride(a.k, n);
    // B one slice wide, no more groups than threads: every part of a group reads the same panel, which each thread
    // would copy for itself (a 7x7 map's 960 rows: 2 threads were 1.3x one). Copied once, by all threads, first;
    // gemm_thread_floats' per-thread panel covers it. A panel's rows are a vector longer than its columns.
    const int threads = num_threads();
    const bool shared = slices == 1 && threads > 1 && groups <= threads && groups * chunks > 1;
    const int64_t panel_ldb = stride + COLUMN_ALIGN;
    const auto shared_panels = scratch_floats(shared ? groups * a.k * panel_ldb : 0);
    if (shared) {
        parallel_for(groups * a.k, [&](int64_t begin, int64_t end) {
            for (int64_t item = begin; item < end;) {
                const int64_t group = item / a.k, row = item % a.k, rows = std::min(a.k - row, end - item);
                float* panel = shared_panels.get() + group * a.k * panel_ldb;
                fill_panel(columns, group, 0, n, row, row + rows, panel, panel_ldb);
                item += rows;
            }
        }, 1 + 8192 / n);
    }
    // parts numbered slice-major, then by group: consecutive parts, as one thread takes them, share their panel of B
    parallel_for(slices * groups * chunks, [&](int64_t begin, int64_t end) {
        // gemm_thread_floats counts these two
        const auto panel_of_b = scratch_floats(shared ? 0 : a.k * panel_ldb);
        const auto tile = scratch_floats(PART_PANELS * PACK_ROWS * stride);
        int64_t loaded = -1;
        for (int64_t part = begin; part < end; ++part) {
            const int64_t chunk = part % chunks, group = part / chunks % groups, slice = part / (chunks * groups);
            const int64_t first = slice * width, count = std::min(n - first, width);
            const int64_t padded = round_up(count, COLUMN_ALIGN);
            const float* b = shared ? shared_panels.get() + group * a.k * panel_ldb : panel_of_b.get();
            if (!shared && part / chunks != loaded) {
                loaded = part / chunks;
                fill_panel(columns, group, first, first + count, 0, a.k, panel_of_b.get(), panel_ldb);
            }
            // this chunk of panels of this group's A as a matrix of its own
            const int64_t panel0 = chunk * PART_PANELS, row0 = panel0 * PACK_ROWS;
            const int64_t rows = std::min(PART_PANELS * PACK_ROWS, a.m - row0);
            const int64_t offset = a.packed ? (group * panels + panel0) * PACK_ROWS * a.k : (group * a.m + row0) * a.lda;
            const LeftMatrix part_of_a{a.data + offset, rows, a.k, a.lda, a.packed};
            gemm_block(part_of_a, 0, packed_panels(rows), b, panel_ldb, 0, padded, tile.get(), padded);
            for (int64_t r = 0; r < rows; ++r) {
                const int64_t row = group * a.m + row0 + r;
                float* out = c + row * ldc + first;
                if (shift) {
                    affine_activate_copy(tile.get() + r * padded, out, count, scale ? scale[row] : 1.0f, shift[row],
                                         act);
                } else {
                    std::copy(tile.get() + r * padded, tile.get() + r * padded + count, out);
                }
            }
        }
    }, 1 + (1 << 16) / (PART_PANELS * PACK_ROWS * std::max<int64_t>(1, a.k) * width));
}

void gemm(const LeftMatrix& a, int64_t groups, const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc,
          const float* scale, const float* shift, Activation act) {
    gemm(a, groups, n, [&](int64_t group, int64_t first, int64_t last, int64_t row_begin, int64_t row_end,
                           float* panel, int64_t stride) {
        const float* rows = b + group * a.k * ldb + first;
        const int64_t lines = ((last - first) * int64_t(sizeof(float)) + 63) / 64;
        for (int64_t r = row_begin; r < row_end; ++r) {
            // a slice's rows are short runs far apart, each too short for the hardware prefetcher to catch before
            // the copy has read it: fetched PREFETCH_ROWS rows ahead instead
            if (r + PREFETCH_ROWS < row_end) {
                const char* ahead = reinterpret_cast<const char*>(rows + (r + PREFETCH_ROWS) * ldb);
                for (int64_t line = 0; line < lines; ++line) __builtin_prefetch(ahead + 64 * line);
            }
            std::copy(rows + r * ldb, rows + r * ldb + last - first, panel + r * stride);
        }
    }, c, ldc, scale, shift, act);
}

}  // namespace darknet_py
