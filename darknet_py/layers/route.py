"""[route]: concatenate the outputs of earlier layers along channels, optionally keeping one channel group.

Darknet facts (parse_route, make_route_layer): `layers` is required (negative = relative); all inputs must have
the same width and height; out_c = sum(c)/groups; group_id (default 0) picks the group.
"""
from . import register
from .base import Layer, fmt_shape


@register("route")
class Route(Layer):
    kind = "route"
    needs_image = False

    def configure(self, s, ctx):
        indexes = s.get_int_list("layers")
        if indexes is None:
            raise s.error(None, "expected layers=... (the layers to concatenate)")
        self.input_layers = [ctx.resolve(s, "layers", i) for i in indexes]
        self.groups = s.get_int("groups", 1, minimum=1)
        self.group_id = s.get_int("group_id", 0, minimum=0)
        if self.group_id >= self.groups:
            raise s.error("group_id", f"expected group_id < groups={self.groups}; got {self.group_id}")
        s.get_int("stream", -1); s.get_int("wait_stream", -1)
        first = ctx.layers[self.input_layers[0]]
        channels = 0
        for i in self.input_layers:
            other = ctx.layers[i]
            if (other.out_w, other.out_h) != (first.out_w, first.out_h):
                raise s.error("layers", f"expected inputs of the same width and height; layer {self.input_layers[0]} "
                                        f"is {first.out_w}x{first.out_h}, layer {i} is {other.out_w}x{other.out_h}")
            channels += other.out_c
        if channels % self.groups:
            raise s.error("groups", f"expected groups to divide the {channels} concatenated channels; got {self.groups}")
        self.w, self.h = first.out_w, first.out_h
        self.out_w, self.out_h, self.out_c = first.out_w, first.out_h, channels // self.groups
        self.c = self.out_c
        self.inputs = sum(ctx.layers[i].outputs for i in self.input_layers)

    @property
    def input_shape(self):
        return (self.w, self.h, self.out_c * self.groups)

    def row(self):
        n = len(self.input_layers)
        text = "route " + "".join(f" {i}" for i in self.input_layers)
        text += " \t    " if n > 3 else " \t            " if n > 1 else " \t\t            "
        text += "           " + (f"{self.group_id}/{self.groups}" if self.groups > 1 else "   ")
        return text + f" -> {fmt_shape(*self.output_shape)} "
