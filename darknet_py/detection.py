"""Darknet's detection post-processing, as plain functions on NumPy arrays: input images (letterbox_image;
resize_image is imageops'), boxes from every head layer (network_boxes), NMS (nms_sort), the order darknet prints
detections in (printed_detections), and mAP (MapStats, average_precision, label_path, read_truth).

A set of detections is a `Detections`: `boxes` (N, 4) float32 centre x, centre y, width, height relative to
the image (0..1), `objectness` (N,) and `probs` (N, classes), where probs[i, k] is darknet's objectness*class
probability, 0 when at or below the threshold. Arithmetic follows darknet's C types (float32, with the
double-precision steps of its expressions) so that the same outputs give the same boxes and the same ties.
"""
from pathlib import Path

import numpy as np

from .errors import DarknetError
from .imageops import resize_image

HEAD_KINDS = ("yolo", "Gaussian_yolo", "region", "detection")   # layers whose outputs darknet turns into boxes
NMS_DEFAULT_IOU = 0.45
MAP_POINTS = (0, 11, 101)   # -points: area under the curve, VOC2007's 11 recall points, COCO's 101
MAX_NMS_MATRIX = 8192   # boxes up to which NMS precomputes the pairwise overlaps (64 MB of booleans)


# -- input images -----------------------------------------------------------------------------------
def letterbox_size(im_w, im_h, net_w, net_h):
    """The size darknet scales an image to before centring it in the network input (letterbox_image)."""
    if np.float32(net_w) / np.float32(im_w) < np.float32(net_h) / np.float32(im_h):
        return net_w, (im_h * net_w) // im_w
    return (im_w * net_h) // im_h, net_h


def letterbox_image(image, w, h):
    """Darknet's letterbox_image: resize_image keeping the aspect ratio, centred on a 0.5 grey canvas."""
    c, ih, iw = image.shape
    new_w, new_h = letterbox_size(iw, ih, w, h)
    boxed = np.full((c, h, w), 0.5, np.float32)
    x0, y0 = (w - new_w) // 2, (h - new_h) // 2
    boxed[:, y0:y0 + new_h, x0:x0 + new_w] = resize_image(image, new_w, new_h)
    return boxed


def network_input(image, net_w, net_h, letter_box):
    """(1, C, net_h, net_w) float32 network input from a (C, H, W) image, as darknet's detector prepares it."""
    sized = letterbox_image(image, net_w, net_h) if letter_box else resize_image(image, net_w, net_h)
    return sized[None]


# -- detections -------------------------------------------------------------------------------------
class Detections:
    """Candidate boxes of one image: boxes (N, 4) relative x, y, w, h; objectness (N,); probs (N, classes)."""

    __slots__ = ("boxes", "objectness", "probs")

    def __init__(self, boxes, objectness, probs):
        self.boxes = np.asarray(boxes, np.float32).reshape(-1, 4)
        self.objectness = np.asarray(objectness, np.float32).reshape(-1)
        probs = np.asarray(probs, np.float32)
        self.probs = probs.reshape(len(self.boxes), probs.shape[-1] if probs.ndim == 2 else -1)

    def __len__(self):
        return len(self.boxes)

    def take(self, index):
        return Detections(self.boxes[index], self.objectness[index], self.probs[index])

    @staticmethod
    def concatenate(parts, classes):
        parts = [p for p in parts if len(p)]
        if not parts:
            return Detections(np.zeros((0, 4)), np.zeros(0), np.zeros((0, classes)))
        return Detections(np.concatenate([p.boxes for p in parts]), np.concatenate([p.objectness for p in parts]),
                          np.concatenate([p.probs for p in parts]))


def thresholded(probs, thresh):
    """Darknet's `dets.prob[j] = (prob > thresh) ? prob : 0` in float32."""
    probs = np.asarray(probs, np.float32)
    return np.where(probs > np.float32(thresh), probs, np.float32(0))


def correct_boxes(boxes, im_w, im_h, net_w, net_h, letter_box):
    """Darknet's correct_yolo_boxes with relative=1: boxes predicted on the network input (relative to it)
    mapped back to the image, undoing the letterbox offset and scale when `letter_box`. Modifies `boxes`."""
    if letter_box:
        new_w, new_h = letterbox_size(im_w, im_h, net_w, net_h)
    else:
        new_w, new_h = net_w, net_h
    ratio_w, ratio_h = np.float32(new_w) / np.float32(net_w), np.float32(new_h) / np.float32(net_h)
    delta_w, delta_h = np.float32(net_w - new_w), np.float32(net_h - new_h)
    # b.x = (b.x - deltaw/2./netw)/ratiow is evaluated in double, then stored in a float
    boxes[:, 0] = ((boxes[:, 0].astype(np.float64) - delta_w / 2.0 / net_w) / ratio_w).astype(np.float32)
    boxes[:, 1] = ((boxes[:, 1].astype(np.float64) - delta_h / 2.0 / net_h) / ratio_h).astype(np.float32)
    boxes[:, 2] *= np.float32(1) / ratio_w
    boxes[:, 3] *= np.float32(1) / ratio_h
    return boxes


def head_output(layer, net, batch):
    """The layer's output for image `batch` of the last forward, as a NumPy array."""
    if layer.output is None:
        raise DarknetError(f"layer {layer.index} {layer.kind}: no output yet: run net.forward first")
    return np.asarray(net.ops.to_numpy(layer.output)[batch], np.float32)


def anchor_candidates(layer, net, objectness_value, thresh, batch=0):
    """Cells of a yolo-style head (output planes: anchors x values x h x w) in darknet's order, cell by cell
    (row-major) and anchor by anchor within a cell, whose value `objectness_value` is > thresh. Returns
    (values (K, values per anchor), col (K,), row (K,), anchor (K,): index into the layer's anchors)."""
    out = head_output(layer, net, batch).reshape(layer.n, -1, layer.h * layer.w)
    values = out.transpose(2, 0, 1).reshape(-1, out.shape[1])
    keep = np.flatnonzero(values[:, objectness_value] > np.float32(thresh))
    cell, anchor = np.divmod(keep, layer.n)
    return values[keep], cell % layer.w, cell // layer.w, np.asarray(layer.mask, np.int64)[anchor]


def scaled_anchor(raw, anchors, index, size):
    """exp(raw) * anchor / size as darknet evaluates it (exp and the product in double, stored as float)."""
    return (np.exp(raw.astype(np.float64)) * np.asarray(anchors, np.float32)[index].astype(np.float64)
            / size).astype(np.float32)


def detection_heads(net):
    """The layers whose outputs darknet turns into boxes, in network order."""
    return [layer for layer in net.layers if layer.kind in HEAD_KINDS]


def check_detector(net):
    """detection_heads(net), or an error when there is none."""
    heads = detection_heads(net)
    if not heads:
        raise DarknetError(f"{net.cfg_path}: this cfg has no detection layer ([yolo], [Gaussian_yolo], [region] "
                           f"or [detection]) — a classifier? use classifier predict")
    return heads


def last_head(net):
    """The last [yolo], [Gaussian_yolo] or [region] layer, or None: the one whose classes, nms_kind and
    beta_nms darknet's test/map use (test_detector's loop over net.layers) and whose classes, max boxes,
    jitter and resize train_detector reads; an old [detection] layer is not looked at."""
    heads = [layer for layer in detection_heads(net) if layer.kind != "detection"]
    return heads[-1] if heads else None


def nms_layer(net):
    """last_head(net), else the last layer."""
    head = last_head(net)
    return net.layers[-1] if head is None else head


def network_boxes(net, im_w, im_h, thresh, hier_thresh=0.5, letter_box=False, batch=0):
    """Darknet's get_network_boxes (relative=1) after a forward: every head's candidates, in layer order.
    Yolo heads keep cells whose objectness > thresh; region and detection heads keep every cell with a
    class probability > thresh (darknet also keeps the all-zero ones, which no later step uses)."""
    heads = check_detector(net)
    with np.errstate(over="ignore"):   # an overflow is reported below, naming the head
        parts = [layer.boxes(net, im_w, im_h, thresh, hier_thresh=hier_thresh, letter_box=letter_box, batch=batch)
                 for layer in heads]
    for layer, part in zip(heads, parts):
        if not np.isfinite(part.boxes).all():   # exp() of a huge but finite w/h output
            raise DarknetError(f"{net.cfg_path}: boxes of {layer.label} overflow float32 (its width/height outputs "
                               f"are too large): the weights do not fit this cfg, are damaged, or are an "
                               f"untrained initialisation")
    return Detections.concatenate(parts, heads[0].classes)


# -- NMS --------------------------------------------------------------------------------------------
class _Corners:
    """Boxes (x, y, w, h) as darknet's box functions see them: float32 edges, areas and centres."""

    def __init__(self, boxes):
        boxes = np.asarray(boxes, np.float32)
        half_w, half_h = boxes[..., 2] / np.float32(2), boxes[..., 3] / np.float32(2)
        self.x, self.y = boxes[..., 0], boxes[..., 1]
        self.left, self.right = self.x - half_w, self.x + half_w
        self.top, self.bottom = self.y - half_h, self.y + half_h
        self.area = boxes[..., 2] * boxes[..., 3]

    def __getitem__(self, index):
        part = object.__new__(_Corners)
        for key in ("x", "y", "left", "right", "top", "bottom", "area"):
            setattr(part, key, getattr(self, key)[index])
        return part


def _iou(a, b):
    w = np.minimum(a.right, b.right) - np.maximum(a.left, b.left)
    h = np.minimum(a.bottom, b.bottom) - np.maximum(a.top, b.top)
    inter = np.where((w < 0) | (h < 0), np.float32(0), w * h)
    union = a.area + b.area - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where((inter == 0) | (union == 0), np.float32(0), inter / union).astype(np.float32)


def _diou(a, b, beta):
    cw = np.maximum(a.right, b.right) - np.minimum(a.left, b.left)
    ch = np.maximum(a.bottom, b.bottom) - np.minimum(a.top, b.top)
    c = cw * cw + ch * ch
    d = (a.x - b.x) * (a.x - b.x) + (a.y - b.y) * (a.y - b.y)
    iou = _iou(a, b)
    with np.errstate(divide="ignore", invalid="ignore"):
        term = np.power((d / c).astype(np.float64), beta).astype(np.float32)
    return np.where(c == 0, iou, iou - term).astype(np.float32)


def box_iou(a, b):
    """Darknet's box_iou of boxes (x, y, w, h) (any leading shapes that broadcast), float32: 0 when the
    intersection or the union is 0."""
    return _iou(_Corners(a), _Corners(b))


def box_diou(a, b, beta=0.6):
    """Darknet's box_diounms (box_diou when beta = 0.6): IoU minus (centre distance^2 / enclosing-box
    diagonal^2) ** beta; the plain IoU when the enclosing box is a point."""
    return _diou(_Corners(a), _Corners(b), beta)


def nms_sort(dets, thresh=NMS_DEFAULT_IOU, kind="default", beta=0.6):
    """Darknet's do_nms_sort (kind "default") and diounms_sort ("greedynms": DIoU with darknet's fixed 0.6
    exponent, "diounms": DIoU with exponent `beta`, "cornersnms": IoU): boxes with objectness 0 are moved to
    the end (darknet's swap loop) and left alone; then for each class k the others are sorted by probs[:, k]
    (descending, stable as glibc's merge-sort qsort) and each box with a non-zero probability zeroes that
    class in every later box overlapping it by more than `thresh`. Returns the reordered Detections."""
    if kind not in ("default", "greedynms", "diounms", "cornersnms"):
        raise ValueError(f"nms kind {kind!r}: expected default, greedynms, diounms or cornersnms")
    order = list(range(len(dets)))
    k = len(order) - 1
    i = 0
    while i <= k:   # the swap loop of do_nms_sort, which decides the order of ties later on
        if dets.objectness[order[i]] == 0:
            order[i], order[k] = order[k], order[i]
            k -= 1
        else:
            i += 1
    dets = dets.take(np.array(order, dtype=np.int64))
    total = k + 1
    probs = dets.probs.copy()
    corners = _Corners(dets.boxes)
    thresh = np.float32(thresh)
    if kind in ("default", "cornersnms"):
        overlap = _iou
    else:
        exponent = 0.6 if kind == "greedynms" else beta
        overlap = lambda a, b: _diou(a, b, exponent)   # noqa: E731
    # which box suppresses which, computed once for all classes (in row blocks to bound the memory) unless
    # there are too many boxes; then row by row for the boxes that survive
    matrix = None
    if total <= MAX_NMS_MATRIX:
        matrix = np.zeros((total, total), bool)
        for start in range(0, total, 256):
            stop = min(start + 256, total)
            matrix[start:stop] = overlap(corners[start:stop, None], corners[None, :total]) > thresh
    perm = np.arange(len(dets))
    for cls in range(probs.shape[1]):
        head = perm[:total]
        head = head[np.argsort(-probs[head, cls], kind="stable")]
        perm = np.concatenate([head, perm[total:]])
        live = head[probs[head, cls] > 0]   # zeros sort last and never suppress
        boxes = corners[live] if matrix is None else None
        alive = np.ones(len(live), bool)
        for pos in range(len(live) - 1):
            if alive[pos]:
                if matrix is not None:
                    alive[pos + 1:] &= ~matrix[live[pos], live[pos + 1:]]
                else:
                    alive[pos + 1:] &= ~(overlap(boxes[pos], boxes[pos + 1:]) > thresh)
        probs[live[~alive], cls] = 0
    return Detections(dets.boxes[perm], dets.objectness[perm], probs[perm])


def apply_nms(net, dets, thresh=NMS_DEFAULT_IOU):
    """NMS as darknet's detector test/map choose it: nms_kind and beta_nms of nms_layer(net); none when
    thresh is 0."""
    if not thresh:
        return dets
    layer = nms_layer(net)
    return nms_sort(dets, thresh, getattr(layer, "nms_kind", "default"), getattr(layer, "beta_nms", 0.6))


# -- what darknet prints ----------------------------------------------------------------------------
def shown(name):
    """Darknet skips classes whose name starts with 'dont_show' in its printout, drawing and JSON."""
    return not str(name).startswith("dont_show")


def printed_detections(dets, thresh, names):
    """Darknet's draw_detections_v3 text order: boxes with a shown class above `thresh`, sorted by left edge
    (stable); per box its best class first, then the other classes above `thresh` in class order. Returns
    (class_id, prob, box, best_class) tuples; `box` is relative (x, y, w, h)."""
    thresh = np.float32(thresh)
    visible = np.array([shown(n) for n in names], bool)
    candidates = np.where(visible & (dets.probs > thresh), dets.probs, -np.inf)
    rows = np.flatnonzero(np.isfinite(candidates).any(axis=1))
    # first class with the strictly greatest probability, as darknet's '>' scan
    selected = list(zip(rows.tolist(), np.argmax(candidates[rows], axis=1).tolist()))
    lefts = dets.boxes[rows, 0] - dets.boxes[rows, 2] / np.float32(2)
    result = []
    for s in np.argsort(lefts, kind="stable"):
        i, best = selected[s]
        box = tuple(float(v) for v in dets.boxes[i])
        result.append((best, float(dets.probs[i, best]), box, best))
        for cls in np.flatnonzero(dets.probs[i] > thresh).tolist():
            if cls != best:
                result.append((cls, float(dets.probs[i, cls]), box, best))
    return result


# -- mAP --------------------------------------------------------------------------------------------
_LABEL_DIRS = (("/images/train2017/", "/labels/train2017/"), ("/images/val2017/", "/labels/val2017/"),
               ("/JPEGImages/", "/labels/"), ("\\images\\train2017\\", "\\labels\\train2017\\"),
               ("\\images\\val2017\\", "\\labels\\val2017\\"), ("\\images\\train2014\\", "\\labels\\train2014\\"),
               ("\\images\\val2014\\", "\\labels\\val2014\\"), ("/images/train2014/", "/labels/train2014/"),
               ("/images/val2014/", "/labels/val2014/"), ("\\JPEGImages\\", "\\labels\\"))
_IMAGE_EXTENSIONS = (".jpg", ".JPG", ".jpeg", ".JPEG", ".png", ".PNG", ".bmp", ".BMP", ".ppm", ".PPM", ".tiff",
                     ".TIFF")


def label_path(image_path):
    """Darknet's replace_image_to_label (src/utils.c): the first occurrence of each COCO images/train2017,
    val2017, train2014, val2014 folder and of JPEGImages becomes the matching labels folder (no other 'images'
    folder is renamed), surrounding whitespace is trimmed, and a final image extension (.jpg .jpeg .png .bmp
    .ppm .tiff, lower or upper case) becomes .txt: the label file sits beside the image otherwise."""
    path = str(image_path)
    for old, new in _LABEL_DIRS:
        path = path.replace(old, new, 1)
    path = path.strip()
    for ext in _IMAGE_EXTENSIONS:
        if path.endswith(ext):
            path = path[:-len(ext)] + ".txt"
    return path


def read_truth(path, classes=None):
    """YOLO label file as darknet's read_boxes: lines 'class x y w h' (relative centre and size) read until the
    first line that does not parse; a missing file is no boxes (darknet: 'Can't open label file', normal for
    unlabelled images). Returns (ids int array, boxes (N, 4) float32). With `classes`, a class id outside
    0..classes-1 is an error naming the file and line."""
    ids, boxes = [], []
    try:
        text = Path(path).read_text(errors="replace")
    except FileNotFoundError:
        return np.zeros(0, np.int64), np.zeros((0, 4), np.float32)
    except OSError as e:
        raise DarknetError(f"{path}: cannot read label file: {e.strerror or e}") from None
    tokens = text.split()
    for n in range(len(tokens) // 5):
        fields = tokens[5 * n:5 * n + 5]
        try:
            cls, values = int(fields[0]), [float(v) for v in fields[1:]]
        except ValueError:
            break
        if classes is not None and not 0 <= cls < classes:
            line = next((k + 1 for k, row in enumerate(text.splitlines()) if row.split()[:1] == [fields[0]]), "?")
            raise DarknetError(f"{path}:{line}: class id {cls}: expected 0..{classes - 1} (classes={classes})")
        ids.append(cls)
        boxes.append(values)
    return np.array(ids, np.int64), np.array(boxes, np.float32).reshape(-1, 4)


def check_points(points):
    """-points: 0 (area under the curve), 11 (VOC2007) or 101 (COCO), the values darknet documents."""
    if points not in MAP_POINTS:
        raise DarknetError(f"-points {points}: expected 0 (area under the curve), 11 (VOC2007) or 101 (COCO)")


def average_precision(precision, recall, points=0):
    """AP of one class from darknet's PR points in rank order (validate_detector_map). points=0: area under
    the curve at every unique recall, precision made monotone from the right (VOC2010+, ImageNet); points=11
    (VOC2007) or 101 (COCO): mean over recall levels r = 0, 1/(points-1), ..., 1 of the greatest precision at a
    rank whose recall >= r (0 if none)."""
    check_points(points)
    precision = np.asarray(precision, np.float64)
    recall = np.asarray(recall, np.float64)
    if not len(precision):
        return 0.0
    if points == 0:
        ap = 0.0
        last_recall, last_precision = recall[-1], precision[-1]
        for rank in range(len(precision) - 2, -1, -1):
            delta = last_recall - recall[rank]
            last_recall = recall[rank]
            last_precision = max(last_precision, precision[rank])
            ap += delta * last_precision
        return float(ap + last_recall * last_precision)
    total = 0.0
    for point in range(points):
        level = point / (points - 1)
        reached = precision[recall >= level]
        total += float(reached.max()) if reached.size and reached.max() > 0 else 0.0
    return total / points


class MapResult:
    """What `detector map` reports. aps: per-class AP (0..1); tp/fp: per class at thresh; map: mean AP."""

    def __init__(self, **fields):
        self.__dict__.update(fields)


class MapStats:
    """Darknet's validate_detector_map bookkeeping, image by image: add(dets, truth_ids, truth_boxes) with the
    image's detections after NMS (probs thresholded at 0.005 as darknet's map does), then result(points).
    `thresh` is the confidence for precision/recall/F1/TP/FP/average IoU, `iou_thresh` the match IoU."""

    def __init__(self, classes, thresh=0.25, iou_thresh=0.5):
        self.classes = classes
        self.thresh = np.float32(thresh)
        self.iou_thresh = np.float32(iou_thresh)
        self.records = []          # (prob, class_id, unique truth index or -1), in darknet's insertion order
        self.truth_per_class = np.zeros(classes, np.int64)
        self.unique_truth = 0
        self.iou_sum = 0.0
        self.iou_sum_per_class = np.zeros(classes)
        self.tp = np.zeros(classes, np.int64)
        self.fp = np.zeros(classes, np.int64)

    def add(self, dets, truth_ids, truth_boxes, difficult_ids=None, difficult_boxes=None):
        """One image: darknet's loop over boxes then classes with prob > 0."""
        truth_ids = np.asarray(truth_ids, np.int64)
        for cls in truth_ids:
            if not 0 <= cls < self.classes:
                raise DarknetError(f"truth class id {cls}: expected 0..{self.classes - 1}")
            self.truth_per_class[cls] += 1
        first = len(self.records)
        for i in range(len(dets)):
            box = dets.boxes[i]
            ious = box_iou(box, truth_boxes) if len(truth_ids) else np.zeros(0, np.float32)
            for cls in np.flatnonzero(dets.probs[i] > 0):
                prob = dets.probs[i, cls]
                match = (ious > self.iou_thresh) & (truth_ids == cls)
                truth_index, best_iou = -1, 0.0
                if match.any():
                    j = int(np.flatnonzero(match)[np.argmax(ious[match])])
                    truth_index, best_iou = self.unique_truth + j, float(ious[j])
                    self.records.append((float(prob), int(cls), truth_index))
                else:
                    difficult = (difficult_ids is not None and len(difficult_ids) and
                                 ((box_iou(box, difficult_boxes) > self.iou_thresh) & (difficult_ids == cls)).any())
                    if not difficult:   # darknet drops a detection of a difficult object from the ranking
                        self.records.append((float(prob), int(cls), -1))
                if prob > self.thresh:
                    earlier = truth_index > -1 and any(r[2] == truth_index for r in self.records[first:-1])
                    if truth_index > -1 and not earlier:
                        self.iou_sum += best_iou
                        self.iou_sum_per_class[cls] += best_iou
                        self.tp[cls] += 1
                    else:
                        self.fp[cls] += 1
        self.unique_truth += len(truth_ids)

    def extend(self, other):
        """Add the images of `other` (statistics of the images after this one's, with the same settings): the
        statistics of both image lists, one after the other."""
        self.records += [(prob, cls, t + self.unique_truth if t > -1 else -1) for prob, cls, t in other.records]
        self.truth_per_class += other.truth_per_class
        self.unique_truth += other.unique_truth
        self.iou_sum += other.iou_sum
        self.iou_sum_per_class += other.iou_sum_per_class
        self.tp += other.tp
        self.fp += other.fp

    def result(self, points=0):
        """Per-class AP by darknet's ranking (stable descending confidence), mAP and the thresh statistics."""
        # one class's points are those of darknet's all-class ranking at its own ranks: the ranks in between
        # repeat the previous point and change neither AP
        records = sorted(self.records, key=lambda r: -r[0])
        aps = []
        for cls in range(self.classes):
            truth = [r[2] for r in records if r[1] == cls]
            seen, hits = set(), []
            for t in truth:
                hits.append(t > -1 and t not in seen)
                seen.add(t)
            tp = np.cumsum(hits, dtype=np.float64)
            ranks = np.arange(1, len(hits) + 1, dtype=np.float64)
            positives = self.truth_per_class[cls]
            recall = tp / positives if positives else np.zeros_like(tp)
            aps.append(average_precision(tp / ranks, recall, points))
        tp, fp = int(self.tp.sum()), int(self.fp.sum())
        fn = self.unique_truth - tp
        nan = float("nan")
        precision = tp / (tp + fp) if tp + fp else nan
        recall = tp / (tp + fn) if tp + fn else nan
        f1 = 2 * precision * recall / (precision + recall) if precision + recall else nan
        return MapResult(aps=aps, map=float(np.mean(aps)) if aps else 0.0, tp_per_class=self.tp.tolist(),
                         fp_per_class=self.fp.tolist(), tp=tp, fp=fp, fn=fn, precision=precision, recall=recall,
                         f1=f1, average_iou=self.iou_sum / (tp + fp) if tp + fp else 0.0,
                         detections_count=len(self.records), unique_truth_count=self.unique_truth,
                         thresh=float(self.thresh), iou_thresh=float(self.iou_thresh), points=points)
