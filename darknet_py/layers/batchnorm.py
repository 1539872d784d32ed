"""[batchnorm]: standalone batch normalization over channels (darknet make_batchnorm_layer; no options).
Weights file: biases, scales, rolling_mean, rolling_variance, c values each.

Also the batch-normalization math shared by [convolutional] and [connected] (darknet forward_batchnorm_layer,
src/blas.c mean_cpu/variance_cpu/normalize_cpu), and the helpers those layers use to fetch their weights and
check their input.

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
from ..errors import DarknetError

BN_EPSILON = .00001
BN_MOMENTUM = .01
BN_NAMES = ("scales", "rolling_mean", "rolling_variance")


# -- helpers for every layer with weights ---------------------------------------------------------------
def layer_label(layer):
    return f"layer {layer.index} {layer.kind}"


def layer_params(layer, owner, names, ops):
    """`owner.weights[name]` for each name, as ops arrays of the shapes in owner's weight_layout(), or a
    DarknetError that names the layer. `owner` is the layer itself or the one it shares weights with. On a device
    with its own memory (ops.weights_on_device) the first call moves the arrays there: `layer.weights` then holds
    device arrays, which training updates in place (ops.to_numpy reads them back, as saving does)."""
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
        params[name] = value.reshape(shape)
    return params


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


# -- batch normalization ------------------------------------------------------------------------------
def _stat_axes(x):
    return (0,) + tuple(range(2, x.ndim))


def _per_channel(v, x):
    return v.reshape((1, -1) + (1,) * (x.ndim - 2))


def _update_rolling(weights, name, stat, ops):
    array = weights[name]
    new = (1 - BN_MOMENTUM) * ops.asarray(array).reshape(stat.shape) + BN_MOMENTUM * stat
    array.reshape(stat.shape)[...] = ops.to_numpy(new)


def bn_forward(layer, z, params, weights, train, ops):
    """Batch-normalize z (batch, channels, ...) per channel, then scale and add biases, as darknet does.
    `params` holds the ops arrays scales, biases, rolling_mean, rolling_variance; `weights` is the dict the
    rolling statistics are updated in. Returns (output, cache for bn_backward)."""
    xp = ops.xp
    axes = _stat_axes(z)
    count = z.size // z.shape[1]
    if train:
        if count < 2:
            raise DarknetError(f"{layer_label(layer)}: batch normalization in training needs at least 2 values per "
                               f"channel (batch x out_h x out_w is {count}; darknet divides by that minus 1)")
        mean = xp.mean(z, axis=axes)
        centered = z - _per_channel(mean, z)
        variance = xp.sum(centered * centered, axis=axes) / (count - 1)
        _update_rolling(weights, "rolling_mean", mean, ops)
        _update_rolling(weights, "rolling_variance", variance, ops)
    else:
        variance = params["rolling_variance"]
        centered = z - _per_channel(params["rolling_mean"], z)
    inv_std = 1 / xp.sqrt(variance + BN_EPSILON)
    xhat = centered * _per_channel(inv_std, z)
    out = xhat * _per_channel(params["scales"], z) + _per_channel(params["biases"], z)
    return out, (train, xhat, inv_std, count)


def bn_inference_affine(params, xp):
    """Inference batch normalization then scales and biases as one per-channel map z*a + b (darknet's
    fuse_conv_batchnorm): a = scales/sqrt(rolling_variance + .00001), b = biases - rolling_mean*a."""
    a = params["scales"] / xp.sqrt(params["rolling_variance"] + BN_EPSILON)
    return a, params["biases"] - params["rolling_mean"] * a


def fold_batchnorm(params):
    """Darknet's fuse_conv_batchnorm on the NumPy arrays of weighted_names(): (weights, biases) as float32,
    with the inference batch normalization folded in (computed in float64) when params holds BN_NAMES, else
    as they are. The first axis of weights is the output channel."""
    weights, biases = params["weights"], params["biases"]
    if "scales" not in params:
        return weights, biases
    a, folded_biases = bn_inference_affine({k: params[k].astype(np.float64) for k in ("biases",) + BN_NAMES}, np)
    folded = weights.astype(np.float64) * a.reshape((-1,) + (1,) * (weights.ndim - 1))
    return folded.astype(np.float32), folded_biases.astype(np.float32)


def bn_backward(dy, scales, cache, xp):
    """Gradients of bn_forward: (dz, dscales, dbiases) for d(loss)/d(output) dy."""
    train, xhat, inv_std, count = cache
    axes = _stat_axes(dy)
    dbiases = xp.sum(dy, axis=axes)
    dscales = xp.sum(dy * xhat, axis=axes)
    dxhat = dy * _per_channel(scales, dy)
    if train:
        # z -> (mean, variance with 1/(M-1)) -> xhat: the full gradient through both statistics
        mean_term = xp.mean(dxhat, axis=axes)
        var_term = xp.sum(dxhat * xhat, axis=axes) / (count - 1)
        dz = (dxhat - _per_channel(mean_term, dy) - xhat * _per_channel(var_term, dy)) * _per_channel(inv_std, dy)
    else:
        dz = dxhat * _per_channel(inv_std, dy)
    return dz, dscales, dbiases


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
        out, self._bn = bn_forward(self, x, params, self.weights, net.train, net.ops)
        return out

    def backward(self, x, net):
        scales = layer_params(self, self, ("scales",), net.ops)["scales"]
        delta = self.delta.reshape(self._bn[1].shape)
        dz, dscales, dbiases = bn_backward(delta, scales, self._bn, net.ops.xp)
        accumulate(self.grads, "scales", dscales, (self.c,))
        accumulate(self.grads, "biases", dbiases, (self.c,))
        return dz.reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        p = {name: graph.numpy(value).astype(np.float64)
             for name, value in layer_params(self, self, ("biases",) + BN_NAMES, graph.net.ops).items()}
        a, b = (v.astype(np.float32) for v in bn_inference_affine(p, np))
        out = graph.add(graph.mul(graph.image_input(self), a.reshape(1, -1, 1, 1)), b.reshape(1, -1, 1, 1))
        return out, (self.c, self.h, self.w)
