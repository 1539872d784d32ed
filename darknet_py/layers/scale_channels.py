"""[scale_channels]: multiply an earlier layer's output (`from`) by this layer's input, per channel
(squeeze-and-excitation: the input is 1 x 1 x c) or, with scale_wh=1, per position (the input is w x h x 1).
Darknet facts (parse_scale_channels, make_scale_channels_layer): output shape = the `from` layer's;
activation (default linear) is applied to the product.

Compute (forward_scale_channels_layer): out[b, c, p] = act(in[b, c] * from[b, c, p]); with scale_wh,
out[b, c, p] = act(in[b, p] * from[b, c, p]). Backward: the input gets sum over positions (channels for
scale_wh) of delta * from, the `from` layer's delta gets delta * in (darknet adds both; its gradient of the
activation is taken from the output, here from the product, see activations.py).
"""
from . import register
from .base import Layer
from .route import source_delta
from ..activations import read_activation


@register("scale_channels")
class ScaleChannels(Layer):
    kind = "scale_channels"

    def configure(self, s, ctx):
        source = s.get_int("from")
        if source is None:
            raise s.error(None, "expected from=... (the layer to scale)")
        self.source = ctx.resolve(s, "from", source)
        self.scale_wh = s.get_int("scale_wh", 0)
        self.activation = read_activation(s, "linear")
        other = ctx.layers[self.source]
        self.out_w, self.out_h, self.out_c = other.output_shape
        if not self.scale_wh and not (self.w == 1 and self.h == 1 and self.c == other.out_c):
            raise s.error("from", f"expected a 1 x 1 x {other.out_c} input to scale layer {self.source}'s "
                                  f"channels; got {self.w} x {self.h} x {self.c}")
        if self.scale_wh and not (self.c == 1 and (self.w, self.h) == (other.out_w, other.out_h)):
            raise s.error("from", f"expected a {other.out_w} x {other.out_h} x 1 input (scale_wh=1); "
                                  f"got {self.w} x {self.h} x {self.c}")

    def row(self):
        return f"scale Layer: {self.source}"

    # -- compute ------------------------------------------------------------------------------------
    def _operands(self, x, net):
        other = net.layers[self.source]
        batch = x.shape[0]
        src = other.output.reshape(batch, self.out_c, self.out_h, self.out_w)
        scale = x.reshape(batch, 1, self.out_h, self.out_w) if self.scale_wh else x.reshape(batch, self.c, 1, 1)
        return other, src, scale

    def forward(self, x, net):
        _, src, scale = self._operands(x, net)
        self._z = net.ops.multiply(src, scale)
        return net.ops.activate(self._z, self.activation)

    def backward(self, x, net):
        ops = net.ops
        other, src, scale = self._operands(x, net)
        dz = ops.activate_backward(self._z, self.delta.reshape(self._z.shape), self.activation)
        ops.add_product(source_delta(other, ops.xp), dz, scale)
        return ops.sum_products(dz, src, 1 if self.scale_wh else (2, 3)).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        src = graph.image(*graph.source(self.source), self.out_c, self.out_h, self.out_w)
        name = graph.input(self)[0]
        scale = graph.reshape(name, (1, self.out_h, self.out_w) if self.scale_wh else (self.c, 1, 1))
        z = graph.op("Mul", [scale, src], "scale")
        return graph.activation(z, self.activation), (self.out_c, self.out_h, self.out_w)
