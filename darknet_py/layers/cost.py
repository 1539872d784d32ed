"""[cost]: training loss on the previous output (darknet parse_cost: type=sse|masked|smooth, scale=1, ratio=0).

Compute: the output is the input, unchanged, and backward passes the gradient through. Darknet's
forward_cost_layer does nothing without truth (its l.output then holds the per-value losses of the last
training step, or zeros) and get_network_output skips [cost] layers, so the network's output is the previous
layer's: returning the input gives exactly that. The loss itself (l2/smooth_l1 against truth, scaled by `scale`
in backward_cost_layer) comes with training.
"""
from . import register
from .base import Layer


@register("cost")
class Cost(Layer):
    kind = "cost"
    needs_image = False

    def configure(self, s, ctx):
        self.cost_type = s.get_str("type", "sse", choices=("sse", "masked", "smooth"))
        self.scale = s.get_float("scale", 1.0)
        self.ratio = s.get_float("ratio", 0.0)

    def row(self):
        return f"cost                                           {self.inputs:4d}"

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        return x

    def backward(self, x, net):
        return self.delta.reshape(x.shape)
