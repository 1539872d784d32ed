"""[Gaussian_yolo]: YOLO head that also predicts the uncertainty of each box coordinate (Gaussian YOLOv3):
(classes + 8 + 1) values per anchor (darknet make_gaussian_yolo_layer). Extra options: uc_normalizer=1,
yolo_point=center|left_top|right_bottom; nms_kind may also be cornersnms.

Compute (forward_gaussian_yolo_layer's CPU activations, ops.head_activation): per anchor the planes are x,
sigma_x, y, sigma_y, w, sigma_w, h, sigma_h, objectness, classes. The logistic goes on x, sigma_x, y, sigma_y,
sigma_w, sigma_h, objectness and classes; w and h stay raw; then x and y (only, not their sigmas) become
x*scale_x_y - 0.5*(scale_x_y - 1). Backward: the derivative of that map (darknet passes its delta through
unchanged, see yolo.py).
"""
import numpy as np

from . import register
from .yolo import AnchorHead, IOU_LOSSES, anchor_planes, xy_affine
from ..errors import DarknetError

LOGISTIC_PLANES = [slice(0, 4), 5, 7, slice(8, None)]
SCALED_PLANES = [0, 2]

YOLO_POINTS = {"center": 0, "left_top": 1, "right_bottom": 2}
POINT_SHIFTS = {"center": 0, "left_top": 1, "right_bottom": -1}   # box centre += shift * half its size


@register("Gaussian_yolo")
class GaussianYolo(AnchorHead):
    kind = "Gaussian_yolo"
    coords = 8
    nms_kinds = ("default", "greedynms", "diounms", "cornersnms")

    def configure(self, s, ctx):
        super().configure(s, ctx)
        self.uc_normalizer = s.get_float("uc_normalizer", 1.0)
        self.yolo_point = s.get_str("yolo_point", "center", choices=tuple(YOLO_POINTS))

    def row(self):
        # darknet prints no name for this layer, only its parameters, on the row itself
        return (f"[Gaussian_yolo] iou loss: {self.iou_loss} ({IOU_LOSSES[self.iou_loss]}), "
                f"iou_norm: {self.iou_normalizer:2.2f}, obj_norm: {self.obj_normalizer:2.2f}, "
                f"cls_norm: {self.cls_normalizer:2.2f}, delta_norm: {self.delta_normalizer:2.2f}, "
                f"scale: {self.scale_x_y:2.2f}, point: {YOLO_POINTS[self.yolo_point]}")

    def notes(self):
        return self.nms_note()

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        if net.train and net.truth is not None:
            raise DarknetError(f"{self.section.where()}: training a [Gaussian_yolo] head is not supported yet "
                               f"(darknet_py trains [yolo] and [region] heads); use it for detector test/map")
        out = net.ops.head_activation(anchor_planes(self, x), LOGISTIC_PLANES, SCALED_PLANES,
                                      *xy_affine(self.scale_x_y, x.dtype))
        return out.reshape(out.shape[0], self.c, self.h, self.w)

    def backward(self, x, net):
        planes = anchor_planes(self, x)
        alpha, _ = xy_affine(self.scale_x_y, x.dtype)
        dx = net.ops.head_activation_backward(planes, self.delta.reshape(planes.shape), LOGISTIC_PLANES,
                                              SCALED_PLANES, alpha)
        return dx.reshape(x.shape)

    # -- detection (detection.py) -------------------------------------------------------------------
    def boxes(self, net, im_w, im_h, thresh, hier_thresh=0.5, letter_box=False, batch=0):
        """Darknet's get_gaussian_yolo_detections: as [yolo] with x, y, w, h at values 0, 2, 4, 6 and
        objectness at 8; yolo_point left_top / right_bottom shift the centre by half the size; class
        probabilities are objectness*class*(1 - mean of the four sigmas), > thresh."""
        from ..detection import Detections, anchor_candidates, correct_boxes, scaled_anchor, thresholded
        values, col, row, anchor = anchor_candidates(self, net, 8, thresh, batch)
        boxes = np.empty((len(values), 4), np.float32)
        boxes[:, 2] = scaled_anchor(values[:, 4], self.anchors[0::2], anchor, net.width)
        boxes[:, 3] = scaled_anchor(values[:, 6], self.anchors[1::2], anchor, net.height)
        boxes[:, 0] = (col.astype(np.float32) + values[:, 0]) / np.float32(self.w)
        boxes[:, 1] = (row.astype(np.float32) + values[:, 2]) / np.float32(self.h)
        shift = POINT_SHIFTS[self.yolo_point]
        if shift:
            boxes[:, 0] += np.float32(shift) * boxes[:, 2] / np.float32(2)
            boxes[:, 1] += np.float32(shift) * boxes[:, 3] / np.float32(2)
        objectness = values[:, 8]
        uncertainty = ((values[:, 1] + values[:, 3] + values[:, 5] + values[:, 7]).astype(np.float64) / 4.0)
        uncertainty = uncertainty.astype(np.float32).astype(np.float64)
        probs = ((objectness[:, None] * values[:, 9:]).astype(np.float64) * (1.0 - uncertainty[:, None]))
        probs = thresholded(probs.astype(np.float32), thresh)
        correct_boxes(boxes, im_w, im_h, net.width, net.height, letter_box)
        return Detections(boxes, objectness, probs)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        alpha, beta = xy_affine(self.scale_x_y, np.dtype(np.float32))
        out = graph.fixed_activations(graph.image_input(self), self, LOGISTIC_PLANES, SCALED_PLANES, alpha, beta)
        return out, (self.c, self.h, self.w)

    def onnx_boxes(self, graph):
        """get_gaussian_yolo_box and darknet's probability objectness * class * (1 - mean uncertainty)."""
        table, col, row, anchor_w, anchor_h = graph.anchor_table(self)
        return graph.decode_boxes(self, table, col, row, anchor_w, anchor_h, xy=(0, 2), wh=(4, 6), obj=8,
                                  classes_start=9, uncertainty=(1, 3, 5, 7), point=POINT_SHIFTS[self.yolo_point])
