"""[cost]: training loss on the previous output (darknet parse_cost: type=sse|masked|smooth, scale=1, ratio=0)."""
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
