"""[sam]: spatial attention module, output = from_output * input elementwise (darknet make_sam_layer; the
`from` layer must have this layer's input shape). Darknet prints it as 'scale Layer'.

Compute (forward_sam_layer): out = act(in * from), elementwise. Backward: the input gets delta * from and the
`from` layer's delta gets delta * in. Known darknet difference, not reproduced: backward_sam_layer assigns (=)
the `from` layer's delta instead of adding to it, dropping what later layers had put there.
"""
from . import register
from .base import Layer
from .batchnorm import image_input
from .route import source_delta
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

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        x = image_input(self, x)
        self._z = net.ops.multiply(x, net.layers[self.source].output.reshape(x.shape))
        return net.ops.activate(self._z, self.activation)

    def backward(self, x, net):
        ops = net.ops
        xi = image_input(self, x)
        other = net.layers[self.source]
        dz = ops.activate_backward(self._z, self.delta.reshape(self._z.shape), self.activation)
        ops.add_product(source_delta(other, ops.xp), dz, xi)
        return ops.multiply(dz, other.output.reshape(xi.shape)).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        src = graph.image(*graph.source(self.source), self.c, self.h, self.w)
        z = graph.op("Mul", [graph.image_input(self), src], "sam")
        return graph.activation(z, self.activation), (self.c, self.h, self.w)
