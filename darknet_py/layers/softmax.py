"""[softmax] / [soft]: softmax over each of `groups` equal slices of the input (darknet parse_softmax:
groups=1, temperature=1, spatial=0, noloss=0; `tree` names a hierarchy file for YOLO9000).

Compute (forward_softmax_layer, src/blas.c softmax_cpu/softmax; ops.softmax): each image's flat input is cut
into `groups` consecutive slices of inputs/groups values; in each, out = e / sum(e) with e = exp(x/temperature -
max/temperature). Backward is the softmax's Jacobian: dx = y * (dy - sum(dy * y)) / temperature.
Loss (forward with net.truth, unless noloss=1; softmax_x_ent_cpu; ops.softmax_cross_entropy): cost = sum over
values with truth != 0 of -log(p) (not weighted by the truth value: with label smoothing darknet's reported loss
counts every class fully), and the loss gradient with respect to the inputs is p - truth (darknet's delta, truth -
p, with the gradient's sign). It is a true gradient of the cost for one-hot truth. In that mode backward returns
the incoming delta unchanged plus p - truth, as backward_softmax_layer does: darknet adds a following [cost]
layer's delta to the softmax's delta and passes the sum back without the softmax Jacobian.
Known darknet differences:
- without truth, backward_softmax_layer still adds its delta unchanged; here delta is then d loss / d output
  (the engine's contract, used for gradient checks and custom losses), hence the Jacobian;
- `spatial` (a per-position softmax over channels) exists only in darknet's GPU forward, its CPU forward
  ignores it; `tree` needs the hierarchy file: the CPU engine refuses both rather than guess.
"""
from . import register
from .base import Layer
from ..errors import DarknetError


def loss_truth(layer, truth, output):
    """net.truth as an array of the layer output's shape, or an error naming the layer."""
    if truth.size != output.size:
        raise DarknetError(f"layer {layer.index} {layer.kind}: truth of {truth.size} values for an output of "
                           f"{output.size} ({output.shape[0]} images x {output.size // output.shape[0]}); the "
                           f".data classes and the network's outputs must agree")
    return truth.reshape(output.shape)


@register("softmax", "soft")
class Softmax(Layer):
    kind = "softmax"
    needs_image = False

    def configure(self, s, ctx):
        self.groups = s.get_int("groups", 1, minimum=1)
        if self.inputs % self.groups:
            raise s.error("groups", f"expected groups to divide the {self.inputs} inputs; got {self.groups}")
        self.temperature = s.get_float("temperature", 1.0)
        if self.temperature == 0:
            raise s.error("temperature", "expected a non-zero temperature; got 0")
        self.tree_file = s.get_str("tree", None)
        self.spatial = s.get_float("spatial", 0.0)
        self.noloss = s.get_int("noloss", 0)

    def row(self):
        return f"softmax                                        {self.inputs:4d}"

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        if self.tree_file:
            raise DarknetError(f"layer {self.index} softmax: tree={self.tree_file} (hierarchical softmax) is not "
                               f"supported by the CPU engine yet")
        if self.spatial:
            raise DarknetError(f"layer {self.index} softmax: spatial={self.spatial:g} is not supported by the CPU "
                               f"engine (darknet's CPU forward ignores it; its GPU takes a softmax over channels "
                               f"at every position)")
        self._y = net.ops.softmax(x.reshape(x.shape[0], self.groups, -1), self.temperature)
        y = self._y.reshape(x.shape)
        self.loss_grad = None
        if net.truth is not None and not self.noloss:
            self.cost, self.loss_grad = net.ops.softmax_cross_entropy(y, loss_truth(self, net.truth, y))
        return y

    def backward(self, x, net):
        if self.loss_grad is not None:
            # darknet's backward_softmax_layer passes later layers' deltas through unchanged: its loss delta
            # (p - truth, Network.backward adds it) already stands for the softmax's gradient
            return self.delta.reshape(x.shape)
        dy = self.delta.reshape(self._y.shape)
        return net.ops.softmax_backward(self._y, dy, self.temperature).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        if self.tree_file:
            raise graph.unsupported(self, "tree", self.tree_file, "hierarchical softmax is not run by the CPU engine")
        if self.spatial:
            raise graph.unsupported(self, "spatial", f"{self.spatial:g}", "not run by the CPU engine")
        name, shape = graph.input(self)
        grouped = graph.reshape(name, (self.groups, self.inputs // self.groups))
        if self.temperature != 1:
            grouped = graph.op("Div", [grouped, graph.const(self.temperature)], "temperature")
        y = graph.op("Softmax", [grouped], "softmax", axis=2)
        return graph.reshape(y, shape), shape
