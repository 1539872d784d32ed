#include "gemm.h"

#include <algorithm>
#include <cstdlib>
#include <cstring>
#include <string>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace darknet_py {

namespace {

// GCC/Clang vector types: one source for every instruction set, each compiled with the widest vectors its
// target has (below). Loaded and stored with memcpy: unaligned moves, no aliasing question.
typedef float Vec16 __attribute__((vector_size(64)));
typedef float Vec8 __attribute__((vector_size(32)));
typedef float Vec4 __attribute__((vector_size(16)));

// C[rows x NV*W] (rows <= PACK_ROWS) = the panel of A at `a` times B[k x NV*W]: the PACK_ROWS*NV accumulators stay
// in registers; each step loads NV vectors of B and broadcasts PACK_ROWS values of A, read from a packed panel
// (PACKED: consecutive) or from PACK_ROWS rows of a row-major A (stride lda; rows past `rows` repeat the last row,
// their results are not stored).
template <class V, int NV, bool PACKED>
DARKNET_PY_INLINE void block(const float* __restrict a, int64_t lda, int64_t k, const float* __restrict b,
                             int64_t ldb, float* __restrict c, int64_t ldc, int64_t rows) {
    constexpr int W = sizeof(V) / sizeof(float);
    const float* row_of[PACK_ROWS];
#pragma GCC unroll 16
    for (int r = 0; r < PACK_ROWS; ++r) row_of[r] = a + (PACKED ? r : std::min<int64_t>(r, rows - 1) * lda);
    V acc[PACK_ROWS][NV];
#pragma GCC unroll 16
    for (int r = 0; r < PACK_ROWS; ++r)
#pragma GCC unroll 4
        for (int j = 0; j < NV; ++j) acc[r][j] = V{};
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

// B is read in slices of columns whose part of B (k x slice) stays in L2 while the panels pass over it.
constexpr int64_t B_SLICE_FLOATS = 1 << 16;   // 256 KiB

// gemm_block: blocks of NV vectors, then single vectors, then the last columns (fewer than a vector) through a
// zero-padded copy of those columns of B.
template <class V, int NV, bool PACKED>
DARKNET_PY_INLINE void panels(const LeftMatrix& a, int64_t panel_begin, int64_t panel_end, const float* b,
                              int64_t ldb, int64_t column_begin, int64_t column_end, float* c, int64_t ldc) {
    constexpr int64_t W = sizeof(V) / sizeof(float), WIDE = NV * W;
    const int64_t k = a.k, n = column_end - column_begin;
    const int64_t wide_end = column_begin + n / WIDE * WIDE, vector_end = column_begin + n / W * W;
    const int64_t rest = column_end - vector_end;
    const int64_t slice = std::max<int64_t>(1, B_SLICE_FLOATS / (std::max<int64_t>(1, k) * WIDE)) * WIDE;
    auto start_of = [&](int64_t panel) { return a.data + panel * PACK_ROWS * (PACKED ? k : a.lda); };
    auto rows = [&](int64_t panel) { return std::min(PACK_ROWS, a.m - panel * PACK_ROWS); };
    for (int64_t start = column_begin; start < wide_end; start += slice) {
        const int64_t stop = std::min(wide_end, start + slice);
        for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
            float* out = c + panel * PACK_ROWS * ldc;
            for (int64_t j = start; j < stop; j += WIDE)
                block<V, NV, PACKED>(start_of(panel), a.lda, k, b + j, ldb, out + j, ldc, rows(panel));
        }
    }
    std::vector<float> tail_b, tail_c;
    if (rest) {
        tail_b.assign(k * W, 0.0f);
        tail_c.resize(PACK_ROWS * W);
        for (int64_t p = 0; p < k; ++p) std::memcpy(&tail_b[p * W], b + p * ldb + vector_end, rest * sizeof(float));
    }
    for (int64_t panel = panel_begin; panel < panel_end; ++panel) {
        float* out = c + panel * PACK_ROWS * ldc;
        for (int64_t j = wide_end; j < vector_end; j += W)
            block<V, 1, PACKED>(start_of(panel), a.lda, k, b + j, ldb, out + j, ldc, rows(panel));
        if (rest) {
            block<V, 1, PACKED>(start_of(panel), a.lda, k, tail_b.data(), W, tail_c.data(), W, rows(panel));
            for (int64_t r = 0; r < rows(panel); ++r)
                std::memcpy(out + r * ldc + vector_end, &tail_c[r * W], rest * sizeof(float));
        }
    }
}

template <class V, int NV>
DARKNET_PY_INLINE void panels_any(const LeftMatrix& a, int64_t pb, int64_t pe, const float* b, int64_t ldb,
                                  int64_t cb, int64_t ce, float* c, int64_t ldc) {
    if (a.packed) {
        panels<V, NV, true>(a, pb, pe, b, ldb, cb, ce, c, ldc);
    } else {
        panels<V, NV, false>(a, pb, pe, b, ldb, cb, ce, c, ldc);
    }
}

using PanelsFn = void (*)(const LeftMatrix&, int64_t, int64_t, const float*, int64_t, int64_t, int64_t, float*,
                          int64_t);

// Per instruction set, the vector width and the accumulators that fit its registers (32 zmm: 8 x 2 vectors of
// 16 floats; 16 ymm or xmm: 8 x 1).
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
__attribute__((target("avx512f,avx2,fma"))) void panels_avx512(const LeftMatrix& a, int64_t pb, int64_t pe,
                                                               const float* b, int64_t ldb, int64_t cb, int64_t ce,
                                                               float* c, int64_t ldc) {
    panels_any<Vec16, 2>(a, pb, pe, b, ldb, cb, ce, c, ldc);
}

__attribute__((target("avx2,fma"))) void panels_avx2(const LeftMatrix& a, int64_t pb, int64_t pe, const float* b,
                                                     int64_t ldb, int64_t cb, int64_t ce, float* c, int64_t ldc) {
    panels_any<Vec8, 1>(a, pb, pe, b, ldb, cb, ce, c, ldc);
}
#endif

void panels_baseline(const LeftMatrix& a, int64_t pb, int64_t pe, const float* b, int64_t ldb, int64_t cb,
                     int64_t ce, float* c, int64_t ldc) {
    panels_any<Vec4, 1>(a, pb, pe, b, ldb, cb, ce, c, ldc);
}

struct Isa {
    PanelsFn panels;
    const char* name;
};

// The widest instruction set the CPU has, at most the one named by DARKNET_PY_GEMM_ISA (avx2 or baseline: the
// tests check every variant on one machine this way); other values are ignored. gemm_isa() tells the choice.
Isa pick_isa() {
    const char* wanted = std::getenv("DARKNET_PY_GEMM_ISA");
    const std::string cap = wanted ? wanted : "";
    const int limit = cap == "baseline" ? 0 : cap == "avx2" ? 1 : 2;
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
    __builtin_cpu_init();
    if (limit >= 2 && __builtin_cpu_supports("avx512f")) return {panels_avx512, "avx512f"};
    if (limit >= 1 && __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma")) return {panels_avx2, "avx2"};
#endif
    return {panels_baseline, "baseline"};
}

const Isa& isa() {
    static const Isa chosen = pick_isa();
    return chosen;
}

// Columns per part of gemm(): up to 256, fewer where k is large, so that the slice of B stays within L2.
int64_t part_columns(int64_t k) {
    return std::clamp<int64_t>(B_SLICE_FLOATS / std::max<int64_t>(1, k) / 32 * 32, 32, 256);
}

}  // namespace

void gemm_block(const LeftMatrix& a, int64_t panel_begin, int64_t panel_end, const float* b, int64_t ldb,
                int64_t column_begin, int64_t column_end, float* c, int64_t ldc) {
    if (panel_end > panel_begin && column_end > column_begin)
        isa().panels(a, panel_begin, panel_end, b, ldb, column_begin, column_end, c, ldc);
}

void gemm(const LeftMatrix& a, int64_t n, const ColumnSource& columns, bool buffered, float* c, int64_t ldc,
          const float* scale, const float* shift, Activation act) {
    const int64_t panels = packed_panels(a.m), width = part_columns(a.k), slices = (n + width - 1) / width;
    // parts numbered slice-major: consecutive parts, as one thread takes them, share their slice of B
    parallel_for(panels * slices, [&](int64_t begin, int64_t end) {
        std::vector<float> buffer(buffered ? a.k * std::min(width, n) : 0);
        const float* b = nullptr;
        int64_t ldb = 0, slice = -1;
        for (int64_t part = begin; part < end; ++part) {
            const int64_t panel = part % panels, first = part / panels * width, last = std::min(n, first + width);
            if (part / panels != slice) {
                slice = part / panels;
                b = columns(first, last, buffer.data(), &ldb);
            }
            gemm_block(a, panel, panel + 1, b, ldb, 0, last - first, c + first, ldc);
            if (!shift) continue;
            for (int64_t row = panel * PACK_ROWS; row < std::min(a.m, (panel + 1) * PACK_ROWS); ++row)
                affine_activate_plane(c + row * ldc + first, last - first, scale ? scale[row] : 1.0f, shift[row], act);
        }
    }, 1 + (1 << 16) / (PACK_ROWS * std::max<int64_t>(1, a.k) * width));
}

void gemm(const LeftMatrix& a, const float* b, int64_t ldb, int64_t n, float* c, int64_t ldc, const float* scale,
          const float* shift, Activation act) {
    gemm(a, n, [&](int64_t first, int64_t, float*, int64_t* stride) {
        *stride = ldb;
        return b + first;
    }, false, c, ldc, scale, shift, act);
}

const char* gemm_isa() { return isa().name; }

}  // namespace darknet_py
