"""[dropout]: drops inputs with `probability` (default .2) in training, identity in inference; DropBlock
with dropblock=1 and dropblock_size_rel/abs. It works in place on its input's buffer (darknet shares it).

Compute (forward_dropout_layer, backward_dropout_layer; ops.dropout): inference is the identity. Training
takes r uniform in [0, 1) per value and outputs 0 where r < probability, else value * scale with
scale = 1/(1 - probability); backward applies the same mask and scale to the gradient. r comes from a
counter-based generator, a hash of (mask seed, value index) (backend.dropout_uniform, and the same in the CUDA
kernel), so that every engine draws the same mask and backward recomputes it instead of keeping it: each
training forward draws a new 63-bit mask seed (`self.mask_seed`) from `self.rng` (a numpy Generator, settable).
Differences from darknet:
- darknet draws r with rand() (CPU) or cuRAND (GPU) and keeps it in l.rand; the masks differ, not their law;
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
        self.mask_seed = None   # the seed of the last training forward's mask (None after an inference forward)

    @property
    def output_floats(self):
        return 0

    @property
    def train_floats(self):
        return 0   # backward recomputes the mask from its seed

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
            self.mask_seed = None
            return x
        if self.dropblock:
            raise DarknetError(f"layer {self.index} dropout: DropBlock (dropblock=1) is not supported in training "
                               f"by the CPU engine (darknet's CPU drops single values here, its GPU drops blocks)")
        self.mask_seed = int(self.rng.integers(2 ** 63))
        return net.ops.dropout(x, self.probability, self.mask_seed)

    def backward(self, x, net):
        dy = self.delta.reshape(x.shape)
        if self.mask_seed is None:
            return dy
        return net.ops.dropout(dy, self.probability, self.mask_seed)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        return graph.input(self)   # the identity in inference
