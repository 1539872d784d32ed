#include "activations.h"

#include "activations.cuh"
#include "common.cuh"

namespace darknet_py {
namespace cuda {

namespace {

constexpr float NORM_EPS = 0.0001f;   // darknet's normalize_channels epsilon

__global__ void affine_activate_kernel(const float* x, float* y, int64_t n, int64_t channels, int64_t spatial,
                                       const float* scale, const float* shift, Activation act) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) {
        const int64_t c = i / spatial % channels;
        float v = x[i];
        if (scale) v *= scale[c];
        if (shift) v += shift[c];
        y[i] = activate(v, act);
    }
}

__global__ void activate_backward_kernel(const float* x, const float* dy, float* dx, int64_t n, Activation act) {
    for (int64_t i = grid_start(); i < n; i += grid_stride()) dx[i] = dy[i] * gradient(x[i], act);
}

// One thread per (image, position): the channels of a position are `spatial` apart.
__global__ void normalize_channels_kernel(const float* x, float* y, int64_t batch, int64_t channels, int64_t spatial,
                                          ChannelNorm kind) {
    for (int64_t i = grid_start(); i < batch * spatial; i += grid_stride()) {
        const int64_t offset = i / spatial * channels * spatial + i % spatial;
        const float* in = x + offset;
        float* out = y + offset;
        float peak = 0.0f;
        if (kind == ChannelNorm::softmax_maxval) {
            peak = in[0];
            for (int64_t c = 1; c < channels; ++c) peak = fmaxf(peak, in[c * spatial]);
        }
        float sum = NORM_EPS;
        for (int64_t c = 0; c < channels; ++c) {
            const float v = in[c * spatial];
            sum += kind == ChannelNorm::positive ? fmaxf(v, 0.0f) : expf(v - peak);
        }
        for (int64_t c = 0; c < channels; ++c) {
            const float v = in[c * spatial];
            out[c * spatial] = (kind == ChannelNorm::positive ? fmaxf(v, 0.0f) : expf(v - peak)) / sum;
        }
    }
}

// normalize_channels: dx = [x > 0] (dy - sum(dy * out)) / s. Softmaxes: dx = out (dy - sum(dy * out)), and with
// the maximum subtracted, -sum(dy * out) * eps / s more at the first maximal channel (out depends on it through eps).
__global__ void normalize_channels_backward_kernel(const float* x, const float* dy, float* dx, int64_t batch,
                                                   int64_t channels, int64_t spatial, ChannelNorm kind) {
    for (int64_t i = grid_start(); i < batch * spatial; i += grid_stride()) {
        const int64_t offset = i / spatial * channels * spatial + i % spatial;
        const float* in = x + offset;
        const float* d = dy + offset;
        float* out = dx + offset;
        float peak = 0.0f;
        int64_t first = 0;
        if (kind == ChannelNorm::softmax_maxval) {
            peak = in[0];
            for (int64_t c = 1; c < channels; ++c) {
                if (in[c * spatial] > peak) {
                    peak = in[c * spatial];
                    first = c;
                }
            }
        }
        float sum = NORM_EPS;
        for (int64_t c = 0; c < channels; ++c) {
            const float v = in[c * spatial];
            sum += kind == ChannelNorm::positive ? fmaxf(v, 0.0f) : expf(v - peak);
        }
        float dot = 0.0f;
        for (int64_t c = 0; c < channels; ++c) {
            const float v = in[c * spatial];
            dot += d[c * spatial] * (kind == ChannelNorm::positive ? fmaxf(v, 0.0f) : expf(v - peak)) / sum;
        }
        for (int64_t c = 0; c < channels; ++c) {
            const float v = in[c * spatial], g = d[c * spatial];
            if (kind == ChannelNorm::positive) {
                out[c * spatial] = v > 0.0f ? (g - dot) / sum : 0.0f;
            } else {
                float r = expf(v - peak) / sum * (g - dot);
                if (kind == ChannelNorm::softmax_maxval && c == first) r -= dot * (NORM_EPS / sum);
                out[c * spatial] = r;
            }
        }
    }
}

}  // namespace

void affine_activate(const float* x, float* y, int64_t planes, int64_t channels, int64_t spatial, const float* scale,
                     const float* shift, Activation act, cudaStream_t stream) {
    const int64_t n = planes * spatial;
    if (n == 0) return;
    launch("affine_activate", affine_activate_kernel, grid_for(n), BLOCK, 0, stream, x, y, n, channels, spatial,
           scale, shift, act);
}

void activate_backward(const float* x, const float* dy, float* dx, int64_t n, Activation act, cudaStream_t stream) {
    if (n == 0) return;
    launch("activate_backward", activate_backward_kernel, grid_for(n), BLOCK, 0, stream, x, dy, dx, n, act);
}

void normalize_channels(const float* x, float* y, int64_t batch, int64_t channels, int64_t spatial, ChannelNorm kind,
                        cudaStream_t stream) {
    if (batch * spatial == 0 || channels == 0) return;
    launch("normalize_channels", normalize_channels_kernel, grid_for(batch * spatial), BLOCK, 0, stream, x, y, batch,
           channels, spatial, kind);
}

void normalize_channels_backward(const float* x, const float* dy, float* dx, int64_t batch, int64_t channels,
                                 int64_t spatial, ChannelNorm kind, cudaStream_t stream) {
    if (batch * spatial == 0 || channels == 0) return;
    launch("normalize_channels_backward", normalize_channels_backward_kernel, grid_for(batch * spatial), BLOCK, 0,
           stream, x, dy, dx, batch, channels, spatial, kind);
}

}  // namespace cuda
}  // namespace darknet_py
