// Fused per-channel affine transform and darknet activation, in place, for float32 NCHW arrays:
// x = act(x * scale[c] + shift[c]). Inference uses it for a convolution's bias (or folded batch normalization).
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace darknet_py {

// The elementwise darknet activations with a C++ kernel (normalize_channels* mix channels: NumPy only).
enum class Activation : int {
    linear, logistic, loggy, tanh, relu, relu6, leaky, relie, ramp, elu, selu, gelu, plse, hardtan, lhtan,
    stair, swish, mish, hard_mish,
};

// The activation called `name` in a cfg (revleaky is leaky in darknet's forward); false if it has no kernel.
bool activation_from_name(const std::string& name, Activation* act);
std::vector<std::string> activation_names();

// One plane of n values: x[i] = act(x[i] * scale + shift).
void affine_activate_plane(float* x, int64_t n, float scale, float shift, Activation act);
// y[i] = act(x[i] * scale + shift) for n values (y may be x).
void affine_activate_copy(const float* x, float* y, int64_t n, float scale, float shift, Activation act);

// y[i] = act(x[i] * scale[i] + shift[i]) for n values (y may be x): a coefficient per value.
void affine_activate_each(const float* x, float* y, int64_t n, const float* scale, const float* shift,
                          Activation act);

// x[i] = act(x[i] * scale[i % width] + shift[i % width]) for n values: values interleaved from `width` channels
// (position-major), scale and shift holding one coefficient per channel.
void affine_activate_interleaved(float* x, int64_t n, int64_t width, const float* scale, const float* shift,
                                 Activation act);

// Inference batch normalization then scales and biases as one per-channel map z * scale + shift (darknet's
// fuse_conv_batchnorm): scale = scales / sqrt(variance + .00001), shift = biases - mean * scale, for n channels,
// computed in double and rounded once.
void fold_batchnorm(const float* scales, const float* biases, const float* mean, const float* variance, int64_t n,
                    float* scale, float* shift);

// y = act(x * scale[c] + shift[c]) for planes = batch * channels planes of `spatial` values each (y may be x); plane
// p uses channel p % channels. scale may be null (1). Parallel over planes.
void affine_activate(const float* x, float* y, int64_t planes, int64_t channels, int64_t spatial, const float* scale,
                     const float* shift, Activation act);

}  // namespace darknet_py
