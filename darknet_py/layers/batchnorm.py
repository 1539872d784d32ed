"""[batchnorm]: standalone batch normalization over channels (darknet make_batchnorm_layer; no options).
Weights file: biases, scales, rolling_mean, rolling_variance, c values each."""
from . import register
from .base import Layer


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
