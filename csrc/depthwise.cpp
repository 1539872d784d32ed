#include "depthwise.h"

#include <algorithm>
#include <vector>

#include "parallel.h"
#include "simd.h"

namespace darknet_py {

namespace {

// One plane from its zero-padded copy (padded element (r, c) is input (r - offset, c - offset), pw columns, as
// large as the windows reach): every tap is in bounds, so a block of outputs is summed in registers over all
// taps and stored once, the block's loop vectorized.
template <int64_t STRIDE>   // 0: any stride (g.stride_w)
inline void depthwise_rows(const float* __restrict padded, int64_t pw, const float* __restrict w,
                           float* __restrict out, const WindowGeometry& g) {
    constexpr int64_t BLOCK = 16;
    const int64_t k = g.kernel, d = g.dilation, sw = STRIDE ? STRIDE : g.stride_w;
    for (int64_t oy = 0; oy < g.out_h; ++oy) {
        const float* base = padded + oy * g.stride_h * pw;
        float* row = out + oy * g.out_w;
        for (int64_t ox0 = 0; ox0 < g.out_w; ox0 += BLOCK) {
            const int64_t n = std::min(BLOCK, g.out_w - ox0);
            float sum[BLOCK] = {};
            for (int64_t ky = 0; ky < k; ++ky) {
                for (int64_t kx = 0; kx < k; ++kx) {
                    const float wv = w[ky * k + kx];
                    const float* src = base + ky * d * pw + ox0 * sw + kx * d;
                    if (n == BLOCK) {
                        for (int64_t j = 0; j < BLOCK; ++j) sum[j] += wv * src[j * sw];
                    } else {
                        for (int64_t j = 0; j < n; ++j) sum[j] += wv * src[j * sw];
                    }
                }
            }
            std::copy(sum, sum + n, row + ox0);
        }
    }
}

DARKNET_PY_SIMD_CLONES
void depthwise_plane(const float* __restrict padded, int64_t pw, const float* __restrict w, float* __restrict out,
                     const WindowGeometry& g) {
    if (g.stride_w == 1) {
        depthwise_rows<1>(padded, pw, w, out, g);
    } else if (g.stride_w == 2) {
        depthwise_rows<2>(padded, pw, w, out, g);
    } else {
        depthwise_rows<0>(padded, pw, w, out, g);
    }
}

}  // namespace

void depthwise_conv2d(const float* x, const float* weights, float* y, int64_t batch, int64_t channels,
                      const WindowGeometry& g, const float* scale, const float* shift, Activation act) {
    const int64_t in_plane = g.height * g.width, out_plane = g.out_h * g.out_w, k2 = g.kernel * g.kernel;
    const int64_t ph = (g.out_h - 1) * g.stride_h + (g.kernel - 1) * g.dilation + 1;
    const int64_t pw = (g.out_w - 1) * g.stride_w + (g.kernel - 1) * g.dilation + 1;
    parallel_for(batch * channels, [&](int64_t begin, int64_t end) {
        std::vector<float> padded(ph * pw);
        for (int64_t p = begin; p < end; ++p) {
            const int64_t c = p % channels;
            pad_plane(x + p * in_plane, g.height, g.width, g.offset, padded.data(), ph, pw);
            float* out = y + p * out_plane;
            depthwise_plane(padded.data(), pw, weights + c * k2, out, g);
            if (shift) affine_activate_plane(out, out_plane, scale ? scale[c] : 1.0f, shift[c], act);
        }
    }, 1 + 4096 / std::max<int64_t>(1, out_plane * k2));
}

}  // namespace darknet_py
