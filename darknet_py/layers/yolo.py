"""[yolo]: YOLOv3/v4 detection head over the previous convolution's output.

Darknet facts (parse_yolo, make_yolo_layer): classes=20, num=1 (total anchors), mask = anchor indexes used by
this head (default: all), anchors = 2*num numbers; the input must have (classes+5)*len(mask) channels.
Loss options keep darknet's defaults: iou_normalizer .75, obj/cls/delta_normalizer 1, iou_loss mse,
ignore_thresh .5, truth_thresh 1, iou_thresh 1, scale_x_y 1, beta_nms .6, nms_kind default, max_delta inf.
"""
from . import register
from .base import Layer

IOU_LOSSES = {"iou": 0, "giou": 1, "mse": 2, "diou": 3, "ciou": 4}
NMS_KINDS = {"default": 0, "greedynms": 1, "diounms": 2, "cornersnms": 3}


class AnchorHead(Layer):
    """What [yolo] and [Gaussian_yolo] share: anchors, mask, classes and the training options."""

    coords = 4
    nms_kinds = ("default", "greedynms", "diounms")

    def configure(self, s, ctx):
        self.classes = s.get_int("classes", 20, minimum=1)
        self.total = s.get_int("num", 1, minimum=1)
        self.mask = s.get_int_list("mask", list(range(self.total)))
        for m in self.mask:
            if m < 0:
                raise s.error("mask", f"expected anchor indexes 0..{self.total - 1} (num={self.total}); got {m}")
            if m >= self.total:   # darknet loads this and reads past its anchors when it detects
                s.warn("mask", f"anchor index {m} is beyond num={self.total}: this head cannot decode boxes")
        self.n = len(self.mask)
        self.max_boxes = s.get_int("max", 200, minimum=1)
        per_anchor = self.classes + self.coords + 1
        if self.outputs != self.w * self.h * self.n * per_anchor:
            raise s.error(None, f"the previous layer has {self.c} channels; expected filters=(classes+{self.coords + 1})"
                                f"*anchors=({self.classes}+{self.coords + 1})*{self.n}={per_anchor * self.n} for "
                                f"classes={self.classes} and mask={','.join(map(str, self.mask))}")
        anchors = s.get_float_list("anchors", [])
        if anchors and len(anchors) != 2 * self.total:
            s.warn("anchors", f"expected {2 * self.total} numbers (num={self.total} anchors); got {len(anchors)}: "
                              f"as darknet, missing ones are 0.5 and extra ones ignored")
        # darknet initializes every anchor to .5 and overwrites as many as the cfg gives
        self.anchors = (anchors + [0.5] * (2 * self.total))[:2 * self.total]
        self.max_delta = s.get_float("max_delta", float("inf"))
        self.counters_per_class = s.get_int_list("counters_per_class", None)
        if self.counters_per_class is not None and len(self.counters_per_class) != self.classes:
            raise s.error("counters_per_class", f"expected {self.classes} values (classes); "
                                                f"got {len(self.counters_per_class)}")
        self.label_smooth_eps = s.get_float("label_smooth_eps", 0.0)
        self.scale_x_y = s.get_float("scale_x_y", 1.0)
        self.objectness_smooth = s.get_int("objectness_smooth", 0)
        self.iou_normalizer = s.get_float("iou_normalizer", 0.75)
        self.obj_normalizer = s.get_float("obj_normalizer", 1.0)
        self.cls_normalizer = s.get_float("cls_normalizer", 1.0)
        self.delta_normalizer = s.get_float("delta_normalizer", 1.0)
        self.iou_loss = s.get_str("iou_loss", "mse", choices=tuple(IOU_LOSSES))
        self.iou_thresh_kind = s.get_str("iou_thresh_kind", "iou", choices=("iou", "giou", "diou", "ciou"))
        self.beta_nms = s.get_float("beta_nms", 0.6)
        self.nms_kind = s.get_str("nms_kind", "default", choices=self.nms_kinds)
        self.jitter = s.get_float("jitter", 0.2)
        self.resize = s.get_float("resize", 1.0)
        self.focal_loss = s.get_int("focal_loss", 0)
        self.ignore_thresh = s.get_float("ignore_thresh", 0.5)
        self.truth_thresh = s.get_float("truth_thresh", 1.0)
        self.iou_thresh = s.get_float("iou_thresh", 1.0)
        self.random = s.get_float("random", 0.0)
        self.map_file = s.get_str("map", None)

    def nms_note(self):
        if self.nms_kind == "default":
            return []
        return [f"nms_kind: {self.nms_kind} ({NMS_KINDS[self.nms_kind]}), beta = {self.beta_nms:f} "]


@register("yolo")
class Yolo(AnchorHead):
    kind = "yolo"

    def configure(self, s, ctx):
        super().configure(s, ctx)
        self.new_coords = s.get_int("new_coords", 0, minimum=0, maximum=1)
        s.get_int("show_details", 1)
        for key, default in (("track_history_size", 5), ("dets_for_track", 1), ("dets_for_show", 1)):
            s.get_int(key, default)
        s.get_float("sim_thresh", 0.8); s.get_float("track_ciou_norm", 0.01)
        embedding = s.get_int("embedding_layer", None)
        self.embedding_layer = None if embedding is None else ctx.resolve(s, "embedding_layer", embedding)

    def row(self):
        return "yolo"

    def notes(self):
        return [f"[yolo] params: iou loss: {self.iou_loss} ({IOU_LOSSES[self.iou_loss]}), "
                f"iou_norm: {self.iou_normalizer:2.2f}, obj_norm: {self.obj_normalizer:2.2f}, "
                f"cls_norm: {self.cls_normalizer:2.2f}, delta_norm: {self.delta_normalizer:2.2f}, "
                f"scale_x_y: {self.scale_x_y:2.2f}"] + self.nms_note()
