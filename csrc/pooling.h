// Max pooling for float32 NCHW (inference: values only; training keeps NumPy's version, which records argmax).
#pragma once
#include <cstdint>

#include "window.h"

namespace darknet_py {

// y[p, oy, ox] = the largest x[p, oy*stride_h - offset + ky, ox*stride_w - offset + kx] inside the image over
// ky, kx < kernel (dilation 1), or -FLT_MAX where the window holds none, as darknet's forward_maxpool_layer.
void maxpool2d(const float* x, float* y, int64_t planes, const WindowGeometry& g);

}  // namespace darknet_py
