"""[dropout]: drops inputs with `probability` (default .2) in training, identity in inference; DropBlock
with dropblock=1 and dropblock_size_rel/abs. It works in place on its input's buffer (darknet shares it)."""
from . import register
from .base import Layer


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
