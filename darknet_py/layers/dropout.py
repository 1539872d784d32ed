"""[dropout]: drops inputs with `probability` (default .2) in training, identity in inference; DropBlock
with dropblock=1 and dropblock_size_rel/abs. It works in place on its input's buffer (darknet shares it).

Compute (forward_dropout_layer, backward_dropout_layer): inference is the identity. Training draws r uniform
in [0, 1) per value (kept in `self.rand`, darknet's l.rand) and outputs 0 where r < probability, else
value * scale with scale = 1/(1 - probability); backward applies the same mask and scale to the gradient.
`self.rng` (a numpy Generator, settable) draws r.
Differences from darknet:
- darknet overwrites the previous layer's output in place, so a later [route]/[shortcut] reading that layer in
  training sees the dropped values; here the previous output is left unchanged;
- DropBlock (dropblock=1) in training is refused: darknet's CPU forward ignores dropblock and drops single
  values as above, while its GPU (where it trains) drops blocks; inference is the identity either way.
"""
import numpy as np

from . import register
from .base import Layer
from ..errors import DarknetError


@register("dropout")
class Dropout(Layer):
    kind = "dropout"
    needs_image = False

    def configure(self, s, ctx):
        self.probability = s.get_float("probability", 0.2, minimum=0.0, maximum=1.0)
        self.dropblock = s.get_int("dropblock", 0)
        self.dropblock_size_rel = s.get_float("dropblock_size_rel", 0.0)
        self.dropblock_size_abs = int(s.get_float("dropblock_size_abs", 0.0))
        if self.dropblock_size_abs > self.w or self.dropblock_size_abs > self.h:
            self.dropblock_size_abs = min(self.w, self.h)
        if self.dropblock and not self.dropblock_size_rel and not self.dropblock_size_abs:
            self.dropblock_size_abs = 7
        if self.dropblock_size_rel and self.dropblock_size_abs:
            self.dropblock_size_rel = 0.0
        self.rng = np.random.default_rng()
        self.rand = None
        self._keep = None

    @property
    def output_floats(self):
        return 0

    @property
    def train_floats(self):
        return self.inputs   # the random mask

    def row(self):
        n = self.inputs
        if self.dropblock and self.dropblock_size_abs:
            return (f"dropblock    p = {self.probability:.3f}   l.dropblock_size_abs = {self.dropblock_size_abs}    "
                    f"{n:4d}  ->   {n:4d}")
        if self.dropblock:
            return (f"dropblock    p = {self.probability:.3f}   l.dropblock_size_rel = {self.dropblock_size_rel:.2f}    "
                    f"{n:4d}  ->   {n:4d}")
        return f"dropout    p = {self.probability:.3f}        {n:4d}  ->   {n:4d}"

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        if not net.train:
            self._keep = None
            return x
        if self.dropblock:
            raise DarknetError(f"layer {self.index} dropout: DropBlock (dropblock=1) is not supported in training "
                               f"by the CPU engine (darknet's CPU drops single values here, its GPU drops blocks)")
        xp = net.ops.xp
        p = float(np.float32(self.probability))               # darknet keeps the probability in a float
        self.rand = self.rng.random(x.shape)
        self._keep = xp.asarray(self.rand >= p)
        self._scale = x.dtype.type(1.0 / (1.0 - p)) if p < 1 else x.dtype.type(0)
        return xp.where(self._keep, x * self._scale, x.dtype.type(0))

    def backward(self, x, net):
        dy = self.delta.reshape(x.shape)
        if self._keep is None:
            return dy
        return net.ops.xp.where(self._keep, dy * self._scale, dy.dtype.type(0))

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        return graph.input(self)   # the identity in inference
