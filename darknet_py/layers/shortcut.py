"""[shortcut]: add the outputs of earlier layers (`from`, several allowed) to the previous layer's output,
optionally weighted per layer or per channel.

Darknet facts (parse_shortcut, make_shortcut_layer): activation=linear, weights_type none|per_feature
(=per_layer)|per_channel, weights_normalization none|relu(=avg_relu)|softmax; nweights = n+1 (per_feature)
or (n+1)*c (per_channel), stored in the weights file. Every `from` layer must have this layer's width and
height (darknet asserts; channels may differ and the common channels are added).
BFLOPS = out_w*out_h*out_c*n/1e9, doubled with weights.

Compute (forward_shortcut_layer -> src/blas.c shortcut_multilayer_cpu, then the activation):
- out = w_0 * input + sum_i w_i * from_i, where from_i contributes to channel c only if c < its channel count
  (darknet compares flat per-image indexes, src_i < outputs of layer i, with equal width and height: the common
  channels; a `from` layer with more channels has its extra channels ignored);
- w_i = 1 without weights; per_feature: weights[i]; per_channel: weights[i*c + channel]: weights_type
  per_feature stores n+1 numbers, per_channel (n+1)*c, index 0 (or 0..c-1) for the input;
- weights_normalization relu: w_i = relu(w_i) / (eps + sum_j relu(w_j)); softmax: w_i = exp(w_i - max) /
  (eps + sum_j exp(w_j - max)), sums over the n+1 layers (per channel for per_channel), eps = 0.0001
  (ops.shortcut_weights; the sum itself is ops.shortcut).
Backward: the exact gradient of that forward, through the activation, the inputs and the raw weights
(normalization included: through relu's mask, the softmax, its eps and the max it subtracts, as the first
maximum).
Known darknet differences, not reproduced:
- backward_shortcut_multilayer_cpu accumulates d loss / d(normalized weight) into the raw weights' updates
  (its normalization derivative is commented out, grad = 1);
- forward_shortcut_layer takes a plain-add fast path when there are no weights, one `from`, and the `from`
  layer's INPUT w/h/c (layers[index].w/h/c, not out_*) equal this layer's: with a `from` layer whose output
  shape differs from its input shape, that path reads the wrong number of values; the common-channel rule
  above is what darknet computes otherwise, and what is computed here.
"""
from . import register
from .base import Layer, darknet_float, fmt_shape
from .batchnorm import accumulate, image_input, layer_params
from .route import source_delta
from ..activations import read_activation
from ..backend import channel_factor

WEIGHTS_TYPES = {"none": 0, "per_feature": 1, "per_layer": 1, "per_channel": 2}
WEIGHTS_NORMALIZATIONS = {"none": 0, "relu": 1, "avg_relu": 1, "softmax": 2}
NORMALIZATION_NAMES = ("none", "relu", "softmax")   # the ops' names of weights_normalization 0, 1, 2


@register("shortcut")
class Shortcut(Layer):
    kind = "shortcut"

    def configure(self, s, ctx):
        self.activation = read_activation(s, "linear")
        self.weights_type = WEIGHTS_TYPES[s.get_str("weights_type", "none", choices=tuple(WEIGHTS_TYPES))]
        self.weights_normalization = WEIGHTS_NORMALIZATIONS[
            s.get_str("weights_normalization", "none", choices=tuple(WEIGHTS_NORMALIZATIONS))]
        indexes = s.get_int_list("from")
        if indexes is None:
            raise s.error(None, "expected from=... (the layers to add)")
        self.input_layers = [ctx.resolve(s, "from", i) for i in indexes]
        self.source_shapes = [ctx.layers[i].output_shape for i in self.input_layers]
        for i in self.input_layers:
            other = ctx.layers[i]
            if (other.out_w, other.out_h) != (self.w, self.h):
                raise s.error("from", f"expected layer {i} to have this layer's width and height; "
                                      f"got {other.out_w} x {other.out_h} x {other.out_c} to add to "
                                      f"{self.w} x {self.h} x {self.c} (darknet stops on an assertion here)")

    @property
    def nweights(self):
        n = len(self.input_layers)
        return {0: 0, 1: n + 1, 2: (n + 1) * self.c}[self.weights_type]

    @property
    def bflops(self):
        value = self.out_w * self.out_h * self.out_c * len(self.input_layers) / 1e9
        return darknet_float(value * 2 if self.weights_type else value)

    def weight_layout(self):
        return [("weights", (self.nweights,))] if self.nweights else []

    @property
    def train_floats(self):
        return self.outputs if self.activation in ("swish", "mish") else 0

    # -- compute ------------------------------------------------------------------------------------
    def _normalized(self, net):
        """(raw weights, normalized weights), both (n+1, 1 or c), or (None, None) without weights."""
        if not self.weights_type:   # (nweights builds a dict: this runs at every forward)
            return None, None
        raw = layer_params(self, self, ("weights",), net.ops)["weights"].reshape(len(self.input_layers) + 1, -1)
        return raw, net.ops.shortcut_weights(raw, NORMALIZATION_NAMES[self.weights_normalization])

    def _sources(self, net):
        """The `from` layers and their outputs as (batch, c_i, h, w)."""
        layers = [net.layers[i] for i in self.input_layers]
        return layers, [other.output.reshape(other.output.shape[0], other.out_c, self.h, self.w) for other in layers]

    def forward(self, x, net):
        self._raw_normalized = self._normalized(net)   # backward uses them too
        self._z = net.ops.shortcut(image_input(self, x), self._sources(net)[1], self._raw_normalized[1])
        return net.ops.activate(self._z, self.activation)

    def backward(self, x, net):
        ops = net.ops
        dz = ops.activate_backward(self._z, self.delta.reshape(self._z.shape), self.activation)
        layers, sources = self._sources(net)
        deltas = [source_delta(other, ops.xp).reshape(src.shape) for other, src in zip(layers, sources)]
        raw, wn = self._raw_normalized
        dx, gwn = ops.shortcut_backward(dz, image_input(self, x), sources, wn, deltas)
        if gwn is not None:
            grad = ops.shortcut_weights_backward(raw, wn, gwn, NORMALIZATION_NAMES[self.weights_normalization])
            accumulate(self.grads, "weights", grad, (self.nweights,))
        return dx.reshape(x.shape)

    def row(self):
        froms = "".join(f"{i}, " for i in self.input_layers)
        return (f"Shortcut Layer: {froms} wt = {self.weights_type}, wn = {self.weights_normalization}, "
                f"outputs:{fmt_shape(*self.output_shape)} {self.bflops:5.3f} BF")

    def notes(self):
        return [f" ({fmt_shape(*self.input_shape)}) + ({fmt_shape(*shape)}) "
                for shape in self.source_shapes if shape != self.input_shape]

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        _, wn = self._normalized(graph.net)
        wn = None if wn is None else graph.numpy(wn)
        x = graph.image_input(self)
        z = x if wn is None else graph.mul(x, channel_factor(wn[0], self.c))
        for k, i in enumerate(self.input_layers):
            other = graph.net.layers[i]
            src = graph.image(*graph.source(i), other.out_c, self.h, self.w)
            m = min(self.c, other.out_c)
            src = graph.slice(src, 1, 0, m) if other.out_c > m else src
            if wn is not None:
                src = graph.mul(src, channel_factor(wn[k + 1], m))
            if m < self.c:   # a `from` layer with fewer channels adds to the first ones only
                src = graph.pad_channels(src, self.c - m)
            z = graph.op("Add", [z, src], "add")
        return graph.activation(z, self.activation), (self.c, self.h, self.w)
