"""Darknet's [region] (YOLOv2) training loss (AlexeyAB src/region_layer.c forward_region_layer,
delta_region_box, delta_region_class; DOABS=1).

Input: the layer's output per image in darknet's transposed order, (h*w, num, 5+classes) with position
j*w + i: x, y, w, h raw, objectness logistic, classes softmax (or raw); the truth (max_boxes, 5) rows of
normalized x, y, w, h, class. Rows with class >= classes are skipped, the first row whose x is 0 ends the list.

Darknet's delta has the sign "target - output" and is already taken with respect to the layer's input (the
logits: its x, y and objectness terms carry the logistic gradient, its class term is the softmax cross-entropy
one), so the layer hands the engine its negative. Per image:
1. every prediction: objectness delta noobject_scale*(0 - obj)*obj*(1-obj) (classfix=-1: (best_iou - obj)...),
   cleared when its best IoU with a truth exceeds thresh (classfix>0 then trains the matched class there);
   while seen < 12800, box delta of scale .01 towards its own anchor centred in its cell;
2. every truth: cell (int(x*w), int(y*h)); the anchor whose predicted (bias_match: prior) shape has the best
   IoU with the truth's; box delta coord_scale*(target - output) written over the step-1 one (x, y through the
   logistic gradient, w, h as log(truth*w/anchor) - raw), objectness object_scale*(1 - obj) (rescore:
   (iou - obj)) times obj*(1-obj), class deltas class_scale*(onehot - p) (focal_loss: darknet's alpha=.5 focal
   gradient).
Cost: sum(delta^2). Darknet indexes the cell with int(x*w) unclamped; a truth with x = 1 is kept in the last
cell here (darknet would write past the row).
"""
import math

import numpy as np

from .errors import DarknetError
from .yolo_loss import FOCAL_ALPHA, box_iou

PRIOR_IMAGES = 12800     # forward_region_layer trains every box towards its prior while seen < 12800
PRIOR_SCALE = 0.01


def _logistic(x):
    return 1 / (1 + np.exp(-x))


def truth_boxes(layer, rows):
    """The truths darknet's loops visit: class >= classes skipped, stop at the first x == 0."""
    boxes = []
    for row in rows[:layer.max_boxes]:
        if int(row[4]) >= layer.classes:
            continue
        if not row[0]:
            break
        boxes.append((tuple(float(v) for v in row[:4]), int(row[4])))
    return boxes


def region_boxes(layer, o, i, j, n):
    """get_region_box (DOABS): (x, y, w, h) of output values o[..., 0:4] of anchor n at column i, row j."""
    bw = np.asarray(layer.anchors[0::2], np.float64)[n]
    bh = np.asarray(layer.anchors[1::2], np.float64)[n]
    return ((i + _logistic(o[..., 0])) / layer.w, (j + _logistic(o[..., 1])) / layer.h,
            np.exp(o[..., 2]) * bw / layer.w, np.exp(o[..., 3]) * bh / layer.h)


def box_delta(layer, truth, o, i, j, n, scale):
    """delta_region_box: darknet's delta of values 0..3 (stacked on the last axis)."""
    bw = np.asarray(layer.anchors[0::2], np.float64)[n]
    bh = np.asarray(layer.anchors[1::2], np.float64)[n]
    sx, sy = _logistic(o[..., 0]), _logistic(o[..., 1])
    delta = np.stack([scale * (truth[0] * layer.w - i - sx) * sx * (1 - sx),
                      scale * (truth[1] * layer.h - j - sy) * sy * (1 - sy),
                      scale * (np.log(truth[2] * layer.w / bw) - o[..., 2]),
                      scale * (np.log(truth[3] * layer.h / bh) - o[..., 3])], axis=-1)
    return delta


def class_delta(layer, p, class_id, scale):
    """delta_region_class without a tree: p the class probabilities (last axis); returns (delta, p[class])."""
    target = np.zeros(p.shape)
    target[..., class_id] = 1
    delta = scale * (target - p)
    if layer.focal_loss:
        pt = p[..., class_id:class_id + 1] + 0.000000000000001
        delta = delta * FOCAL_ALPHA * (-(1 - pt) * (2 * pt * np.log(pt) + pt - 1))
    return delta, p[..., class_id]


class _Image:
    def __init__(self, layer, o, seen):
        self.l, self.o, self.seen = layer, o.astype(np.float64), seen
        self.d = np.zeros(self.o.shape)
        self.stats = dict(iou=0.0, cat=0.0, obj=0.0, anyobj=0.0, recall=0, count=0, class_count=0)

    def run(self, truths):
        self.predictions(truths)
        for box, class_id in truths:
            self.assign(box, class_id)
        return self.d

    def predictions(self, truths):
        l, o, d, s = self.l, self.o, self.d, self.stats
        position = np.arange(l.h * l.w)[:, None]
        i, j, n = position % l.w, position // l.w, np.arange(l.n)[None, :]
        obj = o[..., 4]
        s["anyobj"] += float(obj.sum())
        grad = obj * (1 - obj)
        if truths:
            pred = region_boxes(l, o, i, j, n)
            tb = np.asarray([b for b, _ in truths])
            ious = box_iou(tuple(p[..., None] for p in pred), tuple(tb[:, k] for k in range(4)))
            best_iou, best_t = ious.max(axis=-1), ious.argmax(axis=-1)
        else:
            best_iou, best_t = np.zeros(obj.shape), np.zeros(obj.shape, int)
        if l.classfix == -1:
            d[..., 4] = l.noobject_scale * (best_iou - obj) * grad
        else:
            matched = best_iou > l.thresh
            d[..., 4] = np.where(matched, 0.0, l.noobject_scale * (0 - obj) * grad)
            if l.classfix > 0:
                for p, a in np.argwhere(matched):
                    scale = l.class_scale * (obj[p, a] if l.classfix == 2 else 1)
                    self.train_class(p, a, truths[best_t[p, a]][1], scale)
        if self.seen < PRIOR_IMAGES:
            bw = np.asarray(l.anchors[0::2], np.float64)[n]
            bh = np.asarray(l.anchors[1::2], np.float64)[n]
            prior = ((i + .5) / l.w, (j + .5) / l.h, bw / l.w, bh / l.h)
            d[..., :4] = box_delta(l, prior, o, i, j, n, PRIOR_SCALE)

    def train_class(self, p, a, class_id, scale):
        delta, cat = class_delta(self.l, self.o[p, a, 5:], class_id, scale)
        self.d[p, a, 5:] = delta
        self.stats["cat"] += float(cat)
        self.stats["class_count"] += 1

    def assign(self, box, class_id):
        l, o, d, s = self.l, self.o, self.d, self.stats
        i, j = min(int(box[0] * l.w), l.w - 1), min(int(box[1] * l.h), l.h - 1)
        p = j * l.w + i
        best_iou, best_n = 0.0, 0
        for n in range(l.n):
            if l.bias_match:
                w, h = l.anchors[2 * n] / l.w, l.anchors[2 * n + 1] / l.h
            else:
                w, h = (float(v) for v in region_boxes(l, o[p, n], i, j, n)[2:])
            iou = float(box_iou((0.0, 0.0, w, h), (0.0, 0.0, box[2], box[3])))
            if iou > best_iou:
                best_iou, best_n = iou, n
        d[p, best_n, :4] = box_delta(l, box, o[p, best_n], i, j, best_n, l.coord_scale)
        iou = float(box_iou(region_boxes(l, o[p, best_n], i, j, best_n), box))
        s["recall"] += iou > .5
        s["iou"] += iou
        obj = o[p, best_n, 4]
        s["obj"] += float(obj)
        target = iou if l.rescore else 1.0
        d[p, best_n, 4] = l.object_scale * (target - obj) * obj * (1 - obj)
        self.train_class(p, best_n, class_id, l.class_scale)
        s["count"] += 1


def region_delta(layer, output, truth, seen):
    """Darknet's delta of a [region] layer for `output` (batch, h*w, num, 5+classes) in its transposed order
    and `truth` (batch, boxes, 5), with the summed statistics; `seen` is the network's image count."""
    if layer.map_file:
        raise DarknetError(f"{layer.section.path}: [region] map={layer.map_file}: class maps are not supported "
                           f"in training yet")
    output = np.asarray(output)
    truth = np.asarray(truth, dtype=np.float64)
    if truth.ndim != 3 or truth.shape[0] != output.shape[0] or truth.shape[2] < 5:
        raise DarknetError(f"layer {layer.index} region: truth of shape {truth.shape}; expected (batch="
                           f"{output.shape[0]}, boxes, 5) rows of x, y, w, h, class")
    delta = np.zeros(output.shape)
    stats = {}
    for b in range(output.shape[0]):
        image = _Image(layer, output[b], seen)
        delta[b] = image.run(truth_boxes(layer, truth[b]))
        for k, v in image.stats.items():
            stats[k] = stats.get(k, 0) + v
    return delta, stats


def _ratio(a, b):
    return a / b if b else math.nan      # darknet prints 0/0 as nan


def region_cost(layer, delta, stats):
    """(cost, printed line) as forward_region_layer: cost sum(delta^2)."""
    count, batch = stats["count"], delta.shape[0]
    line = (f"Region Avg IOU: {_ratio(stats['iou'], count):f}, Class: {_ratio(stats['cat'], stats['class_count']):f}, "
            f"Obj: {_ratio(stats['obj'], count):f}, No Obj: {stats['anyobj'] / (layer.w * layer.h * layer.n * batch):f}, "
            f"Avg Recall: {_ratio(stats['recall'], count):f},  count: {count}")
    return float(np.sum(delta * delta)), line
