// Winograd F(tile x tile, 3x3) convolution (Lavin & Gray), tile 4 or 2, for 3x3, stride-1, undilated, ungrouped
// float32 convolutions: out = A^T [ (G w G^T) . (B^T d B) ] A per (tile+2)^2 input tile d and tile x tile output
// tile, the P = (tile+2)^2 elementwise products summed over input channels as P GEMMs (csrc/gemm.cpp) of the
// transformed weights, packed in advance, with the transformed input. Tiles are numbered (image, tile row, tile
// column) over batch x ceil(out_h / tile) x ceil(out_w / tile).
#pragma once
#include <cstdint>

#include "activations.h"
#include "gemm.h"

namespace darknet_py {

// The GEMMs run over the tiles padded to whole runs of the GEMM's vectors.
constexpr int64_t WINOGRAD_COLUMN_ALIGN = COLUMN_ALIGN;

// Tiles rounded up to WINOGRAD_COLUMN_ALIGN: the row length of the transformed input and of the products.
int64_t winograd_row_stride(int64_t tiles);

// packed <- G w G^T of the weights w (filters, channels, 3, 3) as P = (tile+2)^2 matrices (filters x channels),
// each packed for the GEMM (csrc/gemm.h) as PACK_ROWS-row panels, rows past `filters` zero:
// packed[point][panel][channel][row], P * packed_panels(filters) * channels * PACK_ROWS floats. Computed in double.
void winograd_weights(const float* w, int64_t filters, int64_t channels, int64_t tile, float* packed);

// y (batch, filters, out_h, out_w) = act(conv3x3(x, w) * scale[f] + shift[f]) for x (batch, channels, h, w) zero-padded
// by `pad`, out_h = h + 2*pad - 2 (likewise out_w). packed_weights: as winograd_weights writes them. scale may be
// null (1); shift may be null (no affine map, no activation).
// Uses P * (channels + filters rounded up to PACK_ROWS) * winograd_row_stride(tiles) floats of the calling thread's
// workspace, which keeps the largest size used until release_workspace().
void winograd_convolution(const float* x, int64_t batch, int64_t channels, int64_t h, int64_t w, int64_t pad,
                          int64_t tile, const float* packed_weights, int64_t filters, int64_t out_h, int64_t out_w,
                          const float* scale, const float* shift, Activation act, float* y);

// Frees the calling thread's workspace.
void release_workspace();

}  // namespace darknet_py
