"""Detection training data as darknet prepares it (AlexeyAB src/data.c load_data_detection, OpenCV build;
fill_truth_detection, correct_boxes; src/image_opencv.cpp image_data_augmentation).

Per image: YOLO labels from the label file beside it (detection.label_path, darknet's replace_image_to_label);
a random crop whose four sides move by up to `jitter` of the image size (and, with [yolo] resize != 1, by
darknet's resize range), the area outside the image filled with the image's mean colour; with letter_box the
crop is widened or heightened to the network's aspect ratio first; bilinear resize to the network size
(OpenCV's INTER_LINEAR, half-pixel centres); a left-right flip half of the time ([net] flip=1); HSV jitter
(hue +-hue, saturation and exposure scaled by up to [net] saturation/exposure or their inverse). Boxes go
through the same crop and flip, are clipped to the image, and darknet's filters drop boxes whose class is
out of range, smaller than one network pixel, or with a centre outside (0, 1]; at most `max_boxes` per image,
in random order. Truth rows are (x, y, w, h, class), zero-filled after the last box.

Known differences: darknet's OpenCV path does the HSV jitter on 8-bit pixels (hue saturating rather than
wrapping); here it is imageops.distort_image, darknet's float HSV, on float pixels. mosaic, mixup, blur and
gaussian_noise are refused rather than silently skipped.
"""
import math
from dataclasses import dataclass

import numpy as np

from .data import ClassifierBatches, ImageOrder, Shard, _rand_scale, stream_images
from .detection import label_path, last_head, read_truth
from .errors import DarknetError
from .imageops import distort_image, flip_image, load_image


@dataclass
class DetectionAugmentation:
    width: int
    height: int
    channels: int
    classes: int
    max_boxes: int
    jitter: float = 0.0
    resize: float = 1.0
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: int = 0
    letter_box: int = 0

    @classmethod
    def from_network(cls, net, width=None, height=None):
        """train_detector's args: [net] size/flip/HSV/letter_box and the last detection layer's classes,
        max boxes, jitter and resize."""
        o = net.options
        head = last_detection_layer(net)
        for key in ("mosaic", "mixup", "cutmix", "blur", "gaussian_noise"):
            if getattr(o, key, 0):
                raise DarknetError(f"{net.cfg_path}: [net] {key}={getattr(o, key)}: not supported by detector "
                                   f"training yet; remove it")
        return cls(width or o.width, height or o.height, o.channels or 3, head.classes, head.max_boxes,
                   head.jitter, head.resize, o.hue, o.saturation, o.exposure, o.flip, o.letter_box)


def last_detection_layer(net):
    head = last_head(net)
    if head is None:
        raise DarknetError(f"{net.cfg_path}: no [yolo], [Gaussian_yolo] or [region] layer: this cfg cannot "
                           f"train a detector (a classifier? use classifier train)")
    return head


# -- image geometry ---------------------------------------------------------------------------------------
def _linear_taps(src, dst):
    """OpenCV INTER_LINEAR source indexes and weights along one axis (half-pixel centres, edges clamped)."""
    f = (np.arange(dst) + 0.5) * (src / dst) - 0.5
    i0 = np.floor(f).astype(np.int64)
    frac = (f - i0).astype(np.float32)
    frac[i0 < 0] = 0
    i0 = np.clip(i0, 0, src - 1)
    frac[i0 >= src - 1] = 0
    return i0, np.minimum(i0 + 1, src - 1), frac


def resize_linear(im, w, h):
    """(C, H, W) float image resized to (C, h, w) as cv::resize(..., INTER_LINEAR)."""
    _, sh, sw = im.shape
    if (sh, sw) == (h, w):
        return im.copy()
    x0, x1, fx = _linear_taps(sw, w)
    y0, y1, fy = _linear_taps(sh, h)
    rows = im[:, y0] * (1 - fy)[:, None] + im[:, y1] * fy[:, None]
    return (rows[:, :, x0] * (1 - fx) + rows[:, :, x1] * fx).astype(np.float32)


def crop_with_mean(im, left, top, width, height):
    """The (width x height) window at (left, top) of im; where it leaves the image, the image's mean colour."""
    c, ih, iw = im.shape
    out = np.empty((c, height, width), np.float32)
    out[:] = im.reshape(c, -1).mean(axis=1)[:, None, None]
    x0, y0 = max(left, 0), max(top, 0)
    x1, y1 = min(left + width, iw), min(top + height, ih)
    if x1 > x0 and y1 > y0:
        out[:, y0 - top:y1 - top, x0 - left:x1 - left] = im[:, y0:y1, x0:x1]
    return out


# -- truth --------------------------------------------------------------------------------------------------
def correct_boxes(boxes, dx, dy, sx, sy, flip):
    """darknet's correct_boxes on (N, 4) relative x, y, w, h: boxes at (0, 0) or entirely outside the image
    are marked invalid (NaN); the rest are scaled by (sx, sy), shifted by (dx, dy), mirrored with `flip`,
    and clipped to [0, 1]."""
    boxes = np.asarray(boxes, np.float64).reshape(-1, 4)
    x, y, w, h = boxes.T
    invalid = ((x == 0) & (y == 0)) | (x + w / 2 < 0) | (y + h / 2 < 0) | (x - w / 2 > 1) | (y - h / 2 > 1)
    left, right = (x - w / 2) * sx - dx, (x + w / 2) * sx - dx
    top, bottom = (y - h / 2) * sy - dy, (y + h / 2) * sy - dy
    if flip:
        left, right = 1 - right, 1 - left
    left, right, top, bottom = (np.clip(v, 0, 1) for v in (left, right, top, bottom))
    out = np.stack([(left + right) / 2, (top + bottom) / 2, np.clip(right - left, 0, 1),
                    np.clip(bottom - top, 0, 1)], axis=1)
    out[invalid] = np.nan
    return out


def fill_truth(ids, boxes, aug, rng, flip=0, dx=0.0, dy=0.0, sx=1.0, sy=1.0):
    """darknet's fill_truth_detection: (max_boxes, 5) rows of x, y, w, h, class."""
    truth = np.zeros((aug.max_boxes, 5), np.float32)
    order = rng.permutation(len(ids))
    ids, boxes = np.asarray(ids)[order], correct_boxes(np.asarray(boxes).reshape(-1, 4)[order], dx, dy, sx, sy, flip)
    row = 0
    for cls, (x, y, w, h) in zip(ids[:aug.max_boxes], boxes[:aug.max_boxes]):
        if not 0 <= cls < aug.classes or math.isnan(x):
            continue
        if w < 1 / aug.width or h < 1 / aug.height or x <= 0 or x > 1 or y <= 0 or y > 1:
            continue
        truth[row] = (x, y, min(w, 1), min(h, 1), cls)
        row += 1
    return truth


# -- one image ----------------------------------------------------------------------------------------------
def _jitter_shift(rng, low, high):
    """darknet's rand_precalc_random, truncated to int as it is assigned to pleft/pright/..."""
    low, high = min(low, high), max(low, high)
    return int(rng.uniform() * (high - low) + low)


def crop_window(ow, oh, aug, rng):
    """(pleft, ptop, swidth, sheight) of load_data_detection's crop."""
    dw, dh = int(ow * aug.jitter), int(oh * aug.jitter)
    down = 1 / aug.resize if aug.resize > 1 else aug.resize
    up = 1 / aug.resize if aug.resize < 1 else aug.resize
    min_rdw, min_rdh = int(ow * (1 - 1 / down) / 2), int(oh * (1 - 1 / down) / 2)
    max_rdw, max_rdh = int(ow * (1 - 1 / up) / 2), int(oh * (1 - 1 / up) / 2)
    resize_r1, resize_r2 = rng.uniform(), rng.uniform()
    pleft, pright = _jitter_shift(rng, -dw, dw), _jitter_shift(rng, -dw, dw)
    ptop, pbot = _jitter_shift(rng, -dh, dh), _jitter_shift(rng, -dh, dh)
    hi_w, hi_h = (0, 0) if aug.resize < 1 else (max_rdw, max_rdh)
    pleft += int(resize_r1 * (hi_w - min_rdw) + min_rdw)
    pright += int(resize_r2 * (hi_w - min_rdw) + min_rdw)
    ptop += int(resize_r1 * (hi_h - min_rdh) + min_rdh)
    pbot += int(resize_r2 * (hi_h - min_rdh) + min_rdh)
    if aug.letter_box:
        net_ar = aug.width / aug.height
        if (ow / oh) / net_ar > 1:
            delta = (ow / net_ar - oh) / 2
            ptop, pbot = int(ptop - delta), int(pbot - delta)
        else:
            delta = (oh * net_ar - ow) / 2
            pleft, pright = int(pleft - delta), int(pright - delta)
    swidth, sheight = ow - pleft - pright, oh - ptop - pbot
    if swidth <= 0 or sheight <= 0 or ow - pleft <= 0 or oh - ptop <= 0:
        return 0, 0, ow, oh
    return pleft, ptop, swidth, sheight


def augment_detection(im, ids, boxes, aug, rng):
    """One image and its labels as a training sample: (x (C, h, w) float32, truth (max_boxes, 5))."""
    _, oh, ow = im.shape
    pleft, ptop, swidth, sheight = crop_window(ow, oh, aug, rng)
    flip = int(rng.integers(2)) if aug.flip else 0
    dhue = rng.uniform(-aug.hue, aug.hue)
    dsat, dexp = _rand_scale(rng, aug.saturation), _rand_scale(rng, aug.exposure)
    sx, sy = swidth / ow, sheight / oh
    truth = fill_truth(ids, boxes, aug, rng, flip, (pleft / ow) / sx, (ptop / oh) / sy, 1 / sx, 1 / sy)
    if (pleft, ptop, swidth, sheight) != (0, 0, ow, oh):
        im = crop_with_mean(im, pleft, ptop, swidth, sheight)
    x = resize_linear(im, aug.width, aug.height)
    if flip:
        x = flip_image(x)
    if (dhue, dsat, dexp) != (0, 1, 1):
        x = distort_image(x, dhue, dsat, dexp)
    return x, truth


def read_labels(image_path):
    """(ids, boxes) of the label file beside `image_path` (no file: no boxes, as darknet)."""
    return read_truth(label_path(image_path))


# -- batches ------------------------------------------------------------------------------------------------
class _DetectionSource:
    """Builds mini-batch k of the run's image stream from (seed, k) alone, in a worker process or thread."""

    def __init__(self, paths, aug, batch_size, seed):
        self.paths, self.aug, self.batch_size, self.seed = paths, aug, batch_size, seed
        self.bad = {}
        self.distinct = len(set(paths))
        self.order = ImageOrder(len(paths), seed)

    def sample(self, path, rng):
        im = load_image(path, self.aug.channels)
        ids, boxes = read_labels(path)
        return augment_detection(im, ids, boxes, self.aug, rng)

    def batch(self, k):
        skipped = []
        samples = [sample for _, sample in stream_images(self, k, skipped, self.sample)]
        return np.stack([x for x, _ in samples]), np.stack([truth for _, truth in samples]), skipped


class DetectionBatches(ClassifierBatches):
    """Detection training batches prepared in the background by the classifier pipeline's worker pool:

        with DetectionBatches(paths, DetectionAugmentation.from_network(net), net.batch, seed=1) as batches:
            x, truth = batches.next()   # x (B, C, H, W) float32 in [0, 1]; truth (B, max_boxes, 5)

    The mini-batches of the run's image stream (data.ImageOrder) that `shard` names; unreadable images are
    reported once by path, replaced and counted in `skipped`."""

    # forkserver rather than fork: the trainer starts loaders while its engine threads run (again at every
    # multi-scale resize), and a child forked from a threaded process can inherit a held lock
    _start_method = "forkserver"

    def __init__(self, paths, aug, batch_size, threads=2, seed=None, workers="process", shard=Shard()):
        paths = list(paths)
        seed = self._check(paths, batch_size, workers, seed)
        self._start(_DetectionSource(paths, aug, batch_size, seed), threads, workers, shard)
