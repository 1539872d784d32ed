"""[detection]: YOLOv1 head on a flat input of side*side*((1+coords)*num + classes) values
(darknet parse_detection/make_detection_layer: coords=1, classes=1, num=1, side=7, rescore, softmax, sqrt,
forced, the *_scale loss weights, jitter .2, random, reorg).

Compute (forward_detection_layer; ops.softmax): the output is the input, except that with softmax=1 the first
side*side*classes values of each image, one group of `classes` per location, go through a softmax. Output:
(batch, inputs). Backward: the softmax's Jacobian on those values, identity elsewhere (darknet passes its loss
delta through unchanged, see softmax.py).
"""
import numpy as np

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

    # -- compute ------------------------------------------------------------------------------------
    def _classes(self, a):
        """The class values of a (batch, inputs): a (batch, side*side, classes) view."""
        return a[:, :self.side * self.side * self.classes].reshape(a.shape[0], -1, self.classes)

    def forward(self, x, net):
        out = x.reshape(x.shape[0], -1).copy()
        if self.softmax:
            classes = self._classes(out)
            net.ops.softmax(classes, out=classes)
        return out

    def backward(self, x, net):
        dy = self.delta.reshape(x.shape[0], -1)
        if not self.softmax:
            return dy.reshape(x.shape)
        dx = dy.copy()
        net.ops.softmax_backward(self._classes(self.output), self._classes(dy), out=self._classes(dx))
        return dx.reshape(x.shape)

    # -- detection (darknet_py/detection.py) --------------------------------------------------------
    def boxes(self, net, im_w, im_h, thresh, hier_thresh=0.5, letter_box=False, batch=0):
        """Darknet's get_detection_detections: per cell and box, objectness = its scale, centre
        (col + x)/side, (row + y)/side, size w, h (squared when sqrt=1), probs scale*class of the cell
        > thresh; no letterbox correction. Known darknet difference: AlexeyAB's fill_network_boxes passes the
        image size here, giving pixel boxes that its drawing then scales again; they stay relative here."""
        from ..detection import Detections, head_output, thresholded
        out = head_output(self, net, batch).reshape(-1)
        cells = self.side * self.side
        class_probs = out[:cells * self.classes].reshape(cells, self.classes)
        scale = out[cells * self.classes:cells * (self.classes + self.n)]
        raw = out[cells * (self.classes + self.n):].reshape(cells * self.n, 4)
        cell = np.arange(cells * self.n) // self.n
        col, row = (cell % self.side).astype(np.float32), (cell // self.side).astype(np.float32)
        boxes = np.empty((len(raw), 4), np.float32)
        boxes[:, 0] = (raw[:, 0] + col) / np.float32(self.side)
        boxes[:, 1] = (raw[:, 1] + row) / np.float32(self.side)
        power = 2.0 if self.sqrt else 1.0
        boxes[:, 2:] = np.power(raw[:, 2:].astype(np.float64), power).astype(np.float32)
        probs = thresholded(scale[:, None] * class_probs[cell], thresh)
        return Detections(boxes, scale, probs)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        flat = graph.flatten(graph.input(self)[0])
        if not self.softmax:
            return flat, (self.inputs,)
        n = self.side * self.side * self.classes
        classes = graph.reshape(graph.slice(flat, 1, 0, n), (self.side * self.side, self.classes))
        classes = graph.reshape(graph.op("Softmax", [classes], "softmax", axis=2), (n,))
        return graph.concat([classes, graph.slice(flat, 1, n, None)], 1), (self.inputs,)
