#include "im2col.h"

namespace darknet_py {

void im2col(const float* image, const ConvGeometry& g, float* columns) {
    const int64_t oh = g.out_h(), ow = g.out_w(), rows = g.rows();
    // every row is independent: parallel over rows
#pragma omp parallel for schedule(static)
    for (int64_t row = 0; row < rows; ++row) {
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
            const float* in_row = plane + iy * g.width;
            for (int64_t x = 0; x < ow; ++x) {
                const int64_t ix = x * g.stride_w - g.pad_w + kx * g.dilation_w;
                out_row[x] = (ix >= 0 && ix < g.width) ? in_row[ix] : 0.f;
            }
        }
    }
}

void col2im(const float* columns, const ConvGeometry& g, float* image) {
    const int64_t oh = g.out_h(), ow = g.out_w(), khw = g.kernel_h * g.kernel_w;
    // rows of one channel write to the same plane: parallel over channels, serial inside
#pragma omp parallel for schedule(static)
    for (int64_t c = 0; c < g.channels; ++c) {
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
}

}  // namespace darknet_py
