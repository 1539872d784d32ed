#include "winograd.h"

#include <algorithm>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace darknet_py {

namespace {

// The 6-point input transform B^T d along one axis (points 0, +-1, +-2 and infinity).
__attribute__((always_inline)) inline void input_1d(float d0, float d1, float d2, float d3, float d4, float d5, float* t, int64_t stride) {
    t[0 * stride] = 4 * d0 - 5 * d2 + d4;
    t[1 * stride] = -4 * d1 - 4 * d2 + d3 + d4;
    t[2 * stride] = 4 * d1 - 4 * d2 - d3 + d4;
    t[3 * stride] = -2 * d1 - d2 + 2 * d3 + d4;
    t[4 * stride] = 2 * d1 - d2 - 2 * d3 + d4;
    t[5 * stride] = 4 * d1 - 5 * d3 + d5;
}

// The output transform A^T m along one axis: 6 points to 4.
__attribute__((always_inline)) inline void output_1d(float m0, float m1, float m2, float m3, float m4, float m5, float* s, int64_t stride) {
    s[0 * stride] = m0 + m1 + m2 + m3 + m4;
    s[1 * stride] = m1 - m2 + 2 * (m3 - m4);
    s[2 * stride] = m1 + m2 + 4 * (m3 + m4);
    s[3 * stride] = m1 - m2 + 8 * (m3 - m4) + m5;
}

// One plane: padded (rows 4*tiles_h + 2, columns 4*tiles_w + 2, zero-padded image) -> its 36 transformed
// values per tile at v[k * plane_stride + tile]. Loops run across the tiles of a row, so they vectorize.
DARKNET_PY_SIMD_CLONES
void input_plane(const float* __restrict padded, int64_t tiles_h, int64_t tiles_w, float* __restrict v,
                 int64_t plane_stride, float* __restrict rows) {
    const int64_t pw = 4 * tiles_w + 2;
    for (int64_t ty = 0; ty < tiles_h; ++ty) {
        // rows[i][k][tx]: the row transform of input row 4*ty + i
        for (int64_t i = 0; i < 6; ++i) {
            const float* r = padded + (4 * ty + i) * pw;
            float* out = rows + i * 6 * tiles_w;
#pragma omp simd
            for (int64_t tx = 0; tx < tiles_w; ++tx) {
                const float* d = r + 4 * tx;
                input_1d(d[0], d[1], d[2], d[3], d[4], d[5], out + tx, tiles_w);
            }
        }
        // then down the columns: value (a, k) of every tile of this tile row
        for (int64_t k = 0; k < 6; ++k) {
            const float* c = rows + k * tiles_w;
            const int64_t col = 6 * tiles_w;
            float* out = v + k * plane_stride + ty * tiles_w;
#pragma omp simd
            for (int64_t tx = 0; tx < tiles_w; ++tx)
                input_1d(c[tx], c[col + tx], c[2 * col + tx], c[3 * col + tx], c[4 * col + tx], c[5 * col + tx],
                         out + tx, 6 * plane_stride);
        }
    }
}

DARKNET_PY_SIMD_CLONES
void output_tile_row(const float* __restrict m, int64_t stride, int64_t tiles_w, float* __restrict s,
                     float* __restrict y4) {
    // s[a][j][tx] = A^T along b of m[a][b][tx]; then y4[i][4*tx + j] = A^T along a
    for (int64_t a = 0; a < 6; ++a) {
        const float* r = m + a * 6 * stride;
        float* out = s + a * 4 * tiles_w;
        for (int64_t tx = 0; tx < tiles_w; ++tx)
            output_1d(r[tx], r[stride + tx], r[2 * stride + tx], r[3 * stride + tx], r[4 * stride + tx],
                      r[5 * stride + tx], out + tx, tiles_w);
    }
    const int64_t width = 4 * tiles_w, col = 4 * tiles_w;
    for (int64_t j = 0; j < 4; ++j) {
        const float* c = s + j * tiles_w;
#pragma omp simd
        for (int64_t tx = 0; tx < tiles_w; ++tx)
            output_1d(c[tx], c[col + tx], c[2 * col + tx], c[3 * col + tx], c[4 * col + tx], c[5 * col + tx],
                      y4 + 4 * tx + j, width);
    }
}

}  // namespace

void winograd_input_transform(const float* x, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t pad,
                              int64_t tiles_h, int64_t tiles_w, float* v) {
    const int64_t ph = 4 * tiles_h + 2, pw = 4 * tiles_w + 2;
    const int64_t tiles = batch * tiles_h * tiles_w, plane_tiles = tiles_h * tiles_w;
    // the image rows/columns that land in the padded plane
    const int64_t rows_in = std::max<int64_t>(0, std::min(h, ph - pad));
    const int64_t cols_in = std::max<int64_t>(0, std::min(w, pw - pad));
    parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
        std::vector<float> padded(ph * pw), rows(36 * tiles_w);
        for (int64_t p = begin; p < end; ++p) {
            const int64_t b = p / channels, c = p % channels;
            std::fill(padded.begin(), padded.end(), 0.0f);
            const float* plane = x + p * h * w;
            for (int64_t iy = 0; iy < rows_in; ++iy)
                std::copy(plane + iy * w, plane + iy * w + cols_in, padded.data() + (iy + pad) * pw + pad);
            input_plane(padded.data(), tiles_h, tiles_w, v + c * tiles + b * plane_tiles, channels * tiles,
                        rows.data());
        }
    }, 1 + 4096 / plane_tiles);
}

void winograd_output_transform(const float* m, int64_t batch, int64_t filters, int64_t out_h, int64_t out_w,
                               int64_t tiles_h, int64_t tiles_w, const float* scale, const float* shift,
                               Activation act, float* y) {
    const int64_t tiles = batch * tiles_h * tiles_w, plane_tiles = tiles_h * tiles_w;
    parallel_for(batch * filters, [&](int64_t begin, int64_t end) {
        std::vector<float> s(24 * tiles_w), y4(16 * tiles_w);
        for (int64_t p = begin; p < end; ++p) {
            const int64_t b = p / filters, f = p % filters;
            float* out = y + p * out_h * out_w;
            for (int64_t ty = 0; ty < tiles_h; ++ty) {
                output_tile_row(m + f * tiles + b * plane_tiles + ty * tiles_w, filters * tiles, tiles_w, s.data(),
                                y4.data());
                const int64_t rows = std::min<int64_t>(4, out_h - 4 * ty);
                if (shift) affine_activate_plane(y4.data(), rows * 4 * tiles_w, scale ? scale[f] : 1.0f, shift[f], act);
                for (int64_t i = 0; i < rows; ++i)
                    std::copy(y4.data() + i * 4 * tiles_w, y4.data() + i * 4 * tiles_w + out_w,
                              out + (4 * ty + i) * out_w);
            }
        }
    }, 1 + 4096 / plane_tiles);
}

}  // namespace darknet_py
