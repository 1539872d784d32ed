"""[reorg3d]: space-to-depth (or depth-to-space with reverse=1) by `stride`, darknet's make_reorg_layer:
out = w/stride x h/stride x c*stride^2 (reverse: w*stride x h*stride x c/stride^2)."""
from . import register
from .base import Layer, fmt_shape


class Reorganize(Layer):
    """Shape logic shared by [reorg3d] and [reorg] (they differ in element order and printing)."""

    def configure(self, s, ctx):
        self.stride = s.get_int("stride", 1, minimum=1)
        self.reverse = s.get_int("reverse", 0)
        st = self.stride
        if self.reverse:
            if self.c % (st * st):
                raise s.error("stride", f"expected stride^2={st * st} to divide the {self.c} input channels (reverse=1)")
            self.out_w, self.out_h, self.out_c = self.w * st, self.h * st, self.c // (st * st)
        else:
            if self.w % st or self.h % st:
                raise s.error("stride", f"expected stride={st} to divide the {self.w}x{self.h} input")
            self.out_w, self.out_h, self.out_c = self.w // st, self.h // st, self.c * st * st


@register("reorg3d")
class Reorg3d(Reorganize):
    kind = "reorg3d"

    def row(self):
        return f"reorg                    /{self.stride:2d} {fmt_shape(self.w, self.h, self.c)} -> {fmt_shape(*self.output_shape)}"
