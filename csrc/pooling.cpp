#include "pooling.h"

#include <algorithm>
#include <cfloat>

#include "parallel.h"
#include "simd.h"

namespace darknet_py {

namespace {

DARKNET_PY_SIMD_CLONES
void maxpool_plane(const float* __restrict in, float* __restrict out, const WindowGeometry& g) {
    const int64_t sw = g.stride_w;
    for (int64_t oy = 0; oy < g.out_h; ++oy) {
        float* __restrict row = out + oy * g.out_w;
        std::fill(row, row + g.out_w, -FLT_MAX);
        for (int64_t ky = 0; ky < g.kernel; ++ky) {
            const int64_t iy = oy * g.stride_h - g.offset + ky;
            if (iy < 0 || iy >= g.height) continue;
            const float* in_row = in + iy * g.width;
            for (int64_t kx = 0; kx < g.kernel; ++kx) {
                int64_t first, last;
                g.columns_inside(kx, &first, &last);
                const float* src = in_row + kx - g.offset;
                // darknet's comparison: a value replaces the running maximum only when strictly greater
                if (sw == 1) {
                    for (int64_t ox = first; ox < last; ++ox) row[ox] = src[ox] > row[ox] ? src[ox] : row[ox];
                } else {
                    for (int64_t ox = first; ox < last; ++ox) {
                        const float v = src[ox * sw];
                        row[ox] = v > row[ox] ? v : row[ox];
                    }
                }
            }
        }
    }
}

// The sum of n values: lanes<V>() running sums over whole vectors, added up, then the last values.
struct PlaneSum {
    template <class V>
    static DARKNET_PY_INLINE void run(const float* x, int64_t n, float* sum) {
        V acc = {};
        int64_t i = 0;
        for (; i + lanes<V>() <= n; i += lanes<V>()) acc += load<V>(x + i);
        float total = 0.0f;
        for (int64_t l = 0; l < lanes<V>(); ++l) total += acc[l];
        for (; i < n; ++i) total += x[i];
        *sum = total;
    }
};

}  // namespace

void global_avgpool(const float* x, float* y, int64_t planes, int64_t spatial) {
    parallel_for(planes, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) {
            float sum;
            simd_run<PlaneSum>(x + p * spatial, spatial, &sum);
            y[p] = sum / float(spatial);
        }
    }, 1 + 16384 / std::max<int64_t>(1, spatial));
}

void maxpool2d(const float* x, float* y, int64_t planes, const WindowGeometry& g) {
    const int64_t in_plane = g.height * g.width, out_plane = g.out_h * g.out_w;
    parallel_for(planes, [&](int64_t begin, int64_t end) {
        for (int64_t p = begin; p < end; ++p) maxpool_plane(x + p * in_plane, y + p * out_plane, g);
    }, 1 + 16384 / std::max<int64_t>(1, out_plane * g.kernel * g.kernel));
}

}  // namespace darknet_py
