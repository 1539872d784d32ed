"""Darknet's [yolo] training loss (AlexeyAB src/yolo_layer.c forward_yolo_layer, process_batch,
delta_yolo_box, delta_yolo_class; src/box.c box_iou/giou/diou/ciou and dx_box_iou).

Inputs: the layer's activated output per image, (anchors, 5+classes, h, w) with x, y (already logistic and
scale_x_y), w, h (raw), objectness, classes; and the truth per image, (max_boxes, 5) rows of normalized
x, y, w, h, class, ended by the first row whose x is 0 (darknet's `if (!truth.x) break`).

Darknet's delta has the sign "target - output" and backward_yolo_layer adds it unchanged to the previous
layer's delta, i.e. it is minus the gradient with respect to the layer's input (the logits). `yolo_delta`
returns darknet's delta; the layer hands the engine its negative as d(loss)/d(input).

Per image, as process_batch:
1. every prediction: objectness delta obj_normalizer*(0 - obj), cleared (or with objectness_smooth raised to
   obj_normalizer*(iou - obj)) when its best IoU with a truth exceeds ignore_thresh and some class
   probability > .25; a best IoU above truth_thresh trains that prediction as a positive too;
2. every truth: cell (int(x*w), int(y*h)); the best anchor among all `num` by shape IoU; when it is one of this
   head's `mask`: box delta (scale 2 - w*h, iou_normalizer, iou_loss mse/giou/diou/ciou/iou), objectness
   delta obj_normalizer*(1 - obj), class deltas; with iou_thresh < 1 also every other masked anchor whose
   shape IoU (iou_thresh_kind) exceeds iou_thresh;
3. with iou_thresh < 1, box deltas of a prediction are divided by the number of classes it was trained for.
Class deltas: y - p (label_smooth_eps: y*(1-eps) + .5*eps), focal_loss: darknet's alpha=.5 focal gradient;
counters_per_class gives class multipliers (max count / count, at most max_delta) that scale the box,
objectness and class deltas; darknet applies cls_normalizer only together with those multipliers.
Box deltas with an IoU loss are fixed for NaN/inf and clipped to max_delta (mse ones are not), as darknet.
Reported cost (show_details=1): sum(delta^2) for mse, else iou_normalizer * mean(1 - giou) (giou) or
mean(1 - iou) (others) over the trained boxes, plus obj_normalizer * sum(delta^2 without box deltas).
"""
import math

import numpy as np

from .errors import DarknetError

CLASS_MATCH_THRESH = 0.25     # compare_yolo_class: a prediction "matches" when a class probability > .25
FOCAL_ALPHA = 0.5
PI = math.pi                  # darknet's M_PI (math.h; its 3.141592 fallback is for compilers without it)


# -- boxes (x, y, w, h), darknet's src/box.c -----------------------------------------------------------------
def overlap(x1, w1, x2, w2):
    left = np.maximum(x1 - w1 / 2, x2 - w2 / 2)
    right = np.minimum(x1 + w1 / 2, x2 + w2 / 2)
    return right - left


def box_iou(a, b):
    """IoU of boxes given as (x, y, w, h) tuples of arrays (broadcast); 0 where they do not intersect."""
    w = overlap(a[0], a[2], b[0], b[2])
    h = overlap(a[1], a[3], b[1], b[3])
    inter = np.where((w < 0) | (h < 0), 0.0, w * h)
    union = a[2] * a[3] + b[2] * b[3] - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter == 0) | (union == 0), 0.0, inter / np.where(union == 0, 1, union))


def _enclosing(a, b):
    """(width, height) of the smallest box holding a and b (box_c)."""
    w = max(a[0] + a[2] / 2, b[0] + b[2] / 2) - min(a[0] - a[2] / 2, b[0] - b[2] / 2)
    h = max(a[1] + a[3] / 2, b[1] + b[3] / 2) - min(a[1] - a[3] / 2, b[1] - b[3] / 2)
    return w, h


def box_intersection(a, b):
    w = overlap(a[0], a[2], b[0], b[2])
    h = overlap(a[1], a[3], b[1], b[3])
    return 0.0 if w < 0 or h < 0 else w * h


def box_giou(a, b):
    w, h = _enclosing(a, b)
    iou = float(box_iou(a, b))
    c = w * h
    if c == 0:
        return iou
    union = a[2] * a[3] + b[2] * b[3] - box_intersection(a, b)
    return iou - (c - union) / c


def _iou_and_diagonal(a, b):
    """IoU of a and b and the squared diagonal of their enclosing box (diou, ciou)."""
    w, h = _enclosing(a, b)
    return float(box_iou(a, b)), w * w + h * h


def box_diou(a, b):
    iou, c = _iou_and_diagonal(a, b)
    if c == 0:
        return iou
    d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    return iou - (d / c) ** 0.6      # darknet's box_diou uses the power .6


def _aspect_term(truth, pred):
    """4/pi^2 (atan(wt/ht) - atan(wp/hp))^2 and the atan difference."""
    diff = math.atan(_div(truth[2], truth[3])) - math.atan(_div(pred[2], pred[3]))
    return 4 / (PI * PI) * diff * diff, diff


def box_ciou(a, b):
    iou, c = _iou_and_diagonal(a, b)
    if c == 0:
        return iou
    d = ((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / c
    ar_loss, _ = _aspect_term(b, a)
    alpha = ar_loss / (1 - iou + ar_loss + 0.000001)
    return iou - (d + alpha * ar_loss)


BOX_IOU_KINDS = {"iou": lambda a, b: float(box_iou(a, b)), "giou": box_giou, "diou": box_diou, "ciou": box_ciou}


def dx_box_iou(pred, truth, kind):
    """Darknet's dx_box_iou: the gradient of IoU (and of the giou/diou/ciou terms) with respect to the
    predicted box, as darknet returns it: (d/dx, d/dy, d/dw, d/dh) where dw, dh are not halved."""
    px, py, pw, ph = pred
    tx, ty, tw, th = truth
    p_t, p_b = min(py - ph / 2, py + ph / 2), max(py - ph / 2, py + ph / 2)
    p_l, p_r = min(px - pw / 2, px + pw / 2), max(px - pw / 2, px + pw / 2)
    t_t, t_b, t_l, t_r = ty - th / 2, ty + th / 2, tx - tw / 2, tx + tw / 2
    X = (p_b - p_t) * (p_r - p_l)
    Xhat = (t_b - t_t) * (t_r - t_l)
    Ih = min(p_b, t_b) - max(p_t, t_t)
    Iw = min(p_r, t_r) - max(p_l, t_l)
    I = Iw * Ih
    U = X + Xhat - I
    S = (px - tx) ** 2 + (py - ty) ** 2
    giou_Cw = max(p_r, t_r) - min(p_l, t_l)
    giou_Ch = max(p_b, t_b) - min(p_t, t_t)
    giou_C = giou_Cw * giou_Ch
    dX = {"t": -(p_r - p_l), "b": p_r - p_l, "l": -(p_b - p_t), "r": p_b - p_t}
    dI = {"t": -Iw if p_t > t_t else 0.0, "b": Iw if p_b < t_b else 0.0,
          "l": -Ih if p_l > t_l else 0.0, "r": Ih if p_r < t_r else 0.0}
    dU = {k: dX[k] - dI[k] for k in dX}
    dC = {"t": -giou_Cw if p_t < t_t else 0.0, "b": giou_Cw if p_b > t_b else 0.0,
          "l": -giou_Ch if p_l < t_l else 0.0, "r": giou_Ch if p_r > t_r else 0.0}
    p = {k: _div((U * dI[k]) - (I * dU[k]), U * U) if U > 0 else 0.0 for k in dX}
    # darknet's corner selection (a no-op for positive w, h, kept for its order of assignments)
    top_lt = (py - ph / 2) < (py + ph / 2)
    left_lt = (px - pw / 2) < (px + pw / 2)
    p["t"] = p["t"] if top_lt else p["b"]
    p["b"] = p["b"] if top_lt else p["t"]
    p["l"] = p["l"] if left_lt else p["r"]
    p["r"] = p["r"] if left_lt else p["l"]
    if kind == "giou":
        giou = {k: _div((giou_C * dU[k]) - (U * dC[k]), giou_C * giou_C) for k in dX}
        if giou_C > 0:
            p = {k: p[k] + giou[k] for k in p}
        if Iw <= 0 or Ih <= 0:
            p = giou
    Ct, Cb = min(py - ph / 2, ty - th / 2), max(py + ph / 2, ty + th / 2)
    Cl, Cr = min(px - pw / 2, tx - tw / 2), max(px + pw / 2, tx + tw / 2)
    Cw, Ch = Cr - Cl, Cb - Ct
    C = Cw * Cw + Ch * Ch
    # derivatives of the enclosing box's width/height with respect to x, y, w, h
    dCw = ((1 if p_r > t_r else 0) - (1 if p_l < t_l else 0), 0,
           (0.5 if p_r > t_r else 0) - (-0.5 if p_l < t_l else 0), 0)
    dCh = (0, (1 if p_b > t_b else 0) - (1 if p_t < t_t else 0), 0,
           (0.5 if p_b > t_b else 0) - (-0.5 if p_t < t_t else 0))
    d = [p["l"] + p["r"], p["t"] + p["b"], p["r"] - p["l"], p["b"] - p["t"]]
    if kind in ("diou", "ciou"):
        if kind == "ciou":
            ar_loss, diff = _aspect_term(truth, pred)
            alpha = _div(ar_loss, 1 - _div(I, U) + ar_loss + 0.000001)
            ar = (0.0, 0.0, alpha * 8 / (PI * PI) * diff * ph, alpha * -8 / (PI * PI) * diff * pw)
        else:
            ar = (0.0, 0.0, 0.0, 0.0)
        # gradient of the normalized centre distance S / C
        dist = [_div(2 * (tx - px) * C - (2 * Cw * dCw[0] + 2 * Ch * dCh[0]) * S, C * C),
                _div(2 * (ty - py) * C - (2 * Cw * dCw[1] + 2 * Ch * dCh[1]) * S, C * C),
                _div((2 * Cw * dCw[2] + 2 * Ch * dCh[2]) * S, C * C),
                _div((2 * Cw * dCw[3] + 2 * Ch * dCh[3]) * S, C * C)]
        if C > 0:
            d = [d[k] + dist[k] + ar[k] for k in range(4)]
        if Iw <= 0 or Ih <= 0:
            d = [dist[k] + ar[k] for k in range(4)]
    return d


def _div(a, b):
    """a / b with C's float semantics for b == 0 (inf or nan, which darknet then zeroes)."""
    if b:
        return a / b
    return math.nan if a == 0 else math.copysign(math.inf, a)


def _finite(v):
    return 0.0 if math.isnan(v) or math.isinf(v) else v


def classes_multipliers(counters, max_delta):
    """get_classes_multipliers: max count / count per class (counts below 1 count as 1), at most max_delta."""
    if counters is None:
        return None
    counts = [max(1, c) for c in counters]
    top = max(counts)
    return [min(top / c, max_delta) for c in counts]


class _Image:
    """The loss of one image: o (anchors, values, h, w) output, d the same-shaped darknet delta."""

    def __init__(self, layer, o, net_w, net_h):
        self.l, self.o, self.net_w, self.net_h = layer, o, net_w, net_h
        self.d = np.zeros(o.shape, dtype=np.float64)
        self.stats = {"tot_iou": 0.0, "tot_iou_loss": 0.0, "tot_giou_loss": 0.0, "count": 0, "rewritten": 0,
                      "total_bbox": 0}

    def pred_box(self, anchor, mask_n, j, i):
        l, o = self.l, self.o
        x, y, w, h = (float(o[mask_n, k, j, i]) for k in range(4))
        aw, ah = l.anchors[2 * anchor], l.anchors[2 * anchor + 1]
        if l.new_coords:
            return ((i + x) / l.w, (j + y) / l.h, w * w * 4 * aw / self.net_w, h * h * 4 * ah / self.net_h)
        return ((i + x) / l.w, (j + y) / l.h, math.exp(w) * aw / self.net_w, math.exp(h) * ah / self.net_h)

    def box_delta(self, truth, anchor, mask_n, j, i, scale, iou_normalizer):
        """delta_yolo_box (always accumulating, as every caller in forward_yolo_layer asks)."""
        l, o, d = self.l, self.o, self.d
        if np.any(d[mask_n, :4, j, i]):
            self.stats["rewritten"] += 1
        pred = self.pred_box(anchor, mask_n, j, i)
        iou, giou = float(box_iou(pred, truth)), box_giou(pred, truth)   # the loss line's statistics
        pred = (pred[0], pred[1], pred[2] or 1.0, pred[3] or 1.0)
        x = [float(o[mask_n, k, j, i]) for k in range(4)]
        aw, ah = l.anchors[2 * anchor], l.anchors[2 * anchor + 1]
        if l.iou_loss == "mse":
            t = [truth[0] * l.w - i, truth[1] * l.h - j]
            if l.new_coords:
                t += [math.sqrt(truth[2] * self.net_w / (4 * aw)), math.sqrt(truth[3] * self.net_h / (4 * ah))]
            else:
                t += [math.log(truth[2] * self.net_w / aw), math.log(truth[3] * self.net_h / ah)]
            for k in range(4):
                d[mask_n, k, j, i] += scale * (t[k] - x[k]) * iou_normalizer
        else:
            g = dx_box_iou(pred, truth, l.iou_loss)
            if not l.new_coords:
                g[2] *= math.exp(x[2])
                g[3] *= math.exp(x[3])
            for k in range(4):
                v = _finite(g[k] * iou_normalizer)
                if l.max_delta != float("inf"):
                    v = min(max(v, -l.max_delta), l.max_delta)
                d[mask_n, k, j, i] += v
        self.stats["total_bbox"] += 1
        return iou, giou

    def class_delta(self, mask_n, j, i, class_id):
        """delta_yolo_class; returns the predicted probability of class_id (darknet's avg_cat term)."""
        l, o, d = self.l, self.o, self.d
        eps = l.label_smooth_eps
        mult = l.class_multipliers
        out = o[mask_n, 5:, j, i]
        delta = d[mask_n, 5:, j, i]
        if delta[class_id]:
            y = 1.0 * (1 - eps) + 0.5 * eps if eps else 1.0
            v = y - float(out[class_id])
            if not (math.isnan(v) or math.isinf(v)):
                delta[class_id] = v
            if mult:
                delta[class_id] *= mult[class_id]
            return
        if l.focal_loss:
            pt = float(out[class_id]) + 0.000000000000001
            grad = -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
            for n in range(l.classes):
                delta[n] = ((1.0 if n == class_id else 0.0) - float(out[n])) * FOCAL_ALPHA * grad
            return
        for n in range(l.classes):
            y = 1.0 if n == class_id else 0.0
            if eps:
                y = y * (1 - eps) + 0.5 * eps
            v = y - float(out[n])
            if not (math.isnan(v) or math.isinf(v)):
                delta[n] = v
            if mult and n == class_id:
                delta[n] *= mult[class_id] * l.cls_normalizer

    def train_positive(self, truth, class_id, anchor, mask_n, j, i):
        """A truth assigned to (mask_n, j, i): box, objectness and class deltas, and the statistics."""
        l = self.l
        mult = l.class_multipliers[class_id] if l.class_multipliers else 1.0
        iou, giou = self.box_delta(truth, anchor, mask_n, j, i, 2 - truth[2] * truth[3], l.iou_normalizer * mult)
        s = self.stats
        s["tot_iou"] += iou
        s["tot_iou_loss"] += 1 - iou
        s["tot_giou_loss"] += 1 - giou
        obj = mult * l.obj_normalizer * (1 - float(self.o[mask_n, 4, j, i]))
        if not l.objectness_smooth:
            self.d[mask_n, 4, j, i] = obj
        elif self.d[mask_n, 4, j, i] == 0:
            self.d[mask_n, 4, j, i] = obj
        self.class_delta(mask_n, j, i, class_id)
        s["count"] += 1

    def run(self, truth):
        l, d = self.l, self.d
        boxes = []
        for row in truth:
            if not row[0]:
                break
            boxes.append((tuple(float(v) for v in row[:4]), int(row[4])))
        valid = [(b, c) for b, c in boxes if 0 <= c < l.classes]
        self.predictions(valid)
        for box, class_id in valid:
            self.assign(box, class_id)
        if l.iou_thresh < 1.0:
            trained = d[:, 4] != 0
            classes_in_box = (d[:, 5:] > 0).sum(axis=1)
            divide = trained & (classes_in_box > 0)
            d[:, :4] = np.where(divide[:, None], d[:, :4] / np.maximum(classes_in_box, 1)[:, None], d[:, :4])
        return d

    def predictions(self, valid):
        """Objectness deltas of every prediction (step 1)."""
        l, o, d = self.l, self.o, self.d
        n_idx = np.asarray(l.mask)
        ii = np.arange(l.w)[None, None, :]
        jj = np.arange(l.h)[None, :, None]
        aw = np.asarray(l.anchors, dtype=np.float64)[2 * n_idx][:, None, None]
        ah = np.asarray(l.anchors, dtype=np.float64)[2 * n_idx + 1][:, None, None]
        ox, oy, ow, oh = (o[:, k].astype(np.float64) for k in range(4))
        if l.new_coords:
            pw, ph = ow * ow * 4 * aw / self.net_w, oh * oh * 4 * ah / self.net_h
        else:
            pw, ph = np.exp(ow) * aw / self.net_w, np.exp(oh) * ah / self.net_h
        pred = ((ii + ox) / l.w, (jj + oy) / l.h, pw, ph)
        obj = o[:, 4].astype(np.float64)
        d[:, 4] = l.obj_normalizer * (0 - obj)
        if not valid:
            return
        tb = np.asarray([b for b, _ in valid], dtype=np.float64)
        ious = box_iou(tuple(p[..., None] for p in pred), tuple(tb[:, k] for k in range(4)))
        class_match = (o[:, 5:] > CLASS_MATCH_THRESH).any(axis=1)
        best_iou = ious.max(axis=-1)
        best_match = np.where(class_match, best_iou, 0.0)
        ignore = best_match > l.ignore_thresh
        if l.objectness_smooth:
            d[:, 4] = np.where(ignore, np.maximum(d[:, 4], l.obj_normalizer * (best_match - obj)), d[:, 4])
        else:
            d[:, 4] = np.where(ignore, 0.0, d[:, 4])
        for mask_n, j, i in np.argwhere(best_iou > l.truth_thresh):
            box, class_id = valid[int(np.argmax(ious[mask_n, j, i]))]
            iou = float(best_iou[mask_n, j, i])
            if l.objectness_smooth:
                d[mask_n, 4, j, i] = l.obj_normalizer * (iou * iou - obj[mask_n, j, i])
            else:
                d[mask_n, 4, j, i] = l.obj_normalizer * (1 - obj[mask_n, j, i])
            self.class_delta(mask_n, j, i, class_id)
            mult = l.class_multipliers[class_id] if l.class_multipliers else 1.0
            if l.objectness_smooth:
                d[mask_n, 5 + class_id, j, i] = mult * (iou * iou - float(o[mask_n, 5 + class_id, j, i]))
            self.box_delta(box, l.mask[mask_n], mask_n, j, i, 2 - box[2] * box[3], l.iou_normalizer * mult)

    def assign(self, box, class_id):
        """Step 2 for one truth: its best anchor and, with iou_thresh < 1, the other close ones."""
        l = self.l
        i = min(int(box[0] * l.w), l.w - 1)
        j = min(int(box[1] * l.h), l.h - 1)
        shape = (0.0, 0.0, box[2], box[3])
        anchors = [(0.0, 0.0, l.anchors[2 * n] / self.net_w, l.anchors[2 * n + 1] / self.net_h)
                   for n in range(l.total)]
        best_iou, best_n = 0.0, 0
        for n, a in enumerate(anchors):
            iou = float(box_iou(a, shape))
            if iou > best_iou:
                best_iou, best_n = iou, n
        if best_n in l.mask:
            self.train_positive(box, class_id, best_n, l.mask.index(best_n), j, i)
        if l.iou_thresh < 1.0:
            for n, a in enumerate(anchors):
                if n != best_n and n in l.mask and BOX_IOU_KINDS[l.iou_thresh_kind](a, shape) > l.iou_thresh:
                    self.train_positive(box, class_id, n, l.mask.index(n), j, i)


def yolo_delta(layer, output, truth, net_w, net_h):
    """Darknet's delta of a [yolo] layer for `output` (batch, anchors, 5+classes, h, w) and `truth`
    (batch, max_boxes, 5), with the summed statistics."""
    output = np.asarray(output)
    truth = np.asarray(truth, dtype=np.float64)
    if truth.ndim != 3 or truth.shape[0] != output.shape[0] or truth.shape[2] < 5:
        raise DarknetError(f"layer {layer.index} yolo: truth of shape {truth.shape}; expected (batch="
                           f"{output.shape[0]}, boxes, 5) rows of x, y, w, h, class")
    delta = np.zeros(output.shape, dtype=np.float64)
    stats = {}
    for b in range(output.shape[0]):
        image = _Image(layer, output[b], net_w, net_h)
        delta[b] = image.run(truth[b, :layer.max_boxes])
        for k, v in image.stats.items():
            stats[k] = stats.get(k, 0) + v
    return delta, stats


def yolo_cost(layer, delta, stats):
    """(cost, loss line) as forward_yolo_layer computes and prints them."""
    batch = delta.shape[0]
    count = stats["count"] or 1
    loss = float(np.sum(delta * delta))
    name = {"mse": "mse", "giou": "giou"}.get(layer.iou_loss, "iou")
    head = (f"v3 ({name} loss, Normalizer: (iou: {layer.iou_normalizer:.2f}, obj: {layer.obj_normalizer:.2f}, "
            f"cls: {layer.cls_normalizer:.2f}) Region {layer.index} Avg (IOU: {stats['tot_iou'] / count:f}), "
            f"count: {count}, ")
    if not layer.show_details:
        return loss, head + f"total_loss = {loss / batch:f} "
    classification = layer.obj_normalizer * float(np.sum(delta[:, :, 4:] ** 2))
    iou_loss = loss - classification
    if layer.iou_loss == "mse":
        cost = loss
    else:
        tot = stats["tot_giou_loss"] if layer.iou_loss == "giou" else stats["tot_iou_loss"]
        cost = layer.iou_normalizer * tot / count + classification
    return cost, head + (f"class_loss = {classification / batch:f}, iou_loss = {iou_loss / batch:f}, "
                         f"total_loss = {loss / batch:f} ")
