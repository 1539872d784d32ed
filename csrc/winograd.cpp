#include "winograd.h"

#include <algorithm>
#include <cstdlib>
#include <new>
#include <vector>

#include "gemm.h"

#include "parallel.h"
#include "simd.h"
#include "window.h"

namespace darknet_py {

namespace {

// F(4x4, 3x3): interpolation points 0, +-1, +-2 and infinity; 6-point tiles give 4 outputs.
struct F4 {
    static constexpr int64_t M = 4, A = 6;
    // the kernel transform G (u = G w G^T), rows by interpolation point
    static constexpr double G[A][3] = {{1.0 / 4, 0, 0},
                                       {-1.0 / 6, -1.0 / 6, -1.0 / 6},
                                       {-1.0 / 6, 1.0 / 6, -1.0 / 6},
                                       {1.0 / 24, 1.0 / 12, 1.0 / 6},
                                       {1.0 / 24, -1.0 / 12, 1.0 / 6},
                                       {0, 0, 1}};
    // t = B^T d along one axis: d[i * ds] for i < 6 -> t[i * ts]
    static DARKNET_PY_INLINE void input(const float* d, int64_t ds, float* t, int64_t ts) {
        const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds], d4 = d[4 * ds], d5 = d[5 * ds];
        t[0] = 4 * d0 - 5 * d2 + d4;
        t[ts] = -4 * d1 - 4 * d2 + d3 + d4;
        t[2 * ts] = 4 * d1 - 4 * d2 - d3 + d4;
        t[3 * ts] = -2 * d1 - d2 + 2 * d3 + d4;
        t[4 * ts] = 2 * d1 - d2 - 2 * d3 + d4;
        t[5 * ts] = 4 * d1 - 5 * d3 + d5;
    }
    // s = A^T m along one axis: 6 points -> 4 outputs
    static DARKNET_PY_INLINE void output(const float* m, int64_t ms, float* s, int64_t ss) {
        const float m0 = m[0], m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms], m4 = m[4 * ms], m5 = m[5 * ms];
        s[0] = m0 + m1 + m2 + m3 + m4;
        s[ss] = m1 - m2 + 2 * (m3 - m4);
        s[2 * ss] = m1 + m2 + 4 * (m3 + m4);
        s[3 * ss] = m1 - m2 + 8 * (m3 - m4) + m5;
    }
};

// F(2x2, 3x3): points 0, +-1 and infinity; 4-point tiles give 2 outputs. For small maps: 16 GEMMs over more
// tiles instead of 36 over very few (13x13: 49 tiles instead of 16).
struct F2 {
    static constexpr int64_t M = 2, A = 4;
    static constexpr double G[A][3] = {{1, 0, 0}, {0.5, 0.5, 0.5}, {0.5, -0.5, 0.5}, {0, 0, 1}};
    static DARKNET_PY_INLINE void input(const float* d, int64_t ds, float* t, int64_t ts) {
        const float d0 = d[0], d1 = d[ds], d2 = d[2 * ds], d3 = d[3 * ds];
        t[0] = d0 - d2;
        t[ts] = d1 + d2;
        t[2 * ts] = d2 - d1;
        t[3 * ts] = d1 - d3;
    }
    static DARKNET_PY_INLINE void output(const float* m, int64_t ms, float* s, int64_t ss) {
        const float m0 = m[0], m1 = m[ms], m2 = m[2 * ms], m3 = m[3 * ms];
        s[0] = m0 + m1 + m2;
        s[ss] = m1 - m2 - m3;
    }
};

// One plane: padded (rows M*tiles_h + 2, columns M*tiles_w + 2, zero-padded image) -> its A*A transformed
// values per tile at v[k * plane_stride + tile]. Loops run across the tiles of a row, so they vectorize.
template <class T>
DARKNET_PY_INLINE void input_plane(const float* __restrict padded, int64_t tiles_h, int64_t tiles_w,
                                   float* __restrict v, int64_t plane_stride, float* __restrict rows) {
    constexpr int64_t M = T::M, A = T::A;
    const int64_t pw = M * tiles_w + 2, col = A * tiles_w;
    for (int64_t ty = 0; ty < tiles_h; ++ty) {
        // rows[i][k][tx]: the row transform of input row M*ty + i
        for (int64_t i = 0; i < A; ++i) {
            const float* r = padded + (M * ty + i) * pw;
            float* out = rows + i * col;
#pragma omp simd
            for (int64_t tx = 0; tx < tiles_w; ++tx) T::input(r + M * tx, 1, out + tx, tiles_w);
        }
        // then down the columns: value (a, k) of every tile of this tile row
        for (int64_t k = 0; k < A; ++k) {
            const float* c = rows + k * tiles_w;
            float* out = v + k * plane_stride + ty * tiles_w;
#pragma omp simd
            for (int64_t tx = 0; tx < tiles_w; ++tx) T::input(c + tx, col, out + tx, A * plane_stride);
        }
    }
}

// One row of tiles of one filter: m[(a*A + b) * stride + tx] -> y[i][M*tx + j], M rows of M*tiles_w values.
template <class T>
DARKNET_PY_INLINE void output_tile_row(const float* __restrict m, int64_t stride, int64_t tiles_w,
                                       float* __restrict s, float* __restrict y) {
    constexpr int64_t M = T::M, A = T::A;
    const int64_t width = M * tiles_w;
    // s[a][j][tx] = A^T along b; then y[i][M*tx + j] = A^T along a
    for (int64_t a = 0; a < A; ++a) {
        const float* r = m + a * A * stride;
        float* out = s + a * width;
#pragma omp simd
        for (int64_t tx = 0; tx < tiles_w; ++tx) T::output(r + tx, stride, out + tx, tiles_w);
    }
    for (int64_t j = 0; j < M; ++j) {
        const float* c = s + j * tiles_w;
#pragma omp simd
        for (int64_t tx = 0; tx < tiles_w; ++tx) T::output(c + tx, width, y + M * tx + j, width);
    }
}

// u[a * A + b] = (G w G^T)[a][b] for one 3x3 kernel w, in double: rounded to float once, at the end.
template <class T>
void kernel_transform(const float* w, double* u) {
    constexpr int64_t A = T::A;
    double gw[A][3];
    for (int64_t a = 0; a < A; ++a)
        for (int64_t l = 0; l < 3; ++l) gw[a][l] = T::G[a][0] * w[l] + T::G[a][1] * w[3 + l] + T::G[a][2] * w[6 + l];
    for (int64_t a = 0; a < A; ++a)
        for (int64_t b = 0; b < A; ++b)
            u[a * A + b] = gw[a][0] * T::G[b][0] + gw[a][1] * T::G[b][1] + gw[a][2] * T::G[b][2];
}

DARKNET_PY_SIMD_CLONES
void input_plane_any(int64_t tile, const float* padded, int64_t tiles_h, int64_t tiles_w, float* v,
                     int64_t plane_stride, float* rows) {
    if (tile == 4) {
        input_plane<F4>(padded, tiles_h, tiles_w, v, plane_stride, rows);
    } else {
        input_plane<F2>(padded, tiles_h, tiles_w, v, plane_stride, rows);
    }
}

DARKNET_PY_SIMD_CLONES
void output_tile_row_any(int64_t tile, const float* m, int64_t stride, int64_t tiles_w, float* s, float* y) {
    if (tile == 4) {
        output_tile_row<F4>(m, stride, tiles_w, s, y);
    } else {
        output_tile_row<F2>(m, stride, tiles_w, s, y);
    }
}

// The transformed input and the products, kept per thread from one convolution to the next as darknet keeps its
// workspace: allocating them at every call costs more than the GEMMs on large maps (fresh pages: page faults and
// zeroing, ~4 ms of a 2 ms GEMM on 64 channels at 104x104). Grows to the largest layer; release_workspace() frees it.
struct Workspace {
    float* data = nullptr;
    int64_t floats = 0;
    ~Workspace() { std::free(data); }
    float* get(int64_t need) {
        if (need > floats) {
            std::free(data);
            data = static_cast<float*>(std::aligned_alloc(64, (need * sizeof(float) + 63) / 64 * 64));
            floats = data ? need : 0;
            if (!data) throw std::bad_alloc();
        }
        return data;
    }
};

thread_local Workspace workspace;

// v[k * point_stride + c * row_stride + tile]: the transformed input of every channel and tile.
void input_transform(const float* x, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t pad,
                     int64_t tile, int64_t tiles_h, int64_t tiles_w, float* v, int64_t row_stride) {
    const int64_t side = tile + 2, points = side * side;     // an input tile is side x side
    const int64_t ph = tile * tiles_h + 2, pw = tile * tiles_w + 2;
    const int64_t plane_tiles = tiles_h * tiles_w, tiles = batch * plane_tiles;
    parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
        std::vector<float> padded(ph * pw), rows(points * tiles_w);
        for (int64_t p = begin; p < end; ++p) {
            const int64_t b = p / channels, c = p % channels;
            pad_plane(x + p * h * w, h, w, pad, padded.data(), ph, pw);
            float* channel = v + c * row_stride;
            input_plane_any(tile, padded.data(), tiles_h, tiles_w, channel + b * plane_tiles, channels * row_stride,
                            rows.data());
            if (b == batch - 1)   // the columns past the last tile join the GEMMs: zeros, not stale memory
                for (int64_t k = 0; k < points; ++k)
                    std::fill(channel + k * channels * row_stride + tiles, channel + k * channels * row_stride +
                              row_stride, 0.0f);
        }
    }, 1 + 4096 / plane_tiles);
}

// y from m[k * point_stride + f * row_stride + tile] (see winograd_convolution).
void output_transform(const float* m, int64_t row_stride, int64_t point_stride, int64_t batch, int64_t filters,
                      int64_t out_h, int64_t out_w, int64_t tile, int64_t tiles_h, int64_t tiles_w,
                      const float* scale, const float* shift, Activation act, float* y) {
    const int64_t side = tile + 2, width = tile * tiles_w, plane_tiles = tiles_h * tiles_w;
    parallel_for(batch * filters, [&](int64_t begin, int64_t end) {
        std::vector<float> s(side * width), rows(tile * width);
        for (int64_t p = begin; p < end; ++p) {
            const int64_t b = p / filters, f = p % filters;
            float* out = y + p * out_h * out_w;
            for (int64_t ty = 0; ty < tiles_h; ++ty) {
                output_tile_row_any(tile, m + f * row_stride + b * plane_tiles + ty * tiles_w, point_stride, tiles_w,
                                    s.data(), rows.data());
                const int64_t n = std::min(tile, out_h - tile * ty);
                if (shift) affine_activate_plane(rows.data(), n * width, scale ? scale[f] : 1.0f, shift[f], act);
                for (int64_t i = 0; i < n; ++i)
                    std::copy(rows.data() + i * width, rows.data() + i * width + out_w, out + (tile * ty + i) * out_w);
            }
        }
    }, 1 + 4096 / plane_tiles);
}

}  // namespace

void release_workspace() {
    std::free(workspace.data);
    workspace.data = nullptr;
    workspace.floats = 0;
}

void winograd_weights(const float* w, int64_t filters, int64_t channels, int64_t tile, float* packed) {
    const int64_t points = (tile + 2) * (tile + 2), panels = packed_panels(filters);
    const int64_t point_stride = panels * channels * PACK_ROWS;
    // one (panel, channel) per step: PACK_ROWS kernels -> PACK_ROWS consecutive floats in each of the P matrices
    parallel_for(panels * channels, [&](int64_t begin, int64_t end) {
        double u[PACK_ROWS][36];
        for (int64_t i = begin; i < end; ++i) {
            const int64_t panel = i / channels, c = i % channels;
            for (int64_t r = 0; r < PACK_ROWS; ++r) {
                const int64_t f = panel * PACK_ROWS + r;
                if (f >= filters) {
                    std::fill(u[r], u[r] + points, 0.0);    // the panel's rows past the last filter
                } else if (tile == 4) {
                    kernel_transform<F4>(w + (f * channels + c) * 9, u[r]);
                } else {
                    kernel_transform<F2>(w + (f * channels + c) * 9, u[r]);
                }
            }
            for (int64_t k = 0; k < points; ++k)
                for (int64_t r = 0; r < PACK_ROWS; ++r) packed[k * point_stride + i * PACK_ROWS + r] = float(u[r][k]);
        }
    }, 64);
}

int64_t winograd_row_stride(int64_t tiles) { return (tiles + WINOGRAD_COLUMN_ALIGN - 1) / WINOGRAD_COLUMN_ALIGN *
                                                    WINOGRAD_COLUMN_ALIGN; }

void winograd_convolution(const float* x, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t pad,
                          int64_t tile, const float* packed_weights, int64_t filters, int64_t out_h, int64_t out_w,
                          const float* scale, const float* shift, Activation act, float* y) {
    if (batch == 0) return;
    const int64_t points = (tile + 2) * (tile + 2);
    const int64_t tiles_h = (out_h + tile - 1) / tile, tiles_w = (out_w + tile - 1) / tile;
    const int64_t tiles = batch * tiles_h * tiles_w, row_stride = winograd_row_stride(tiles);
    const int64_t panels = packed_panels(filters), rows = panels * PACK_ROWS;
    float* v = workspace.get(points * (channels + rows) * row_stride);
    float* m = v + points * channels * row_stride;
    input_transform(x, batch, channels, h, w, pad, tile, tiles_h, tiles_w, v, row_stride);
    // The P GEMMs m[k] = u[k] v[k], split by (point, panel of filters): each part computed whole by one thread, so
    // results do not depend on the thread count.
    parallel_for(points * panels, [&](int64_t begin, int64_t end) {
        while (begin < end) {
            const int64_t k = begin / panels, first = begin % panels, last = std::min(panels, first + end - begin);
            const LeftMatrix u{packed_weights + k * rows * channels, rows, channels, 0, true};
            gemm_block(u, first, last, v + k * channels * row_stride, row_stride, 0, row_stride,
                       m + k * rows * row_stride, row_stride);
            begin += last - first;
        }
    }, 1 + (1 << 16) / (PACK_ROWS * channels * row_stride));
    output_transform(m, row_stride, rows * row_stride, batch, filters, out_h, out_w, tile, tiles_h, tiles_w,
                     scale, shift, act, y);
}

}  // namespace darknet_py
