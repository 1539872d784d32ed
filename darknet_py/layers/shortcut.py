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
  (eps + sum_j exp(w_j - max)), sums over the n+1 layers (per channel for per_channel), eps = 0.0001.
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

WEIGHTS_EPS = 0.0001

WEIGHTS_TYPES = {"none": 0, "per_feature": 1, "per_layer": 1, "per_channel": 2}
WEIGHTS_NORMALIZATIONS = {"none": 0, "relu": 1, "avg_relu": 1, "softmax": 2}


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
        if not self.nweights:
            return None, None
        xp = net.ops.xp
        raw = layer_params(self, self, ("weights",), net.ops)["weights"].reshape(len(self.input_layers) + 1, -1)
        eps = raw.dtype.type(WEIGHTS_EPS)
        if self.weights_normalization == 1:
            r = xp.maximum(raw, 0)
            return raw, r / (eps + xp.sum(r, axis=0, keepdims=True))
        if self.weights_normalization == 2:
            e = xp.exp(raw - xp.max(raw, axis=0, keepdims=True))
            return raw, e / (eps + xp.sum(e, axis=0, keepdims=True))
        return raw, raw

    @staticmethod
    def _scale(w, c):
        """Weights row (1 or c values) as a factor for a (batch, c, h, w) array's first c channels."""
        return w[:c].reshape(1, -1, 1, 1) if w.shape[0] > 1 else w.reshape(1, 1, 1, 1)

    def _sources(self, net):
        """(layer, its output as (batch, c_i, h, w), common channels) for each `from` layer."""
        for i in self.input_layers:
            other = net.layers[i]
            out = other.output.reshape(other.output.shape[0], other.out_c, self.h, self.w)
            yield other, out, min(self.c, other.out_c)

    def forward(self, x, net):
        x = image_input(self, x)
        self._raw_normalized = self._normalized(net)   # backward uses them too
        wn = self._raw_normalized[1]
        z = x * self._scale(wn[0], self.c) if wn is not None else x.copy()
        for k, (other, src, m) in enumerate(self._sources(net)):
            term = src[:, :m] if wn is None else src[:, :m] * self._scale(wn[k + 1], m)
            z[:, :m] += term
        self._z = z
        return net.ops.activate(z, self.activation)

    def backward(self, x, net):
        xp = net.ops.xp
        xi = image_input(self, x)
        dz = net.ops.activate_backward(self._z, self.delta.reshape(self._z.shape), self.activation)
        raw, wn = self._raw_normalized
        dx = dz * self._scale(wn[0], self.c) if wn is not None else dz
        per_channel = wn is not None and wn.shape[1] > 1
        gwn = xp.zeros(wn.shape, dtype=dz.dtype) if wn is not None else None
        if gwn is not None:
            gwn[0] = xp.sum(dz * xi, axis=(0, 2, 3)) if per_channel else xp.sum(dz * xi)
        for k, (other, src, m) in enumerate(self._sources(net)):
            delta = source_delta(other, xp)
            d4 = delta.reshape(delta.shape[0], other.out_c, self.h, self.w)
            d4[:, :m] += dz[:, :m] if wn is None else dz[:, :m] * self._scale(wn[k + 1], m)
            if gwn is not None:
                prod = dz[:, :m] * src[:, :m]
                if per_channel:
                    gwn[k + 1, :m] = xp.sum(prod, axis=(0, 2, 3))
                else:
                    gwn[k + 1] = xp.sum(prod)
        if gwn is not None:
            accumulate(self.grads, "weights", self._raw_gradient(raw, wn, gwn, xp), (self.nweights,))
        return dx.reshape(x.shape)

    def _raw_gradient(self, raw, wn, gwn, xp):
        """d loss / d raw weights from d loss / d normalized weights (columns normalize independently)."""
        if self.weights_normalization == 0:
            return gwn
        dot = xp.sum(gwn * wn, axis=0, keepdims=True)
        eps = raw.dtype.type(WEIGHTS_EPS)
        if self.weights_normalization == 1:
            s = eps + xp.sum(xp.maximum(raw, 0), axis=0, keepdims=True)
            return xp.where(raw > 0, (gwn - dot) / s, raw.dtype.type(0))
        e = xp.exp(raw - xp.max(raw, axis=0, keepdims=True))
        s = eps + xp.sum(e, axis=0, keepdims=True)
        g = wn * (gwn - dot)
        # the subtracted maximum m: d wn_k / d m = -wn_k * eps / s, to the first maximal weight of each column
        first = xp.argmax(raw, axis=0)
        onehot = xp.arange(raw.shape[0]).reshape(-1, 1) == first.reshape(1, -1)
        return g - onehot * (dot * eps / s)

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
        z = x if wn is None else graph.mul(x, self._scale(wn[0], self.c))
        for k, i in enumerate(self.input_layers):
            other = graph.net.layers[i]
            src = graph.image(*graph.source(i), other.out_c, self.h, self.w)
            m = min(self.c, other.out_c)
            src = graph.slice(src, 1, 0, m) if other.out_c > m else src
            if wn is not None:
                src = graph.mul(src, self._scale(wn[k + 1], m))
            if m < self.c:   # a `from` layer with fewer channels adds to the first ones only
                src = graph.pad_channels(src, self.c - m)
            z = graph.op("Add", [z, src], "add")
        return graph.activation(z, self.activation), (self.c, self.h, self.w)
