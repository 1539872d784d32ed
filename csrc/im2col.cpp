#include "im2col.h"

#include <algorithm>

#include "parallel.h"
#include "window.h"

namespace darknet_py {

void im2col(const float* image, const ConvGeometry& g, float* columns) {
    const int64_t oh = g.out_h(), ow = g.out_w(), rows = g.rows();
    // the horizontal geometry, for columns_inside (the vertical fields are unused)
    const WindowGeometry across{g.height, g.width, oh, ow, g.kernel_w, g.stride_h, g.stride_w, g.pad_w, g.dilation_w};
    // every row is independent: parallel over rows
    parallel_for(rows, [&](int64_t begin, int64_t end) {
        for (int64_t row = begin; row < end; ++row) {
            const int64_t kx = row % g.kernel_w;
            const int64_t ky = (row / g.kernel_w) % g.kernel_h;
            const int64_t c = row / (g.kernel_w * g.kernel_h);
            const float* plane = image + c * g.height * g.width;
            float* out = columns + row * oh * ow;
            for (int64_t y = 0; y < oh; ++y) {
                const int64_t iy = y * g.stride_h - g.pad_h + ky * g.dilation_h;
                float* out_row = out + y * ow;
                if (iy < 0 || iy >= g.height) {
                    for (int64_t x = 0; x < ow; ++x) out_row[x] = 0.f;
                    continue;
                }
                // columns [first, last) read inside the row, the others are padding
                int64_t first, last;
                across.columns_inside(kx * g.dilation_w, &first, &last);
                const float* src = plane + iy * g.width + kx * g.dilation_w - g.pad_w;
                std::fill(out_row, out_row + first, 0.f);
                if (g.stride_w == 1) {
                    std::copy(src + first, src + last, out_row + first);
                } else {
                    for (int64_t x = first; x < last; ++x) out_row[x] = src[x * g.stride_w];
                }
                std::fill(out_row + last, out_row + ow, 0.f);
            }
        }
    }, 1 + 16384 / std::max<int64_t>(1, oh * ow));
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
