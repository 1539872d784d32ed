// Pooling for float32 NCHW: max pooling (inference: values only; training keeps NumPy's version, which records
// argmax) and global average pooling.
#pragma once
#include <cstdint>

#include "window.h"

namespace darknet_py {

// y[p, oy, ox] = the largest x[p, oy*stride_h - offset + ky, ox*stride_w - offset + kx] inside the image over
// ky, kx < kernel (dilation 1), or -FLT_MAX where the window holds none, as darknet's forward_maxpool_layer.
void maxpool2d(const float* x, float* y, int64_t planes, const WindowGeometry& g);

// y[p] = the mean of the `spatial` values of plane p of x, for each of `planes` planes.
void global_avgpool(const float* x, float* y, int64_t planes, int64_t spatial);

}  // namespace darknet_py
