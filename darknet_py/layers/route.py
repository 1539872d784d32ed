"""[route]: concatenate the outputs of earlier layers along channels, optionally keeping one channel group.

Darknet facts (parse_route, make_route_layer): `layers` is required (negative = relative); all inputs must have
the same width and height; out_c = sum(c)/groups; group_id (default 0) picks the group.

Compute (forward_route_layer, backward_route_layer): for each input layer in order, with input_size its outputs
per image, part = input_size/groups (integer division), the values [part*group_id, part*(group_id+1)) of its
flat per-image output are appended. That is the group_id-th channel chunk of each input (not of the
concatenation), and when an input's channels are not divisible by groups darknet still cuts its flat buffer
at part*group_id, mid-channel: reproduced as is. Output values no input fills (the parts sum to less than
outputs only then) stay 0, as in darknet's zero-initialized buffer. Backward adds the gradient of each part
into its input layer's delta. (ops.route / ops.route_backward: strided 2-D copies.)
"""
from . import register
from .base import Layer, fmt_shape


def source_delta(layer, xp):
    """`layer.delta` (d loss / d its output) as a C-contiguous array, so that reshaped views of it write
    through: what route/shortcut/sam/scale_channels add their gradients for an earlier layer into."""
    delta = layer.delta
    if delta is None:
        delta = xp.zeros(layer.output.shape, dtype=layer.output.dtype)
    elif not delta.flags.c_contiguous:
        delta = xp.ascontiguousarray(delta)
    layer.delta = delta
    return delta


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
        # (layer index, start in its flat per-image output, part size) for each input, as darknet cuts them
        self._cuts = [(i, ctx.layers[i].outputs // self.groups * self.group_id, ctx.layers[i].outputs // self.groups)
                      for i in self.input_layers]

    @property
    def input_shape(self):
        return (self.w, self.h, self.out_c * self.groups)

    def row(self):
        n = len(self.input_layers)
        text = "route " + "".join(f" {i}" for i in self.input_layers)
        text += " \t    " if n > 3 else " \t            " if n > 1 else " \t\t            "
        text += "           " + (f"{self.group_id}/{self.groups}" if self.groups > 1 else "   ")
        return text + f" -> {fmt_shape(*self.output_shape)} "

    # -- compute ------------------------------------------------------------------------------------
    def _parts(self, net):
        """(layer, part size, start in its flat per-image output) for each input, as darknet cuts them."""
        return [(net.layers[i], part, start) for i, start, part in self._cuts]

    def forward(self, x, net):
        layers = net.layers
        batch = layers[self.input_layers[0]].output.shape[0]
        pieces = [(layers[i].output.reshape(batch, -1), start, part) for i, start, part in self._cuts]
        return net.ops.route(pieces, self.outputs).reshape(batch, self.out_c, self.out_h, self.out_w)

    def backward(self, x, net):
        pieces = []
        for other, part, start in self._parts(net):
            delta = source_delta(other, net.ops.xp)
            pieces.append((delta.reshape(delta.shape[0], -1), start, part))
        net.ops.route_backward(self.delta.reshape(self.delta.shape[0], -1), pieces)
        return None

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        """Channel slices when every part is whole channels of an image; else darknet's flat cuts."""
        parts = []
        for other, part, start in self._parts(graph.net):
            name, shape = graph.source(other.index)
            plane = other.out_w * other.out_h
            parts.append((name, shape, part, start, plane))
        if all(len(shape) == 3 and part % plane == 0 and start % plane == 0 for _, shape, part, start, plane in parts):
            pieces = [graph.slice(name, 1, start // plane, (start + part) // plane)
                      for name, shape, part, start, plane in parts]
            return graph.concat(pieces, 1), (self.out_c, self.out_h, self.out_w)
        pieces = [graph.slice(graph.flatten(name), 1, start, start + part) for name, _, part, start, _ in parts]
        flat = graph.concat(pieces, 1)
        filled = sum(part for _, _, part, _, _ in parts)
        if filled < self.outputs:   # darknet leaves the rest of its zeroed buffer
            flat = graph.pad(flat, [0, 0, 0, self.outputs - filled])
        return graph.reshape(flat, (self.out_c, self.out_h, self.out_w)), (self.out_c, self.out_h, self.out_w)
