"""[region]: YOLOv2 detection head. Darknet facts (parse_region, make_region_layer): coords=4, classes=20,
num=1, anchors = 2*num numbers; the input must have num*(classes+coords+1) channels; softmax, thresh .5,
the *_scale loss weights (default 1), bias_match, rescore, absolute, random, jitter .2; `tree` names a
hierarchy file for YOLO9000 and `map` a class map."""
from . import register
from .base import Layer


@register("region")
class Region(Layer):
    kind = "region"

    def configure(self, s, ctx):
        self.coords = s.get_int("coords", 4, minimum=1)
        self.classes = s.get_int("classes", 20, minimum=0)
        self.n = s.get_int("num", 1, minimum=1)
        self.max_boxes = s.get_int("max", 200, minimum=1)
        per_anchor = self.classes + self.coords + 1
        if self.c != self.n * per_anchor:
            raise s.error(None, f"the previous layer has {self.c} channels; expected filters=num*(classes+coords+1)"
                                f"={self.n}*({self.classes}+{self.coords}+1)={self.n * per_anchor}")
        self.log = s.get_int("log", 0)
        self.sqrt = s.get_int("sqrt", 0)
        self.softmax = s.get_int("softmax", 0)
        self.focal_loss = s.get_int("focal_loss", 0)
        self.jitter = s.get_float("jitter", 0.2)
        self.resize = s.get_float("resize", 1.0)
        self.rescore = s.get_int("rescore", 0)
        self.thresh = s.get_float("thresh", 0.5)
        self.classfix = s.get_int("classfix", 0)
        self.absolute = s.get_int("absolute", 0)
        self.random = s.get_float("random", 0.0)
        self.coord_scale = s.get_float("coord_scale", 1.0)
        self.object_scale = s.get_float("object_scale", 1.0)
        self.noobject_scale = s.get_float("noobject_scale", 1.0)
        self.mask_scale = s.get_float("mask_scale", 1.0)
        self.class_scale = s.get_float("class_scale", 1.0)
        self.bias_match = s.get_int("bias_match", 0)
        self.tree_file = s.get_str("tree", None)
        self.map_file = s.get_str("map", None)
        anchors = s.get_float_list("anchors", [])
        if anchors and len(anchors) < 2 * self.n:
            raise s.error("anchors", f"expected {2 * self.n} numbers (num={self.n} anchors); got {len(anchors)}")
        self.anchors = anchors[:2 * self.n] or [0.5] * (2 * self.n)

    def row(self):
        return "detection"
