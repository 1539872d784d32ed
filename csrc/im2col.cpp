#include "im2col.h"

#include <algorithm>
#include <vector>

#include "gemm.h"
#include "simd.h"
#include "window.h"

namespace darknet_py {

namespace {

// The part of a panel's columns that lies in one output row: output row y, output columns [x0, x1), written to
// the panel row from index `at` on.
struct Segment {
    int64_t y, x0, x1, at;
};

// The output rows that columns [first, last) cross: the same for every im2col row, worked out once per panel.
std::vector<Segment> segments_of(const ConvGeometry& g, int64_t first, int64_t last) {
    std::vector<Segment> segments;
    const int64_t ow = g.out_w();
    for (int64_t p = first, y = first / ow, x0 = first % ow; p < last; ++y, x0 = 0) {
        const int64_t x1 = std::min(ow, x0 + last - p);
        segments.push_back({y, x0, x1, p - first});
        p += x1 - x0;
    }
    return segments;
}

// The columns of im2col row (c, ky, kx) that `segments` cover, written to out; zero where the window reads
// outside the image.
DARKNET_PY_SIMD_CLONES void fill_row(const float* image, const ConvGeometry& g, int64_t c, int64_t ky, int64_t kx,
                                     const Segment* segments, int64_t count, float* out) {
    // the horizontal geometry, for columns_inside (the vertical fields are unused)
    const WindowGeometry across{g.height, g.width, g.out_h(), g.out_w(), g.kernel_w, g.stride_h, g.stride_w, g.pad_w,
                                g.dilation_w};
    int64_t inside_first, inside_last;   // output columns that read inside the row; the others are padding
    across.columns_inside(kx * g.dilation_w, &inside_first, &inside_last);
    const float* plane = image + c * g.height * g.width;
    for (const Segment* s = segments; s < segments + count; ++s) {
        const int64_t x0 = s->x0, x1 = s->x1;
        float* dst = out + s->at - x0;      // dst[x] is output column x of output row y
        const int64_t iy = s->y * g.stride_h - g.pad_h + ky * g.dilation_h;
        if (iy < 0 || iy >= g.height) {
            std::fill(dst + x0, dst + x1, 0.f);
            continue;
        }
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
            const std::vector<Segment> segments = segments_of(g, first, last);
            // row = (c * kernel_h + ky) * kernel_w + kx, counted along instead of divided out per row
            int64_t kx = row_begin % g.kernel_w, ky = row_begin / g.kernel_w % g.kernel_h;
            int64_t c = row_begin / (g.kernel_w * g.kernel_h);
            for (int64_t row = row_begin; row < row_end; ++row) {
                fill_row(image + group * group_plane, g, c, ky, kx, segments.data(), int64_t(segments.size()),
                         panel + row * stride);
                if (++kx == g.kernel_w) {
                    kx = 0;
                    if (++ky == g.kernel_h) ky = 0, ++c;
                }
            }
        }, y + i * filters * cols, cols, scale, shift, act);
    }
}

}  // namespace darknet_py
