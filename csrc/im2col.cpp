#include "im2col.h"

#include <algorithm>

#include "gemm.h"
#include "simd.h"
#include "window.h"

namespace darknet_py {

namespace {

// Columns [first, last) of im2col row `row` (channel, ky, kx): output positions in row-major order over
// out_h x out_w, written to out[0, last - first); zero where the window reads outside the image.
DARKNET_PY_SIMD_CLONES void fill_row(const float* image, const ConvGeometry& g, int64_t row, int64_t first, int64_t last, float* out) {
    const int64_t kx = row % g.kernel_w, ky = (row / g.kernel_w) % g.kernel_h, c = row / (g.kernel_w * g.kernel_h);
    const int64_t ow = g.out_w();
    // the horizontal geometry, for columns_inside (the vertical fields are unused)
    const WindowGeometry across{g.height, g.width, g.out_h(), ow, g.kernel_w, g.stride_h, g.stride_w, g.pad_w,
                                g.dilation_w};
    int64_t inside_first, inside_last;   // output columns that read inside the row; the others are padding
    across.columns_inside(kx * g.dilation_w, &inside_first, &inside_last);
    const float* plane = image + c * g.height * g.width;
    for (int64_t p = first; p < last;) {
        const int64_t y = p / ow, x0 = p % ow, x1 = std::min(ow, x0 + last - p);
        float* dst = out + (p - first) - x0;      // dst[x] is output column x of output row y
        const int64_t iy = y * g.stride_h - g.pad_h + ky * g.dilation_h;
        if (iy < 0 || iy >= g.height) {
            std::fill(dst + x0, dst + x1, 0.f);
        } else {
            const int64_t a = std::clamp(inside_first, x0, x1), b = std::clamp(inside_last, a, x1);
            const float* src = plane + iy * g.width + kx * g.dilation_w - g.pad_w;
            std::fill(dst + x0, dst + a, 0.f);
            if (g.stride_w == 1) {
                std::copy(src + a, src + b, dst + a);
            } else if (g.stride_w == 2) {   // a constant stride: the compiler deinterleaves with vector permutes
                for (int64_t x = a; x < b; ++x) dst[x] = src[2 * x];
            } else {
                for (int64_t x = a; x < b; ++x) dst[x] = src[x * g.stride_w];
            }
            std::fill(dst + b, dst + x1, 0.f);
        }
        p += x1 - x0;
    }
}

}  // namespace

void im2col_gemm(const float* images, int64_t batch, int64_t groups, const ConvGeometry& g, const float* weights,
                 int64_t filters, const float* scale, const float* shift, Activation act, float* y) {
    const int64_t rows = g.rows(), cols = g.cols(), group_plane = g.channels * g.height * g.width;
    const LeftMatrix a{weights, filters / groups, rows, rows, false};
    for (int64_t i = 0; i < batch; ++i) {
        const float* image = images + i * groups * group_plane;
        gemm(a, groups, cols, [&](int64_t group, int64_t first, int64_t last, int64_t row_begin, int64_t row_end,
                                  float* panel, int64_t stride) {
            for (int64_t row = row_begin; row < row_end; ++row)
                fill_row(image + group * group_plane, g, row, first, last, panel + row * stride);
        }, y + i * filters * cols, cols, scale, shift, act);
    }
}

}  // namespace darknet_py
