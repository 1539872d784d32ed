"""[local_avgpool] / [local_avg]: windowed average pooling, same options and shapes as [maxpool] without
maxpool_depth (darknet parse_local_avgpool). Compute: see maxpool.py (forward_local_avgpool_layer: the sum of the
in-bounds values of each window divided by their count; ops.local_avgpool2d)."""
import numpy as np

from . import register
from .batchnorm import image_input
from .maxpool import Pooling
from ..backend import window_counts


@register("local_avgpool", "local_avg")
class LocalAvgPool(Pooling):
    kind = "local_avgpool"
    label = "avg"

    def forward(self, x, net):
        return net.ops.local_avgpool2d(image_input(self, x), *self._windows(), self.out_h, self.out_w)

    def backward(self, x, net):
        dy = self.delta.reshape(x.shape[0], self.c, self.out_h, self.out_w)
        return net.ops.local_avgpool2d_backward(dy, *self._windows(), self.h, self.w).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        # zero padding, the window average over size*size, then * size*size / (in-bounds count): darknet's
        # sum / count (0 * inf = NaN where a window is entirely outside, as darknet's 0 / 0)
        x = self._onnx_padded(graph, 0.0)
        mean = graph.op("AveragePool", [x], "avgpool", kernel_shape=[self.size] * 2,
                        strides=[self.stride_y, self.stride_x])
        count = window_counts(self.h, self.w, self.size, self.stride_x, self.stride_y, self.offset, self.out_h,
                              self.out_w)
        ratio = np.where(count == 0, np.inf, self.size * self.size / np.maximum(count, 1))
        return graph.mul(mean, ratio.reshape(1, 1, self.out_h, self.out_w)), (self.c, self.out_h, self.out_w)
