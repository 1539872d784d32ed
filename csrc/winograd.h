// Winograd F(4x4, 3x3) convolution (Lavin & Gray) for 3x3, stride-1, undilated, ungrouped float32 convolutions:
// out = A^T [ (G w G^T) . (B^T d B) ] A per 6x6 input tile d and 4x4 output tile, with the 36 elementwise
// products summed over input channels as 36 GEMMs (done by the caller with BLAS). Tiles are numbered
// (image, tile row, tile column) over batch x tiles_h x tiles_w.
#pragma once
#include <cstdint>

#include "activations.h"

namespace darknet_py {

constexpr int64_t WINOGRAD_TILE = 4;   // output tile side; input tiles are 6x6 (4 + 3 - 1)

// v[36, channels, tiles] = B^T d B for the 6x6 tile of x (batch, channels, h, w) at rows 4*ty - pad ...,
// columns 4*tx - pad ..., zero outside the image.
void winograd_input_transform(const float* x, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t pad,
                              int64_t tiles_h, int64_t tiles_w, float* v);

// y (batch, filters, out_h, out_w) = act(A^T m A * scale[f] + shift[f]) from m[36, filters, tiles]; scale may
// be null (1), shift may be null (no affine map, no activation).
void winograd_output_transform(const float* m, int64_t batch, int64_t filters, int64_t out_h, int64_t out_w,
                               int64_t tiles_h, int64_t tiles_w, const float* scale, const float* shift,
                               Activation act, float* y);

}  // namespace darknet_py
