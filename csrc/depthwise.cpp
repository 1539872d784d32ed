#include "depthwise.h"

#include <algorithm>

#include "parallel.h"
#include "simd.h"

namespace darknet_py {

namespace {

DARKNET_PY_SIMD_CLONES
void depthwise_plane(const float* __restrict in, const float* __restrict w, float* __restrict out,
                     const WindowGeometry& g) {
    const int64_t k = g.kernel, sw = g.stride_w;
    std::fill(out, out + g.out_h * g.out_w, 0.0f);
    for (int64_t oy = 0; oy < g.out_h; ++oy) {
        float* __restrict row = out + oy * g.out_w;
        for (int64_t ky = 0; ky < k; ++ky) {
            const int64_t iy = oy * g.stride_h - g.offset + ky * g.dilation;
            if (iy < 0 || iy >= g.height) continue;
            const float* in_row = in + iy * g.width;
            for (int64_t kx = 0; kx < k; ++kx) {
                const int64_t tap = kx * g.dilation;
                int64_t first, last;
                g.columns_inside(tap, &first, &last);
                const float wv = w[ky * k + kx];
                const float* src = in_row + tap - g.offset;  // src[ox*sw] is input column ox*sw - offset + tap
                if (sw == 1) {
                    for (int64_t ox = first; ox < last; ++ox) row[ox] += wv * src[ox];
                } else {
                    for (int64_t ox = first; ox < last; ++ox) row[ox] += wv * src[ox * sw];
                }
            }
        }
    }
}

}  // namespace

void depthwise_conv2d(const float* x, const float* weights, float* y, int64_t batch, int64_t channels,
                      const WindowGeometry& g, const float* scale, const float* shift, Activation act) {
    const int64_t in_plane = g.height * g.width, out_plane = g.out_h * g.out_w, k2 = g.kernel * g.kernel;
    parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
            const int64_t c = p % channels;
            float* out = y + p * out_plane;
            depthwise_plane(x + p * in_plane, weights + c * k2, out, g);
            if (shift) affine_activate_plane(out, out_plane, scale ? scale[c] : 1.0f, shift[c], act);
        }
    }, 1 + 4096 / std::max<int64_t>(1, out_plane * k2));
}

}  // namespace darknet_py
