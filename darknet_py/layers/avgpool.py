"""[avgpool] / [avg]: global average pooling to 1 x 1 x c (darknet make_avgpool_layer; no options).
Compute (forward_avgpool_layer): per image and channel, the sum of its h*w values divided by h*w; backward
spreads each gradient evenly, delta/(h*w), over the h*w inputs."""
from . import register
from .base import Layer
from .batchnorm import image_input


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

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        return net.ops.avgpool(image_input(self, x))

    def backward(self, x, net):
        return net.ops.avgpool_backward(self.delta, self.h, self.w).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        return graph.op("GlobalAveragePool", [graph.image_input(self)], "avgpool"), (self.c, 1, 1)
