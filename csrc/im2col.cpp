#include "im2col.h"

#include <algorithm>

#include "gemm.h"
#include "parallel.h"
#include "window.h"

namespace darknet_py {

namespace {

// Columns [first, last) of im2col row `row` (channel, ky, kx): output positions in row-major order over
// out_h x out_w, written to out[0, last - first); zero where the window reads outside the image.
void fill_row(const float* image, const ConvGeometry& g, int64_t row, int64_t first, int64_t last, float* out) {
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
            } else {
                for (int64_t x = a; x < b; ++x) dst[x] = src[x * g.stride_w];
            }
            std::fill(dst + b, dst + x1, 0.f);
        }
        p += x1 - x0;
    }
}

}  // namespace

void im2col(const float* image, const ConvGeometry& g, float* columns) {
    const int64_t cols = g.cols();
    // every row is independent: parallel over rows
    parallel_for(g.rows(), [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) fill_row(image, g, row, 0, cols, columns + row * cols);
    }, 1 + 16384 / std::max<int64_t>(1, cols));
}

void im2col_gemm(const float* images, int64_t batch, const ConvGeometry& g, const float* weights, int64_t filters,
                 const float* scale, const float* shift, Activation act, float* y) {
    const int64_t rows = g.rows(), cols = g.cols();
    const LeftMatrix a{weights, filters, rows, rows, false};
    for (int64_t i = 0; i < batch; ++i) {
        const float* image = images + i * g.channels * g.height * g.width;
        gemm(a, cols, [&](int64_t first, int64_t last, float* buffer, int64_t* ldb) {
            for (int64_t row = 0; row < rows; ++row) fill_row(image, g, row, first, last, buffer + row * (last - first));
            *ldb = last - first;
            return buffer;
        }, true, y + i * filters * cols, cols, scale, shift, act);
    }
}

void col2im(const float* columns, const ConvGeometry& g, float* image) {
    const int64_t oh = g.out_h(), ow = g.out_w(), khw = g.kernel_h * g.kernel_w;
    // rows of one channel write to the same plane: parallel over channels, serial inside
    parallel_for(g.channels, [&](int64_t begin, int64_t end) {
        for (int64_t c = begin; c < end; ++c) {
            float* plane = image + c * g.height * g.width;
            for (int64_t k = 0; k < khw; ++k) {
                const int64_t kx = k % g.kernel_w, ky = k / g.kernel_w;
                const float* in = columns + (c * khw + k) * oh * ow;
                for (int64_t y = 0; y < oh; ++y) {
                    const int64_t iy = y * g.stride_h - g.pad_h + ky * g.dilation_h;
                    if (iy < 0 || iy >= g.height) continue;
                    float* out_row = plane + iy * g.width;
                    for (int64_t x = 0; x < ow; ++x) {
                        const int64_t ix = x * g.stride_w - g.pad_w + kx * g.dilation_w;
                        if (ix >= 0 && ix < g.width) out_row[ix] += in[y * ow + x];
                    }
                }
            }
        }
    }, 1 + 16384 / std::max<int64_t>(1, khw * oh * ow));
}

}  // namespace darknet_py
