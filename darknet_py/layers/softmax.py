"""[softmax] / [soft]: softmax over each of `groups` equal slices of the input (darknet parse_softmax:
groups=1, temperature=1, spatial=0, noloss=0; `tree` names a hierarchy file for YOLO9000)."""
from . import register
from .base import Layer


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
