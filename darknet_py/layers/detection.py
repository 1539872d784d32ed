"""[detection]: YOLOv1 head on a flat input of side*side*((1+coords)*num + classes) values
(darknet parse_detection/make_detection_layer: coords=1, classes=1, num=1, side=7, rescore, softmax, sqrt,
forced, the *_scale loss weights, jitter .2, random, reorg)."""
from . import register
from .base import Layer


@register("detection")
class Detection(Layer):
    kind = "detection"
    needs_image = False

    def configure(self, s, ctx):
        self.coords = s.get_int("coords", 1, minimum=1)
        self.classes = s.get_int("classes", 1, minimum=1)
        self.rescore = s.get_int("rescore", 0)
        self.n = s.get_int("num", 1, minimum=1)
        self.side = s.get_int("side", 7, minimum=1)
        expected = self.side * self.side * ((1 + self.coords) * self.n + self.classes)
        if self.inputs != expected:
            raise s.error(None, f"the previous layer has {self.inputs} outputs; expected side*side*((1+coords)*num"
                                f"+classes)={self.side}*{self.side}*((1+{self.coords})*{self.n}+{self.classes})={expected}")
        self.softmax = s.get_int("softmax", 0)
        self.sqrt = s.get_int("sqrt", 0)
        self.max_boxes = s.get_int("max", 200, minimum=1)
        self.coord_scale = s.get_float("coord_scale", 1.0)
        self.forced = s.get_int("forced", 0)
        self.object_scale = s.get_float("object_scale", 1.0)
        self.noobject_scale = s.get_float("noobject_scale", 1.0)
        self.class_scale = s.get_float("class_scale", 1.0)
        self.jitter = s.get_float("jitter", 0.2)
        self.resize = s.get_float("resize", 1.0)
        self.random = s.get_float("random", 0.0)
        self.reorg = s.get_int("reorg", 0)

    def row(self):
        return "Detection Layer"
