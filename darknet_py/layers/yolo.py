"""[yolo]: YOLOv3/v4 detection head over the previous convolution's output.

Darknet facts (parse_yolo, make_yolo_layer): classes=20, num=1 (total anchors), mask = anchor indexes used by
this head (default: all), anchors = 2*num numbers; the input must have (classes+5)*len(mask) channels.
Loss options keep darknet's defaults: iou_normalizer .75, obj/cls/delta_normalizer 1, iou_loss mse,
ignore_thresh .5, truth_thresh 1, iou_thresh 1, scale_x_y 1, beta_nms .6, nms_kind default, max_delta inf.

Compute (forward_yolo_layer's CPU activations, ops.head_activation; the training loss, when the network is given
`net.truth`, is darknet's, in darknet_py/yolo_loss.py, computed on the host on every engine as darknet's GPU build
does): the input is (batch, len(mask)*(4+1+classes), h, w), per anchor the planes x, y, w, h, objectness, classes.
Without new_coords: x, y, objectness and classes go through the logistic; w, h stay raw. With new_coords=1 nothing
is activated (the convolution before has the logistic). Then, in both cases, x and y become x*scale_x_y -
0.5*(scale_x_y-1) (scal_add_cpu, applied in forward; get_yolo_box only adds the cell offset). Backward multiplies
the incoming gradient by the derivative of that map. Known darknet difference: backward_yolo_layer adds its delta
to the previous layer's unchanged, because its loss deltas are already taken with respect to the logits; here
delta is d loss / d output (the engine's contract), so the logistic's derivative applies.
"""
import numpy as np

from . import register
from .base import Layer
from .batchnorm import image_input
from ..errors import DarknetError
from ..yolo_loss import classes_multipliers, yolo_cost, yolo_delta


def anchor_planes(layer, x):
    """x as (batch, anchors, values per anchor, h, w)."""
    x = image_input(layer, x)
    return x.reshape(x.shape[0], layer.n, -1, layer.h, layer.w)


def xy_affine(scale_x_y, dtype):
    """darknet's scal_add_cpu arguments for x, y: ALPHA = scale_x_y, BETA = -0.5*(scale_x_y - 1), as floats."""
    alpha = float(np.float32(scale_x_y))
    return dtype.type(alpha), dtype.type(-0.5 * (alpha - 1))


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
            raise s.error(None, f"the previous layer has {self.c} channels; expected "
                                f"filters=(classes+{self.coords + 1})*anchors="
                                f"({self.classes}+{self.coords + 1})*{self.n}={per_anchor * self.n} for "
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
        self.show_details = s.get_int("show_details", 1)
        self.class_multipliers = classes_multipliers(self.counters_per_class, self.max_delta)
        self.loss_line = ""
        for key, default in (("track_history_size", 5), ("dets_for_track", 1), ("dets_for_show", 1)):
            s.get_int(key, default)
        s.get_float("sim_thresh", 0.8); s.get_float("track_ciou_norm", 0.01)
        embedding = s.get_int("embedding_layer", None)
        self.embedding_layer = None if embedding is None else ctx.resolve(s, "embedding_layer", embedding)

    def row(self):
        return "yolo"

    # -- compute ------------------------------------------------------------------------------------
    def _planes(self):
        """(logistic, scaled) value slices of one anchor."""
        if self.new_coords:
            return [], [slice(0, 2)]
        return [slice(0, 2), slice(4, None)], [slice(0, 2)]

    def forward(self, x, net):
        logistic, scaled = self._planes()
        out = net.ops.head_activation(anchor_planes(self, x), logistic, scaled, *xy_affine(self.scale_x_y, x.dtype))
        self.loss_grad = None
        if net.train and net.truth is not None:
            self._loss(out, net.truth, net)
        return out.reshape(out.shape[0], self.c, self.h, self.w)

    def _loss(self, out, truth, net):
        """Darknet's training loss (yolo_loss.py), on the host as in darknet's GPU build: cost, loss line, and
        d(loss)/d(input) = -darknet's delta (darknet adds its delta to the previous layer's unchanged, so it is taken
        with respect to the logits)."""
        if self.map_file:
            raise DarknetError(f"{self.section.path}: [yolo] map={self.map_file}: class maps are not supported "
                               f"in training yet")
        delta, stats = yolo_delta(self, net.ops.to_numpy(out), net.ops.to_numpy(truth), net.width, net.height)
        self.cost, self.loss_line = yolo_cost(self, delta, stats)
        self.loss_grad = net.ops.asarray(-delta).reshape(out.shape[0], self.c, self.h, self.w)

    def backward(self, x, net):
        planes = anchor_planes(self, x)
        logistic, scaled = self._planes()
        alpha, _ = xy_affine(self.scale_x_y, x.dtype)
        dx = net.ops.head_activation_backward(planes, self.delta.reshape(planes.shape), logistic, scaled, alpha)
        return dx.reshape(x.shape)

    def notes(self):
        return [f"[yolo] params: iou loss: {self.iou_loss} ({IOU_LOSSES[self.iou_loss]}), "
                f"iou_norm: {self.iou_normalizer:2.2f}, obj_norm: {self.obj_normalizer:2.2f}, "
                f"cls_norm: {self.cls_normalizer:2.2f}, delta_norm: {self.delta_normalizer:2.2f}, "
                f"scale_x_y: {self.scale_x_y:2.2f}"] + self.nms_note()

    # -- detection (detection.py) -------------------------------------------------------------------
    def boxes(self, net, im_w, im_h, thresh, hier_thresh=0.5, letter_box=False, batch=0):
        """Darknet's get_yolo_detections after a forward: cells with objectness > thresh, box centre
        (col + x)/w, (row + y)/h (x, y already scaled by scale_x_y in forward), size exp(w)*anchor/net_w
        (new_coords: w*w*4*anchor/net_w), probs objectness*class > thresh, mapped back to the image by
        correct_yolo_boxes. Returns detection.Detections."""
        from ..detection import Detections, anchor_candidates, correct_boxes, scaled_anchor, thresholded
        values, col, row, anchor = anchor_candidates(self, net, 4, thresh, batch)
        boxes = np.empty((len(values), 4), np.float32)
        boxes[:, 0] = (col.astype(np.float32) + values[:, 0]) / np.float32(self.w)
        boxes[:, 1] = (row.astype(np.float32) + values[:, 1]) / np.float32(self.h)
        anchors_w, anchors_h = self.anchors[0::2], self.anchors[1::2]
        if self.new_coords:
            boxes[:, 2] = values[:, 2] * values[:, 2] * np.float32(4) * np.asarray(anchors_w, np.float32)[anchor] \
                / np.float32(net.width)
            boxes[:, 3] = values[:, 3] * values[:, 3] * np.float32(4) * np.asarray(anchors_h, np.float32)[anchor] \
                / np.float32(net.height)
        else:
            boxes[:, 2] = scaled_anchor(values[:, 2], anchors_w, anchor, net.width)
            boxes[:, 3] = scaled_anchor(values[:, 3], anchors_h, anchor, net.height)
        objectness = values[:, 4]
        probs = thresholded(objectness[:, None] * values[:, 5:], thresh)
        correct_boxes(boxes, im_w, im_h, net.width, net.height, letter_box)
        return Detections(boxes, objectness, probs)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        logistic, scaled = self._planes()
        alpha, beta = xy_affine(self.scale_x_y, np.dtype(np.float32))
        out = graph.fixed_activations(graph.image_input(self), self, logistic, scaled, alpha, beta)
        return out, (self.c, self.h, self.w)

    def onnx_boxes(self, graph):
        """get_yolo_box (new_coords: size t*t*4*anchor) and darknet's probability objectness * class."""
        table, col, row, anchor_w, anchor_h = graph.anchor_table(self)
        return graph.decode_boxes(self, table, col, row, anchor_w, anchor_h, xy=(0, 1), wh=(2, 3), obj=4,
                                  classes_start=5, square_wh=bool(self.new_coords))
