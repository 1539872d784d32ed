"""[maxpool] / [max]: max pooling, also across channels (maxpool_depth).

Darknet facts (parse_maxpool, make_maxpool_layer): stride=1, stride_x/stride_y default to stride,
size defaults to stride, padding defaults to size-1 (total, split evenly: offset -padding/2);
output (w + padding - size)/stride_x + 1; with maxpool_depth the output is w x h x out_channels.
BFLOPS = size*size*c*out_h*out_w / 1e9.
"""
from . import register
from .base import Layer, darknet_float, fmt_shape


class Pooling(Layer):
    """Windowed pooling shared by [maxpool] and [local_avgpool] (darknet builds both with make_maxpool_layer)."""

    label = None
    depth_options = False

    def configure(self, s, ctx):
        stride = s.get_int("stride", 1, minimum=1)
        self.stride_x = s.get_int("stride_x", stride, minimum=1)
        self.stride_y = s.get_int("stride_y", stride, minimum=1)
        self.size = s.get_int("size", stride, minimum=1)
        self.padding = s.get_int("padding", self.size - 1, minimum=0)
        self.maxpool_depth = 0
        if self.depth_options:
            self.maxpool_depth = s.get_int("maxpool_depth", 0)
            self.out_channels = s.get_int("out_channels", 1, minimum=1)
            if s.get_int("antialiasing", 0):
                raise s.error("antialiasing", "antialiasing is not supported by darknet_py yet")
            self.zero_nonmax = s.get_int("maxpool_zero_nonmax", 0)
        if self.maxpool_depth:
            self.out_c = self.out_channels
        else:
            self.out_w = (self.w + self.padding - self.size) // self.stride_x + 1
            self.out_h = (self.h + self.padding - self.size) // self.stride_y + 1
            if self.out_w < 1 or self.out_h < 1:
                raise s.error("size", f"expected size <= input + padding; got size={self.size} on a "
                                      f"{self.w}x{self.h} input with padding {self.padding}")

    @property
    def bflops(self):
        return darknet_float(self.size * self.size * self.c * self.out_h * self.out_w / 1e9)

    def row(self):
        k = self.size
        if self.maxpool_depth:
            head = f"{self.label}-depth         {k:2d}x{k:2d}/{self.stride_x:2d}   "
        elif self.stride_x == self.stride_y:
            head = f"{self.label}               {k:2d}x{k:2d}/{self.stride_x:2d}   "
        else:
            head = f"{self.label}              {k:2d}x{k:2d}/{self.stride_x:2d}x{self.stride_y:2d} "
        return head + f"{fmt_shape(self.w, self.h, self.c)} -> {fmt_shape(*self.output_shape)} {self.bflops:5.3f} BF"


@register("maxpool", "max")
class MaxPool(Pooling):
    kind = "maxpool"
    label = "max"
    depth_options = True
