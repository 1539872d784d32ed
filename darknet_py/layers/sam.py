"""[sam]: spatial attention module, output = from_output * input elementwise (darknet make_sam_layer; the
`from` layer must have this layer's input shape). Darknet prints it as 'scale Layer'."""
from . import register
from .base import Layer
from ..activations import read_activation


@register("sam")
class Sam(Layer):
    kind = "sam"

    def configure(self, s, ctx):
        source = s.get_int("from")
        if source is None:
            raise s.error(None, "expected from=... (the layer to multiply)")
        self.source = ctx.resolve(s, "from", source)
        self.activation = read_activation(s, "linear")
        other = ctx.layers[self.source]
        if other.output_shape != self.input_shape:
            raise s.error("from", f"expected layer {self.source} to have this layer's input shape "
                                  f"{self.w} x {self.h} x {self.c}; got {other.out_w} x {other.out_h} x {other.out_c}")

    def row(self):
        return f"scale Layer: {self.source}"
