"""[region]: YOLOv2 detection head. Darknet facts (parse_region, make_region_layer): coords=4, classes=20,
num=1, anchors = 2*num numbers; the input must have num*(classes+coords+1) channels; softmax, thresh .5,
the *_scale loss weights (default 1), bias_match, rescore, absolute, random, jitter .2; `tree` names a
hierarchy file for YOLO9000 and `map` a class map.

Compute (forward_region_layer, CPU; ops.region_activation): darknet first transposes the input with flatten(): its
l.output is, per image, for each position (row-major), for each anchor, the coords+classes+1 values of that anchor
(the input is num planes of coords+classes+1 channels). Then only the objectness (value 4) goes through the
logistic, and with softmax=1 the classes (values 5..) through a softmax; x and y stay raw (get_region_box applies
the logistic when decoding) and so do w, h. The output here is that buffer, flat: (batch, outputs) in darknet's
order. Backward un-transposes the gradient through the derivative of those activations. Known darknet differences:
darknet hard-codes values 4 and 5 (coords = 4; other coords are refused here), tree= (YOLO9000's hierarchical
softmax) is refused by the CPU engine for now, and backward_region_layer on the CPU adds its delta (in the
transposed order) to the previous layer's delta without un-transposing it (the GPU version does un-transpose).
Training (a forward with truth): darknet's region loss, region_loss.py, computed on the host on every engine
(darknet's GPU build copies the output to the host for it too).
"""
import numpy as np

from . import register
from .base import Layer
from .batchnorm import image_input
from ..activations import activate
from ..errors import DarknetError
from ..region_loss import region_cost, region_delta


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
        self.loss_line = ""

    def row(self):
        return "detection"

    # -- compute ------------------------------------------------------------------------------------
    def forward(self, x, net):
        if self.tree_file:
            raise DarknetError(f"layer {self.index} region: tree={self.tree_file} (hierarchical softmax) is not "
                               f"supported by the CPU engine yet")
        if self.coords != 4:
            raise DarknetError(f"layer {self.index} region: coords={self.coords}; darknet's forward hard-codes "
                               f"objectness at value 4 and classes from value 5 (coords=4), the only layout run here")
        out = net.ops.region_activation(image_input(self, x), self.n, self.softmax)
        self.loss_grad = None
        if net.train and net.truth is not None:
            self._loss(out, net.truth, net)
        return out.reshape(out.shape[0], -1)

    def _loss(self, out, truth, net):
        """Darknet's training loss (region_loss.py), on the host as in darknet's GPU build: cost, its printed line,
        and d(loss)/d(input) = -darknet's delta, which is already taken with respect to the logits."""
        delta, stats = region_delta(self, net.ops.to_numpy(out), net.ops.to_numpy(truth), net.seen)
        self.cost, self.loss_line = region_cost(self, delta, stats)
        size = self.coords + self.classes + 1
        grad = -delta.reshape(out.shape[0], self.h * self.w, self.n * size).transpose(0, 2, 1)
        self.loss_grad = net.ops.asarray(grad)

    def backward(self, x, net):
        size = self.coords + self.classes + 1
        rows = (x.shape[0], self.h * self.w, self.n, size)
        dx = net.ops.region_activation_backward(image_input(self, x), self.output.reshape(rows),
                                                self.delta.reshape(rows), self.n, self.softmax)
        return dx.reshape(x.shape)

    # -- detection (detection.py) -------------------------------------------------------------------
    def boxes(self, net, im_w, im_h, thresh, hier_thresh=0.5, letter_box=False, batch=0):
        """Darknet's custom_get_region_detections: every cell and anchor (objectness 1), centre
        (col + logistic(x))/w, (row + logistic(y))/h, size exp(w)*anchor/w (DOABS), probs scale*class
        > thresh (classfix=-1 zeroes scales below .5), then correct_yolo_boxes."""
        from ..detection import Detections, correct_boxes, head_output, scaled_anchor, thresholded
        values = head_output(self, net, batch).reshape(self.h * self.w * self.n, -1)
        index = np.arange(len(values))
        cell, anchor = np.divmod(index, self.n)
        col, row = cell % self.w, cell // self.w
        boxes = np.empty((len(values), 4), np.float32)
        xy = activate(values[:, :2], "logistic", np)
        boxes[:, 0] = (col.astype(np.float32) + xy[:, 0]) / np.float32(self.w)
        boxes[:, 1] = (row.astype(np.float32) + xy[:, 1]) / np.float32(self.h)
        boxes[:, 2] = scaled_anchor(values[:, 2], self.anchors[0::2], anchor, self.w)
        boxes[:, 3] = scaled_anchor(values[:, 3], self.anchors[1::2], anchor, self.h)
        scale = values[:, 4]
        if self.classfix == -1:
            scale = np.where(scale < np.float32(0.5), np.float32(0), scale)
        probs = thresholded(scale[:, None] * values[:, 5:5 + self.classes], thresh)
        correct_boxes(boxes, im_w, im_h, net.width, net.height, letter_box)
        return Detections(boxes, np.ones(len(values), np.float32), probs)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        if self.tree_file:
            raise graph.unsupported(self, "tree", self.tree_file, "hierarchical softmax is not run by the CPU engine")
        if self.coords != 4:
            raise graph.unsupported(self, "coords", self.coords, "darknet's forward hard-codes coords=4")
        size = self.coords + self.classes + 1
        t = graph.reshape(graph.image_input(self), (self.n * size, self.h * self.w))
        t = graph.reshape(graph.op("Transpose", [t], "transpose", perm=[0, 2, 1]), (self.h * self.w, self.n, size))
        parts = [graph.slice(t, 3, 0, 4), graph.op("Sigmoid", [graph.slice(t, 3, 4, 5)], "objectness")]
        if self.classes:
            classes = graph.slice(t, 3, 5, None)
            parts.append(graph.op("Softmax", [classes], "softmax", axis=3) if self.softmax else classes)
        return graph.reshape(graph.concat(parts, 3), (self.outputs,)), (self.outputs,)

    def onnx_boxes(self, graph):
        """Decoded boxes and scores in darknet's get_region_box way (anchors in grid cells), from this layer's
        output, in its (position, anchor) order."""
        size = self.coords + self.classes + 1
        table = graph.reshape(graph.source(self.index)[0], (self.h * self.w * self.n, size))
        location = np.repeat(np.arange(self.h * self.w), self.n)
        anchors = np.asarray(self.anchors, np.float64).reshape(-1, 2)[np.tile(np.arange(self.n), self.h * self.w)]
        return graph.decode_boxes(self, table, location % self.w, location // self.w,
                                  anchors[:, 0] * graph.net.width / self.w, anchors[:, 1] * graph.net.height / self.h,
                                  xy=(0, 1), wh=(2, 3), obj=4, classes_start=5, sigmoid_xy=True)
