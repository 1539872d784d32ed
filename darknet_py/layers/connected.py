"""[connected] / [conn]: fully connected layer on the flattened input.

Darknet facts (parse_connected, make_connected_layer): output=1, activation=logistic, batch_normalize=0;
output shape 1 x 1 x output; darknet counts no BFLOPS for it (its Total BFLOPS leaves it out), but the FMA
column does. Weights file: biases[out]; weights[out, in]; if batch_normalize: scales, rolling_mean,
rolling_variance [out]. Files written with major or minor > 1000 store weights transposed.
"""
from . import register
from .base import Layer
from ..activations import read_activation


@register("connected", "conn")
class Connected(Layer):
    kind = "connected"
    needs_image = False

    def configure(self, s, ctx):
        self.units = s.get_int("output", 1, minimum=1)
        self.activation = read_activation(s, "logistic")
        self.batch_normalize = s.get_int("batch_normalize", 0, minimum=0, maximum=1)
        self.out_w = self.out_h = 1
        self.out_c = self.units

    @property
    def fma(self):
        return self.inputs * self.units

    def weight_layout(self):
        n = self.units
        layout = [("biases", (n,)), ("weights", (n, self.inputs))]
        if self.batch_normalize:
            layout += [("scales", (n,)), ("rolling_mean", (n,)), ("rolling_variance", (n,))]
        return layout

    @property
    def train_floats(self):
        return 2 * self.outputs if self.batch_normalize else 0

    def row(self):
        return f"connected                            {self.inputs:4d}  ->  {self.units:4d}"
