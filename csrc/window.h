// The geometry of sliding windows over one image plane, shared by the im2col, depthwise convolution, Winograd and
// pooling kernels.
#pragma once
#include <algorithm>
#include <cstdint>

namespace darknet_py {

// out[oy, ox] reads in[oy*stride_h - offset + ky*dilation, ox*stride_w - offset + kx*dilation] for
// ky, kx < kernel; positions outside the image are skipped. out_h/out_w are given (darknet sizes them).
struct WindowGeometry {
    int64_t height, width, out_h, out_w, kernel, stride_h, stride_w, offset, dilation;

    // The output columns [first, last) whose input column ox*stride_w - offset + tap lies inside [0, width).
    void columns_inside(int64_t tap, int64_t* first, int64_t* last) const {
        const int64_t lo = offset - tap, hi = width - 1 + offset - tap;  // lo <= ox*stride_w <= hi
        *last = hi < 0 ? 0 : std::min(out_w, hi / stride_w + 1);
        *first = std::min(*last, lo <= 0 ? int64_t(0) : (lo + stride_w - 1) / stride_w);
    }
};

// padded[ph, pw] = plane[height, width] with zeros around: padded element (r, c) is plane element
// (r - offset, c - offset); plane rows and columns past the padded extent are dropped.
inline void pad_plane(const float* plane, int64_t height, int64_t width, int64_t offset, float* padded, int64_t ph,
                      int64_t pw) {
    const int64_t rows_in = std::max<int64_t>(0, std::min(height, ph - offset));
    const int64_t cols_in = std::max<int64_t>(0, std::min(width, pw - offset));
    std::fill(padded, padded + ph * pw, 0.0f);
    for (int64_t iy = 0; iy < rows_in; ++iy)
        std::copy(plane + iy * width, plane + iy * width + cols_in, padded + (iy + offset) * pw + offset);
}

}  // namespace darknet_py
