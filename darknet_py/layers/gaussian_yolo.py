"""[Gaussian_yolo]: YOLO head that also predicts the uncertainty of each box coordinate (Gaussian YOLOv3):
(classes + 8 + 1) values per anchor (darknet make_gaussian_yolo_layer). Extra options: uc_normalizer=1,
yolo_point=center|left_top|right_bottom; nms_kind may also be cornersnms.

Compute (forward_gaussian_yolo_layer's CPU activations): per anchor the planes are x, sigma_x, y, sigma_y, w,
sigma_w, h, sigma_h, objectness, classes. The logistic goes on x, sigma_x, y, sigma_y, sigma_w, sigma_h,
objectness and classes; w and h stay raw; then x and y (only, not their sigmas) become
x*scale_x_y - 0.5*(scale_x_y - 1). Backward: the derivative of that map (darknet passes its delta through
unchanged, see yolo.py).
"""
import numpy as np

from . import register
from .yolo import AnchorHead, IOU_LOSSES, anchor_planes, head_backward, head_forward, xy_affine

LOGISTIC_PLANES = [slice(0, 4), 5, 7, slice(8, None)]
SCALED_PLANES = [0, 2]

YOLO_POINTS = {"center": 0, "left_top": 1, "right_bottom": 2}


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
        out = head_forward(anchor_planes(self, x), LOGISTIC_PLANES, SCALED_PLANES, self.scale_x_y, net.ops.xp)
        return out.reshape(out.shape[0], self.c, self.h, self.w)

    def backward(self, x, net):
        planes = anchor_planes(self, x)
        dx = head_backward(planes, self.delta.reshape(planes.shape), LOGISTIC_PLANES, SCALED_PLANES,
                           self.scale_x_y, net.ops.xp)
        return dx.reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        alpha, beta = xy_affine(self.scale_x_y, np.dtype(np.float32))
        out = graph.fixed_activations(graph.image_input(self), self, LOGISTIC_PLANES, SCALED_PLANES, alpha, beta)
        return out, (self.c, self.h, self.w)

    def onnx_boxes(self, graph):
        """get_gaussian_yolo_box and darknet's probability objectness * class * (1 - mean uncertainty)."""
        table, col, row, anchor_w, anchor_h = graph.anchor_table(self)
        point = {"center": 0, "left_top": 1, "right_bottom": -1}[self.yolo_point]
        return graph.decode_boxes(self, table, col, row, anchor_w, anchor_h, xy=(0, 2), wh=(4, 6), obj=8,
                                  classes_start=9, uncertainty=(1, 3, 5, 7), point=point)
