"""[softmax] / [soft]: softmax over each of `groups` equal slices of the input (darknet parse_softmax:
groups=1, temperature=1, spatial=0, noloss=0; `tree` names a hierarchy file for YOLO9000).

Compute (forward_softmax_layer, src/blas.c softmax_cpu/softmax): each image's flat input is cut into `groups`
consecutive slices of inputs/groups values; in each, out = e / sum(e) with e = exp(x/temperature -
max/temperature). Backward is the softmax's Jacobian: dx = y * (dy - sum(dy * y)) / temperature.
Known darknet differences:
- backward_softmax_layer adds its delta to the previous layer's unchanged: darknet's delta is set by the
  cross-entropy loss in forward (truth - output), already a gradient with respect to the logits, so it never
  multiplies by the Jacobian. Here delta is d loss / d output (the engine's contract), hence the Jacobian;
- `spatial` (a per-position softmax over channels) exists only in darknet's GPU forward, its CPU forward
  ignores it; `tree` needs the hierarchy file: the CPU engine refuses both rather than guess.
"""
from . import register
from .base import Layer
from ..errors import DarknetError


def softmax_forward(x, axis, temperature, xp):
    """Darknet's softmax() along `axis`: exp(x/t - max/t) normalized by its sum."""
    t = x.dtype.type(temperature)
    e = xp.exp(x / t - xp.max(x, axis=axis, keepdims=True) / t)
    return e / xp.sum(e, axis=axis, keepdims=True)


def softmax_backward(y, dy, axis, temperature, xp):
    """d loss / d x for y = softmax_forward(x, axis, temperature) and d loss / d y = dy."""
    return y * (dy - xp.sum(dy * y, axis=axis, keepdims=True)) / y.dtype.type(temperature)


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
        grouped = x.reshape(x.shape[0], self.groups, -1)
        self._y = softmax_forward(grouped, 2, self.temperature, net.ops.xp)
        return self._y.reshape(x.shape)

    def backward(self, x, net):
        dy = self.delta.reshape(self._y.shape)
        return softmax_backward(self._y, dy, 2, self.temperature, net.ops.xp).reshape(x.shape)
