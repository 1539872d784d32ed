"""[avgpool] / [avg]: global average pooling to 1 x 1 x c (darknet make_avgpool_layer; no options)."""
from . import register
from .base import Layer


@register("avgpool", "avg")
class AvgPool(Layer):
    kind = "avgpool"

    def configure(self, s, ctx):
        self.out_w = self.out_h = 1

    @property
    def fma(self):
        return 0

    def row(self):
        return f"avg                          {self.w:4d} x{self.h:4d} x{self.c:4d} ->   {self.c:4d}"
