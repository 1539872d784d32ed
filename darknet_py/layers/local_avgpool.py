"""[local_avgpool] / [local_avg]: windowed average pooling, same options and shapes as [maxpool] without
maxpool_depth (darknet parse_local_avgpool). Compute: see maxpool.py (forward_local_avgpool_layer: the sum of the
in-bounds values of each window divided by their count)."""
import functools

import numpy as np

from . import register
from .batchnorm import image_input
from .maxpool import Pooling, _valid_counts


@register("local_avgpool", "local_avg")
class LocalAvgPool(Pooling):
    kind = "local_avgpool"
    label = "avg"

    @functools.cached_property
    def _counts(self):
        """In-bounds taps per output position, (out_h, out_w), at least 1; and where that count is 0. NumPy,
        computed once: it depends on the geometry only."""
        off = self.padding // 2
        rows = _valid_counts(self.h, self.out_h, off, self.stride_y, self.size)
        cols = _valid_counts(self.w, self.out_w, off, self.stride_x, self.size)
        count = np.outer(rows, cols)
        return np.maximum(count, 1), count == 0

    def forward(self, x, net):
        xp = net.ops.xp
        x = image_input(self, x)
        padded = self._pad(x, x.dtype.type(0), xp)
        total = xp.zeros(x.shape[:2] + (self.out_h, self.out_w), dtype=x.dtype)
        for tap in self._taps():                     # darknet's summation order: row n, then column m
            total += padded[tap]
        count, empty = self._counts
        out = total / xp.asarray(count, dtype=x.dtype)
        if empty.any():
            out[:, :, xp.asarray(empty)] = xp.nan    # darknet: 0 / 0
        return out

    def backward(self, x, net):
        xp = net.ops.xp
        off, ext_h, ext_w, _, _ = self._geometry()
        count = xp.asarray(self._counts[0], dtype=self.delta.dtype)
        dy = self.delta.reshape(x.shape[0], self.c, self.out_h, self.out_w) / count
        dpadded = xp.zeros((x.shape[0], self.c, ext_h, ext_w), dtype=dy.dtype)
        for tap in self._taps():
            dpadded[tap] += dy
        return self._unpad(dpadded, xp).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        # zero padding, the window average over size*size, then * size*size / (in-bounds count): darknet's
        # sum / count (0 * inf = NaN where a window is entirely outside, as darknet's 0 / 0)
        x = self._onnx_padded(graph, 0.0)
        mean = graph.op("AveragePool", [x], "avgpool", kernel_shape=[self.size] * 2,
                        strides=[self.stride_y, self.stride_x])
        count, empty = self._counts
        ratio = np.where(empty, np.inf, self.size * self.size / count)
        return graph.mul(mean, ratio.reshape(1, 1, self.out_h, self.out_w)), (self.c, self.out_h, self.out_w)
