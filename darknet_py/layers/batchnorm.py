"""[batchnorm]: standalone batch normalization over channels (darknet make_batchnorm_layer; no options).
Weights file: biases, scales, rolling_mean, rolling_variance, c values each.

Also the batch normalization shared by [convolutional] and [connected] (darknet forward_batchnorm_layer,
src/blas.c mean_cpu/variance_cpu/normalize_cpu): bn_forward here, the math in the ops (batchnorm_forward and
batchnorm_backward: NumPy in backend.py, kernels in csrc/cuda/batchnorm.cu), which fuse the layer's activation;
and the helpers those layers use to fetch their weights and check their input.

Darknet facts matched:
- training: per channel over batch x spatial (M values), mean = sum/M and variance = sum (x-mean)^2 / (M-1)
  (variance_cpu divides by batch*spatial - 1); out = (x - mean)/sqrt(variance + .00001) * scales + biases.
- inference: the same with rolling_mean / rolling_variance.
- rolling statistics after each training forward: rolling = .99*rolling + .01*batch statistic (the momentum
  of darknet's GPU path and of cuDNN, where darknet trains; its CPU-only forward_batchnorm_layer uses .9/.1
  and forward_connected_layer .95/.05). They never feed a training-mode output.
- backward: the exact gradient of that forward through the batch mean and the (M-1) variance. (darknet's
  normalize_delta_cpu divides by sqrt(variance) + .00001 instead of sqrt(variance + .00001) and its
  variance_delta uses 1/M: close, but not the derivative of its own forward.)
Known darknet differences: with CUDNN, training normalizes with the biased (1/M) variance; the GPU
non-cuDNN path (fast_variance_gpu) divides by M too. Only the CPU code divides by M-1, which is followed here.
"""
import math

import numpy as np

from . import register
from .base import Layer
from ..backend import inference_batchnorm_affine
from ..errors import DarknetError

BN_NAMES = ("scales", "rolling_mean", "rolling_variance")


# -- helpers for every layer with weights ---------------------------------------------------------------
def layer_label(layer):
    return f"layer {layer.index} {layer.kind}"


def layer_params(layer, owner, names, ops):
    """`owner.weights[name]` for each name, as ops arrays of the shapes in owner's weight_layout(), or a
    DarknetError that names the layer. `owner` is the layer itself or the one it shares weights with. On a device
    with its own memory (ops.weights_on_device) the first call moves the arrays there: `layer.weights` then holds
    device arrays, which training updates in place (ops.to_numpy reads them back, as saving does).
    The checks run once per set of arrays: the result is kept while `owner.weights` holds the same arrays (by
    identity) with the same shapes, so that replacing one, or reshaping it in place, checks again; the result holds
    views of those arrays (nothing computed from their values), so edits in place show through."""
    checked = layer.checked_params.get(names)
    if checked is not None and checked[0] is owner and checked[1] is ops:
        weights = owner.weights
        for name, array, shape in checked[2]:
            current = weights.get(name)
            if current is not array or current.shape != shape:
                break
        else:
            return checked[3]
    params, views = _checked_params(layer, owner, names, ops)
    if views:   # (a converted copy would not show later edits of the array)
        arrays = [(name, owner.weights[name], owner.weights[name].shape) for name in names]   # a device's, if moved
        layer.checked_params[names] = (owner, ops, arrays, params)
    return params


def _checked_params(layer, owner, names, ops):
    """layer_params' checks and arrays, and whether those are views of the arrays of owner.weights (no copy made)."""
    views = True
    shapes = dict(owner.weight_layout())
    if not owner.weights:
        shared = f" (it shares layer {owner.index}'s, which has none)" if owner is not layer else ""
        raise DarknetError(f"{layer_label(layer)} has no weights{shared}: load a .weights file or call init_weights")
    params = {}
    for name in names:
        array = owner.weights.get(name)
        if array is None or name not in shapes:
            where = f"layer {owner.index}, which it shares," if owner is not layer else "it"
            raise DarknetError(f"{layer_label(layer)} needs '{name}' but {where} has none (batch_normalize "
                               f"differs or the .weights file skipped it): load complete weights or call init_weights")
        shape = tuple(shapes[name])
        if array.size != math.prod(shape):
            raise DarknetError(f"{layer_label(layer)} {name}: expected {shape} values, got an array of shape "
                               f"{tuple(array.shape)}")
        value = ops.asarray(array)
        if ops.weights_on_device and value is not array:
            owner.weights[name] = value   # the device copy is the one used and updated from now on
        else:
            views = views and value is array
        params[name] = value.reshape(shape)
    return params, views


def weighted_names(layer):
    """The arrays a [convolutional] or [connected] forward reads: biases, weights and, with batch_normalize,
    BN_NAMES."""
    return ("biases", "weights") + (BN_NAMES if layer.batch_normalize else ())


def accumulate(grads, name, value, shape):
    """grads[name] += value, creating it the first time (weight gradients accumulate across backward calls)."""
    value = value.reshape(shape)
    if name in grads:
        grads[name] += value
    else:
        grads[name] = value.copy()


def image_input(layer, x):
    """x as (batch, c, h, w) for a layer reading an image; a flat (batch, c*h*w) input (a [connected] output,
    1 x 1 x n in darknet's terms) is reshaped. Any other shape is an error, never silently reinterpreted."""
    c, h, w = layer.c, layer.h, layer.w
    if x.ndim == 4 and tuple(x.shape[1:]) == (c, h, w):
        return x
    if x.ndim == 2 and x.shape[1] == c * h * w:
        return x.reshape(x.shape[0], c, h, w)
    raise DarknetError(f"{layer_label(layer)}: input of shape {tuple(x.shape)}; expected (batch, {c}, {h}, {w})")


# -- batch normalization ------------------------------------------------------------------------------------------
def bn_forward(layer, ops, z, params, weights, train, activation="linear"):
    """activation(batch normalization of z (batch, channels, ...) per channel, then scales and biases), as darknet
    does, through ops.batchnorm_forward. `params` holds the ops arrays scales and biases; `weights` is the dict of
    the rolling statistics, updated in place in training (device arrays on a device: layer_params put them there).
    Returns (output, cache for ops.batchnorm_backward)."""
    count = z.size // z.shape[1]
    if train and count < 2:
        raise DarknetError(f"{layer_label(layer)}: batch normalization in training needs at least 2 values per "
                           f"channel (batch x out_h x out_w is {count}; darknet divides by that minus 1)")
    return ops.batchnorm_forward(z, params["scales"], params["biases"], weights["rolling_mean"],
                                 weights["rolling_variance"], train, activation)


def fold_batchnorm(params):
    """Darknet's fuse_conv_batchnorm on the NumPy arrays of weighted_names(): (weights, biases) as float32,
    with the inference batch normalization folded in (computed in float64) when params holds BN_NAMES, else
    as they are. The first axis of weights is the output channel."""
    weights, biases = params["weights"], params["biases"]
    if "scales" not in params:
        return weights, biases
    p = {k: params[k].astype(np.float64) for k in ("biases",) + BN_NAMES}
    a, folded_biases = inference_batchnorm_affine(p["scales"], p["biases"], p["rolling_mean"], p["rolling_variance"],
                                                  np)
    folded = weights.astype(np.float64) * a.reshape((-1,) + (1,) * (weights.ndim - 1))
    return folded.astype(np.float32), folded_biases.astype(np.float32)


@register("batchnorm")
class BatchNorm(Layer):
    kind = "batchnorm"

    def configure(self, s, ctx):
        pass

    def weight_layout(self):
        c = self.c
        return [("biases", (c,)), ("scales", (c,)), ("rolling_mean", (c,)), ("rolling_variance", (c,))]

    @property
    def train_floats(self):
        return 2 * self.outputs

    def row(self):
        return f"Batch Normalization Layer: {self.w} x {self.h} x {self.c} image"

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        x = image_input(self, x)
        params = layer_params(self, self, ("biases",) + BN_NAMES, net.ops)
        out, self._bn = bn_forward(self, net.ops, x, params, self.weights, net.train)
        return out

    def backward(self, x, net):
        dx, dscales, dbiases = net.ops.batchnorm_backward(self.delta.reshape(image_input(self, x).shape), self._bn)
        accumulate(self.grads, "scales", dscales, (self.c,))
        accumulate(self.grads, "biases", dbiases, (self.c,))
        return dx.reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        p = {name: graph.numpy(value).astype(np.float64)
             for name, value in layer_params(self, self, ("biases",) + BN_NAMES, graph.net.ops).items()}
        a, b = (v.astype(np.float32) for v in inference_batchnorm_affine(p["scales"], p["biases"], p["rolling_mean"],
                                                                         p["rolling_variance"], np))
        out = graph.add(graph.mul(graph.image_input(self), a.reshape(1, -1, 1, 1)), b.reshape(1, -1, 1, 1))
        return out, (self.c, self.h, self.w)
