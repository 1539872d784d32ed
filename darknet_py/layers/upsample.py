"""[upsample]: nearest-neighbour upsampling by `stride` (default 2); a negative stride downsamples
(darknet make_upsample_layer: out = w*stride, or w/|stride| with reverse). `scale` multiplies the output."""
from . import register
from .base import Layer, fmt_shape


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
