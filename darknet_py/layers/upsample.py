"""[upsample]: nearest-neighbour upsampling by `stride` (default 2); a negative stride downsamples
(darknet make_upsample_layer: out = w*stride, or w/|stride| with reverse). `scale` multiplies the output.

Compute (forward_upsample_layer, src/blas.c upsample_cpu; ops.upsample and ops.downsample):
- upsample: out[c, y, x] = scale * in[c, y/stride, x/stride];
- downsample (negative stride): out[c, y, x] = sum over the stride x stride block of scale * in[c, y*stride + dy,
  x*stride + dx], added in row-major block order: a scaled SUM, not an average (darknet runs upsample_cpu's
  accumulating direction into a zeroed output).
Backward is the adjoint: block sums of scale*delta for upsample, scale*delta repeated for downsample.
Known darknet difference, not reproduced: the downsample backward writes (=) the previous layer's delta
instead of adding to it.
"""
import numpy as np

from . import register
from .base import Layer, fmt_shape
from .batchnorm import image_input


@register("upsample")
class Upsample(Layer):
    kind = "upsample"

    def configure(self, s, ctx):
        stride = s.get_int("stride", 2)
        if stride == 0:
            raise s.error("stride", "expected a non-zero stride (negative downsamples); got 0")
        self.scale = s.get_float("scale", 1.0)
        self.reverse = stride < 0
        self.stride = abs(stride)
        if self.reverse:
            if self.w % self.stride or self.h % self.stride:
                raise s.error("stride", f"expected the {self.w}x{self.h} input to be divisible by {self.stride} "
                                        f"for downsampling; it is not")
            self.out_w, self.out_h = self.w // self.stride, self.h // self.stride
        else:
            self.out_w, self.out_h = self.w * self.stride, self.h * self.stride

    def row(self):
        name = "downsample" if self.reverse else "upsample  "
        return (f"{name}              {self.stride:2d}x  {fmt_shape(self.w, self.h, self.c)} -> "
                f"{fmt_shape(*self.output_shape)}")

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        x = image_input(self, x)
        if self.reverse:
            return net.ops.downsample(x, self.stride, self.scale)
        return net.ops.upsample(x, self.stride, self.scale)

    def backward(self, x, net):
        dy = self.delta.reshape(x.shape[0], self.c, self.out_h, self.out_w)
        if self.reverse:
            return net.ops.upsample(dy, self.stride, self.scale).reshape(x.shape)
        return net.ops.downsample(dy, self.stride, self.scale).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        x = graph.image_input(self)
        s = self.stride
        shape = (self.out_c, self.out_h, self.out_w)
        if self.reverse:   # darknet's scaled block sum = block average * stride^2 * scale
            mean = graph.op("AveragePool", [x], "avgpool", kernel_shape=[s, s], strides=[s, s])
            return graph.mul(mean, np.float32(s * s * np.float32(self.scale))), shape
        out = graph.op("Resize", [x, "", graph.const([1, 1, s, s], "scales")], "upsample", mode="nearest",
                       coordinate_transformation_mode="asymmetric", nearest_mode="floor")
        return (graph.mul(out, np.float32(self.scale)) if self.scale != 1 else out), shape
