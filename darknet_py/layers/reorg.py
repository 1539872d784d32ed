"""[reorg]: darknet's original (YOLOv2) reorg, make_reorg_old_layer; same shapes as [reorg3d] but darknet's
own element order, which is not ONNX's SpaceToDepth (see reorg3d.py for the exact mapping)."""
from . import register
from .base import fmt_shape
from .reorg3d import Reorganize


@register("reorg")
class Reorg(Reorganize):
    kind = "reorg"

    def reorg_call(self):
        return (self.w, self.h, self.c), self.reverse

    def row(self):
        return (f"reorg_old              /{self.stride:2d}  {fmt_shape(self.w, self.h, self.c)}   ->  "
                f"{fmt_shape(*self.output_shape)}")
