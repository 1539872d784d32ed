"""[cost]: training loss on the previous output (darknet parse_cost: type=sse|masked|smooth, scale=1, ratio=0).

Compute: the output is the input, unchanged, and backward passes the gradient through. Darknet's
forward_cost_layer does nothing without truth (its l.output then holds the per-value losses of the last
training step, or zeros) and get_network_output skips [cost] layers, so the network's output is the previous
layer's: returning the input gives exactly that.
Loss (forward with net.truth; forward_cost_layer, l2_cpu, smooth_l1_cpu; ops.cost_loss): with diff = truth - input,
sse: cost = sum diff^2, delta = diff; smooth: |diff| < 1 as sse, else cost 2|diff| - 1 and delta sign(diff);
masked: as sse where truth != -1234 (SECRET_NUM), 0 elsewhere. backward_cost_layer adds scale * delta to the
previous layer's delta: here the gradient's sign, scale * -delta, is added. Darknet's sse delta is half the
true gradient of its cost; after a [softmax] with loss the two deltas add up (softmax.py), so a
softmax + cost classifier trains on (1 + scale) * (p - truth) and reports (cross-entropy + sse) / 2 per image.
"""
from . import register
from .base import Layer
from .softmax import loss_truth


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
        self.loss_grad = None
        if net.truth is not None:
            self.cost, self.loss_grad = net.ops.cost_loss(x, loss_truth(self, net.truth, x), self.cost_type,
                                                          self.scale)
        return x

    def backward(self, x, net):
        return self.delta.reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        return graph.input(self)   # the identity in inference
