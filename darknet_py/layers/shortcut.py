"""[shortcut]: add the outputs of earlier layers (`from`, several allowed) to the previous layer's output,
optionally weighted per layer or per channel.

Darknet facts (parse_shortcut, make_shortcut_layer): activation=linear, weights_type none|per_feature
(=per_layer)|per_channel, weights_normalization none|relu(=avg_relu)|softmax; nweights = n+1 (per_feature)
or (n+1)*c (per_channel), stored in the weights file. Every `from` layer must have this layer's width and
height (darknet asserts; channels may differ and the common channels are added).
BFLOPS = out_w*out_h*out_c*n/1e9, doubled with weights.
"""
from . import register
from .base import Layer, darknet_float, fmt_shape
from ..activations import read_activation

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

    def row(self):
        froms = "".join(f"{i}, " for i in self.input_layers)
        return (f"Shortcut Layer: {froms} wt = {self.weights_type}, wn = {self.weights_normalization}, "
                f"outputs:{fmt_shape(*self.output_shape)} {self.bflops:5.3f} BF")

    def notes(self):
        return [f" ({fmt_shape(*self.input_shape)}) + ({fmt_shape(*shape)}) "
                for shape in self.source_shapes if shape != self.input_shape]
