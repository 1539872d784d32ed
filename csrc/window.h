// The geometry of sliding windows over one image plane, shared by the depthwise convolution and pooling kernels.
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

}  // namespace darknet_py
