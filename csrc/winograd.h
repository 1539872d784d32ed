// Winograd F(tile x tile, 3x3) convolution (Lavin & Gray), tile 4 or 2, for 3x3, stride-1, undilated, ungrouped
// float32 convolutions: out = A^T [ (G w G^T) . (B^T d B) ] A per (tile+2)^2 input tile d and tile x tile output
// tile, the P = (tile+2)^2 elementwise products summed over input channels as P GEMMs (done by the caller with
// BLAS). Tiles are numbered (image, tile row, tile column) over batch x tiles_h x tiles_w.
#pragma once
#include <cstdint>

#include "activations.h"

namespace darknet_py {

// v[P, channels, tiles] = B^T d B for the input tile of x (batch, channels, h, w) at rows tile*ty - pad ...,
// columns tile*tx - pad ..., zero outside the image.
void winograd_input_transform(const float* x, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t pad,
                              int64_t tile, int64_t tiles_h, int64_t tiles_w, float* v);

// y (batch, filters, out_h, out_w) = act(A^T m A * scale[f] + shift[f]) from m[P, filters, tiles]; scale may
// be null (1), shift may be null (no affine map, no activation).
void winograd_output_transform(const float* m, int64_t batch, int64_t filters, int64_t out_h, int64_t out_w,
                               int64_t tile, int64_t tiles_h, int64_t tiles_w, const float* scale,
                               const float* shift, Activation act, float* y);

}  // namespace darknet_py
