// Kernels of the layers that combine other layers' outputs (route.cu): [route] (strided 2-D copies), [shortcut]
// (weighted channel sums and their weight gradients), [scale_channels] and [sam] (broadcast products and their
// reductions). Reductions run one block per result in a fixed order (deterministic, no atomics).
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// dst[r * dst_pitch + c] = src[r * src_pitch + c] (accumulate: +=) for r < rows, c < width.
void copy_2d(const float* src, int64_t src_pitch, float* dst, int64_t dst_pitch, int64_t rows, int64_t width,
             bool accumulate, cudaStream_t stream);

// Over `batch` images of `spatial` positions: dst[b, c, p] = weight(c) * src[b, c, p] (accumulate: +=) for
// c < channels, where src has src_channels channels and dst dst_channels (both >= channels); weight(c) is
// weights[c] (per_channel) or weights[0], 1 when weights is null.
void scale_add_channels(const float* src, int64_t src_channels, float* dst, int64_t dst_channels, int64_t batch,
                        int64_t channels, int64_t spatial, const float* weights, bool per_channel, bool accumulate,
                        cudaStream_t stream);

// out[j] = sum over r < runs, t < length of a[r * a_stride + j * length + t] * b[r * b_stride + j * length + t],
// for j < count (one block per j).
void dot_segments(const float* a, int64_t a_stride, const float* b, int64_t b_stride, float* out, int64_t count,
                  int64_t runs, int64_t length, cudaStream_t stream);

// out[b, p] = sum over c < channels of a[b, c, p] * b[b, c, p], in channel order.
void dot_channels(const float* a, const float* b, float* out, int64_t batch, int64_t channels, int64_t spatial,
                  cudaStream_t stream);

// out[i] = a[i] * b[j] (accumulate: +=) over a (batch, channels, spatial), b broadcast: j = i (elementwise),
// i / spatial (one value per image and channel) or the image's position (one value per image and position).
enum class Broadcast : int { elementwise, per_channel, per_position };
void multiply(const float* a, const float* b, float* out, int64_t batch, int64_t channels, int64_t spatial,
              Broadcast mode, bool accumulate, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
