// Pooling kernels (pooling.cu): [maxpool] (windows, and across channels with maxpool_depth), [local_avgpool] and
// the global [avgpool], forward and backward, on (planes, h, w) float arrays (planes = batch * channels).
// Backward kernels gather (one thread per input value, summing over the windows that read it): deterministic,
// no atomics.
#pragma once
#include <cstdint>

#include "runtime.h"

namespace darknet_py {
namespace cuda {

// The windows of [maxpool] and [local_avgpool]: output (r, c) of a plane covers input rows r*stride_y - offset + n
// and columns c*stride_x - offset + m for n, m < size; taps outside the h x w input are left out.
struct PoolWindows {
    int64_t planes, h, w, out_h, out_w, size, stride_x, stride_y, offset;
};

// out = the maximum of each window, the first strictly greater value in scan order (row n outer, column m inner),
// starting from -FLT_MAX: ties keep the earlier value, NaNs never win, an empty window gives -FLT_MAX. argmax
// (may be null) gets the winner's index y * w + x in its plane, -1 where nothing beat -FLT_MAX.
void maxpool(const float* x, float* out, int32_t* argmax, const PoolWindows& g, cudaStream_t stream);
// dx (planes, h, w) = the sum of dy over the windows whose argmax is that input; written, not added.
void maxpool_backward(const float* dy, const int32_t* argmax, float* dx, const PoolWindows& g, cudaStream_t stream);

// maxpool_depth: x (batch, channels, spatial) -> out (batch, out_channels, spatial), output channel g the maximum
// over input channels g, g + out_channels, ... (first maximum, as above); argmax = its round r (channel
// g + r * out_channels), -1 if none.
void maxpool_depth(const float* x, float* out, int32_t* argmax, int64_t batch, int64_t channels, int64_t out_channels,
                   int64_t spatial, cudaStream_t stream);
void maxpool_depth_backward(const float* dy, const int32_t* argmax, float* dx, int64_t batch, int64_t channels,
                            int64_t out_channels, int64_t spatial, cudaStream_t stream);

// out = the sum of each window's in-bounds values (in scan order) divided by their count (0/0 = NaN for a window
// with none); backward: dx = sum over the windows reading an input of dy / that window's count.
void local_avgpool(const float* x, float* out, const PoolWindows& g, cudaStream_t stream);
void local_avgpool_backward(const float* dy, float* dx, const PoolWindows& g, cudaStream_t stream);

// out[p] = mean of plane p's `spatial` values (a block reduction per plane); backward: dx = dy[p] / spatial.
void avgpool(const float* x, float* out, int64_t planes, int64_t spatial, cudaStream_t stream);
void avgpool_backward(const float* dy, float* dx, int64_t planes, int64_t spatial, cudaStream_t stream);

}  // namespace cuda
}  // namespace darknet_py
