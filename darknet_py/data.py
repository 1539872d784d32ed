"""Classifier data as darknet prepares it (src/data.c load_data_augment, src/classifier.c): image lists,
labels from paths, augmentation, and a background worker pool that keeps the next batches ready.

- read_list: one image path per line (darknet's get_paths).
- class_indices / truth_matrix: darknet's fill_truth_smooth: the class of an image is the label string its
  path contains; truth is 1 - label_smooth_eps there and label_smooth_eps / (classes - 1) elsewhere. A path
  containing no label or several is an error naming it (darknet prints "Too many or too few labels" and
  trains on an empty or multi-hot truth). [softmax] tree= hierarchies are not supported.
- classify_input: the image darknet's `classifier predict`/`valid` feed the network.
- ImageOrder / Shard: the run's image stream (every image once per epoch, in an order drawn from the seed and
  the epoch) and the part of it one process of a data-parallel run reads.
- ClassifierBatches: mini-batches of that stream, augmented as darknet's load_image_augment_paths +
  mixup/cutmix/mosaic + blur, in worker processes or threads.
"""
import collections
import concurrent.futures
import math
import multiprocessing
import os
import re
import sys
import threading
import time
from dataclasses import dataclass, fields
from pathlib import Path

import numpy as np

from .errors import DarknetDataError, DarknetError
from .imageops import (center_crop_input, distort_image, flip_image, gaussian_blur, load_image, resize_image,
                       rotate_crop_image)

__all__ = ["read_list", "class_indices", "truth_matrix", "load_image", "classify_input", "Augmentation",
           "random_crop_params", "augment_image", "ImageOrder", "Shard", "ClassifierBatches"]


# -- lists and labels -------------------------------------------------------------------------------------
def read_list(path):
    """Image paths listed in `path`, one per line (ends stripped, blank lines skipped).

    Relative entries are opened relative to the current directory, as darknet does. When the first relative
    entry does not exist there but does relative to the list file's directory, every relative entry is taken
    relative to the list's directory (so a dataset directory works from anywhere)."""
    try:
        lines = Path(path).read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError as e:
        raise DarknetDataError(f"{path}: cannot read image list: {e.strerror or e}") from None
    entries = [line.strip() for line in lines if line.strip()]
    if not entries:
        raise DarknetDataError(f"{path}: image list is empty; expected one image path per line")
    base = Path(path).parent
    first = next((e for e in entries if not os.path.isabs(e)), None)
    if first is not None and not os.path.exists(first) and (base / first).exists():
        entries = [e if os.path.isabs(e) else str(base / e) for e in entries]
    return entries


def _is_prefix_of_another(labels):
    ordered = sorted(labels)
    return any(b.startswith(a) for a, b in zip(ordered, ordered[1:]))


def class_indices(paths, labels, source="image list"):
    """Class index of each path: the one label it contains (darknet's strstr rule). Raises DarknetDataError
    naming the first path that contains no label or several, and how many paths do."""
    seen = {}
    for i, label in enumerate(labels):
        if not label:
            raise DarknetDataError(f"label {i} is empty; an empty label matches every path")
        if label in seen:
            raise DarknetDataError(f"labels {seen[label]} and {i} are both '{label}'; every path containing it "
                                   f"would have two classes")
        seen[label] = i
    if _is_prefix_of_another(labels):
        def matches(path):
            return [i for i, label in enumerate(labels) if label in path]
    else:   # one regex pass; a lookahead finds overlapping matches (exact when no label is a prefix of another)
        pattern = re.compile("(?=(" + "|".join(re.escape(label) for label in labels) + "))")

        def matches(path):
            return sorted({seen[m] for m in pattern.findall(path)})
    result = np.empty(len(paths), dtype=np.int64)
    bad = []
    for n, path in enumerate(paths):
        found = matches(path)
        if len(found) == 1:
            result[n] = found[0]
        else:
            bad.append((path, found))
    if bad:
        path, found = bad[0]
        what = "none of the labels" if not found else " and ".join(f"'{labels[i]}' (class {i})" for i in found)
        raise DarknetDataError(f"{source}: {len(bad)} of {len(paths)} image paths do not contain exactly one label "
                               f"(an image's class is the label its path contains); first: '{path}' contains {what}")
    return result


def truth_matrix(indices, classes, label_smooth_eps=0.0):
    """(N, classes) float32 truth as darknet's fill_truth_smooth."""
    off = label_smooth_eps / (classes - 1) if classes > 1 else 0.0
    truth = np.full((len(indices), classes), off, dtype=np.float32)
    truth[np.arange(len(indices)), indices] = 1 - label_smooth_eps
    return truth


# -- single images ----------------------------------------------------------------------------------------
def classify_input(path, options):
    """(1, C, H, W) input for `path` as darknet's classifier predict/valid prepare it: resize_min to the
    network width, then a centred width x height crop (AlexeyAB's predict_classifier and
    validate_classifier_single do this for every network shape; there is no plain-resize case)."""
    im = load_image(path, options.channels)
    return center_crop_input(im, options.width, options.height)[None]


@dataclass(frozen=True)
class Augmentation:
    """The [net] options darknet's classifier training reads (train_classifier -> load_args)."""
    width: int
    height: int
    channels: int
    min_crop: int
    max_crop: int
    angle: float = 0.0
    aspect: float = 1.0
    hue: float = 0.0
    saturation: float = 1.0
    exposure: float = 1.0
    flip: int = 1
    mixup: int = 0
    blur: int = 0
    label_smooth_eps: float = 0.0

    @classmethod
    def from_options(cls, options):
        return cls(**{f.name: getattr(options, f.name) for f in fields(cls)})

    @property
    def size(self):
        return max(self.width, self.height)


def _rand_scale(rng, s):
    """darknet's rand_scale: uniform in [1, s], inverted half of the time."""
    scale = rng.uniform(min(1, s), max(1, s))
    return scale if rng.integers(2) else 1 / scale


def _rand_int(rng, low, high):
    """darknet's rand_int: inclusive, bounds swapped if reversed."""
    low, high = int(low), int(high)
    return int(rng.integers(min(low, high), max(low, high) + 1))


def random_crop_params(w, h, aug, rng):
    """darknet's random_augment_image choices for a w x h image: (rad, scale, dx, dy, aspect) of a crop whose
    shorter side is zoomed to rand_int(min_crop, max_crop), with aspect jitter, a rotation of up to `angle`
    degrees and a random shift that keeps an unrotated crop inside the image."""
    aspect = _rand_scale(rng, aug.aspect)
    side = _rand_int(rng, aug.min_crop, aug.max_crop)
    shorter = max(1, int(h if h < w * aspect else w * aspect))
    scale = side / shorter
    rad = rng.uniform(-aug.angle, aug.angle) * 2 * math.pi / 360
    dx = max(0.0, (w * scale / aspect - aug.size) / 2)
    dy = max(0.0, (h * scale - aug.size) / 2)
    return rad, scale, rng.uniform(-dx, dx), rng.uniform(-dy, dy), aspect


def augment_image(im, aug, rng):
    """darknet's classifier augmentation of one image (load_image_augment_paths): a random rotated, zoomed
    crop (random_crop_params), a left-right flip half of the time, HSV jitter, then a resize to the network
    size."""
    rad, scale, dx, dy, aspect = random_crop_params(im.shape[2], im.shape[1], aug, rng)
    crop = rotate_crop_image(im, rad, scale, aug.size, aug.size, dx, dy, aspect)
    if aug.flip and rng.integers(2):
        crop = flip_image(crop)
    dhue = rng.uniform(-aug.hue, aug.hue)
    dsat, dexp = _rand_scale(rng, aug.saturation), _rand_scale(rng, aug.exposure)
    if (dhue, dsat, dexp) != (0, 1, 1):
        crop = distort_image(crop, dhue, dsat, dexp)
    return resize_image(crop, aug.width, aug.height)


# -- the run's image stream ------------------------------------------------------------------------------
class ImageOrder:
    """Which list entry is image g of a training run: epoch e = images e*n .. e*n + n - 1 (n entries) is a
    permutation of the list drawn from (seed, e), so every image comes once per epoch and any process can say
    which image is g without the others. Darknet draws with replacement (get_random_paths); a fixed order
    per epoch is what lets the ranks of a data-parallel run split the list (Shard) and a resumed run continue
    where it stopped."""

    def __init__(self, count, seed):
        self.count, self.seed = count, seed
        self._epoch = (-1, None)     # (epoch, its permutation): the last one asked for

    def index(self, g):
        epoch, position = divmod(g, self.count)
        cached = self._epoch
        if cached[0] != epoch:       # worker threads may both compute it: the same permutation
            cached = (epoch, np.random.default_rng([self.seed, _EPOCH_STREAM, epoch]).permutation(self.count))
            self._epoch = cached
        return int(cached[1][position])


# streams of random numbers drawn from the run's seed, kept apart by a tag
_EPOCH_STREAM, _IMAGE_STREAM, _BATCH_STREAM = 0, 1, 2


@dataclass(frozen=True)
class Shard:
    """The mini-batches of the run's image stream (mini-batch k = images k*B .. k*B + B - 1) one process reads.
    Each of `ranks` processes runs `subdivisions` mini-batches per iteration; iteration i reads global
    mini-batches from first + i*ranks*subdivisions on, rank r the r-th block of `subdivisions` of them: the
    ones one process at ranks*subdivisions mini-batches per iteration reads in that iteration, in its order.
    `first` (a multiple of ranks*subdivisions) is where the run starts: a resumed run continues the stream."""
    first: int = 0
    rank: int = 0
    ranks: int = 1
    subdivisions: int = 1

    def batch(self, n):
        """The global mini-batch of this process's n-th."""
        iteration, j = divmod(n, self.subdivisions)
        return self.first + (iteration * self.ranks + self.rank) * self.subdivisions + j


# -- batches ----------------------------------------------------------------------------------------------
def readable_image(source, index, rng_of, skipped, load):
    """(index, load(path, rng)) of list entry `index` of `source.paths`, rng = rng_of(0). A path `load` cannot
    read (DarknetError) is recorded in `source.bad`, appended to `skipped` with its reason and replaced by a
    random entry drawn from rng_of(attempt), loaded with that generator; a known bad path is skipped (and
    counted again) when met later. What comes back depends on the generators and the files alone, not on
    which worker loads it. A list in which no image can be read is an error."""
    attempt = 0
    while True:
        if len(source.bad) >= source.distinct:
            reason = list(source.bad.values())[0]   # a copy: other threads may add to it
            raise DarknetDataError(f"none of the {source.distinct} images in the list could be read; first: "
                                   f"{reason}")
        rng = rng_of(attempt)
        path = source.paths[index]
        if path in source.bad:   # counted again: `skipped` counts replaced draws, the same for any workers
            skipped.append((path, source.bad[path]))
        else:
            try:
                return index, load(path, rng)
            except DarknetError as e:
                source.bad[path] = str(e)
                skipped.append((path, str(e)))
        attempt += 1
        index = int(rng_of(attempt).integers(len(source.paths)))


def stream_images(source, k, skipped, load):
    """[(index, load(path, rng))] for mini-batch k of the run's image stream (source.order): images
    k*B .. k*B + B - 1 (B = source.batch_size), image g loaded with the generator of (seed, g)."""
    first = k * source.batch_size
    return [readable_image(source, source.order.index(g),
                           lambda attempt, g=g: np.random.default_rng([source.seed, _IMAGE_STREAM, g, attempt]),
                           skipped, load)
            for g in range(first, first + source.batch_size)]


class _BatchSource:
    """Everything a worker needs to build batch k on its own; batch k depends only on (seed, k)."""

    def __init__(self, paths, classes_of, classes, aug, batch_size, augment, seed):
        self.paths, self.classes_of, self.classes = paths, classes_of, classes
        self.aug, self.batch_size, self.augment, self.seed = aug, batch_size, augment, seed
        self.bad = {}   # path -> reason, for the images this worker failed to read
        self.distinct = len(set(paths))
        self.order = ImageOrder(len(paths), seed)

    def image(self, path, rng):
        im = load_image(path, self.aug.channels)
        if self.augment:
            return augment_image(im, self.aug, rng)
        return center_crop_input(im, self.aug.width, self.aug.height)

    def stack(self, drawn):
        """The images and their truth rows."""
        indices = [index for index, _ in drawn]
        return (np.stack([image for _, image in drawn]),
                truth_matrix(self.classes_of[indices], self.classes, self.aug.label_smooth_eps))

    def partners(self, rng, k, m, skipped):
        """The m-th set of random images (with replacement, as darknet's) mixed into mini-batch k."""
        return self.stack([readable_image(self, int(rng.integers(len(self.paths))),
                                          lambda attempt, i=i: np.random.default_rng(
                                              [self.seed, _BATCH_STREAM, k, m, i, attempt]), skipped, self.image)
                           for i in range(self.batch_size)])

    def batch(self, k):
        """Mini-batch k of the run's image stream; mixup and blur are decided per mini-batch (as darknet)
        from the generator of (seed, k)."""
        skipped = []
        x, truth = self.stack(stream_images(self, k, skipped, self.image))
        rng = np.random.default_rng([self.seed, _BATCH_STREAM, k])
        mixup = self.aug.mixup if self.augment else 0
        if mixup and rng.integers(2):
            others = [self.partners(rng, k, m, skipped) for m in range(3 if mixup >= 3 else 1)]
            for i in range(len(x)):
                kind = _rand_int(rng, 2, 3) if mixup == 4 else mixup
                _mix(x, truth, i, kind, others, rng)
        if self.augment and self.aug.blur:
            ksize = 15 if self.aug.blur == 1 else self.aug.blur
            for i in range(len(x)):
                if rng.integers(4) == 0:
                    x[i] = gaussian_blur(x[i], ksize)
        return x, truth, skipped


def _mix(x, truth, i, kind, others, rng):
    """darknet's load_data_augment mixing of image i with the same row of the other draws:
    1 MixUp (average), 2 CutMix (a rectangle from the second draw), 3 Mosaic (four quadrants)."""
    _, _, h, w = x.shape
    (x2, t2) = others[0]
    if kind == 1:
        x[i] = (x[i] + x2[i]) / 2
        truth[i] = (truth[i] + t2[i]) / 2
    elif kind == 2:
        cut_w, cut_h = _rand_int(rng, int(w * 0.3), int(w * 0.8)), _rand_int(rng, int(h * 0.3), int(h * 0.8))
        left, top = _rand_int(rng, 0, w - cut_w - 1), _rand_int(rng, 0, h - cut_h - 1)
        x[i, :, top:top + cut_h, left:left + cut_w] = x2[i, :, top:top + cut_h, left:left + cut_w]
        alpha = cut_w * cut_h / (w * h)
        truth[i] = truth[i] * (1 - alpha) + t2[i] * alpha
    else:
        (x3, t3), (x4, t4) = others[1], others[2]
        cut_x, cut_y = _rand_int(rng, int(w * 0.2), int(w * 0.8)), _rand_int(rng, int(h * 0.2), int(h * 0.8))
        x[i, :, :cut_y, cut_x:] = x2[i, :, :cut_y, cut_x:]
        x[i, :, cut_y:, :cut_x] = x3[i, :, cut_y:, :cut_x]
        x[i, :, cut_y:, cut_x:] = x4[i, :, cut_y:, cut_x:]
        area = w * h
        truth[i] = (truth[i] * cut_x * cut_y + t2[i] * (w - cut_x) * cut_y + t3[i] * cut_x * (h - cut_y)
                    + t4[i] * (w - cut_x) * (h - cut_y)) / area


# fork: a worker starts in milliseconds and does not re-import the user's main script (spawn and forkserver
# re-run an unguarded script in every worker). Where fork does not exist (Windows, macOS default), spawn.
_START_METHOD = "fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn"
_WORKER_SOURCE = None   # the batch source (with batch(k)) of a worker process, set once by its initializer


def _init_worker(source, owner):
    global _WORKER_SOURCE
    _WORKER_SOURCE = source
    if os.name == "posix":      # on Windows os.kill(pid, 0) would terminate the owner
        threading.Thread(target=_exit_without, args=(owner,), daemon=True, name="darknet-data-owner").start()


def _exit_without(owner):
    """A trainer killed with SIGKILL cannot stop its workers (nor can a forkserver's, whose parent is the
    forkserver): each worker checks that the process `owner` still exists and exits once it does not."""
    while True:
        time.sleep(0.5)
        try:
            os.kill(owner, 0)
        except (ProcessLookupError, PermissionError):   # PermissionError: the pid is another user's now
            os._exit(0)


def _worker_batch(k):
    return _WORKER_SOURCE.batch(k)


class ClassifierBatches:
    """Training batches prepared in the background: the mini-batches of the run's image stream (ImageOrder)
    that `shard` names (default: all, from the first).

        with ClassifierBatches(paths, labels, net.options, batch_size, augment=True, seed=1) as batches:
            x, truth = batches.next()     # x: float32 (B, C, H, W) RGB in [0, 1]; truth: float32 (B, classes)
            batches.index                 # the global mini-batch x is (Shard.batch)

    `labels` are the .data labels (each path must contain exactly one; checked here, before any work).
    `threads` workers build whole batches ahead of use (up to 2 per worker). `workers` is "thread" (default;
    Pillow and NumPy release the GIL for the heavy parts, and on 2 cores the engine never waited in
    benchmarks/data_pipeline.py) or "process" (forked workers, no shared GIL; for heavy Python-side loading).
    Mini-batch k depends only on (seed, k, batch_size), so results are the same for any number or kind of
    workers, and for any split of the stream among processes.
    An unreadable image is reported once on stderr, replaced by another random one and counted in `skipped`;
    only a list in which no image can be read is an error. `wait_seconds`: how long the last next() waited."""

    _start_method = _START_METHOD   # of worker processes

    def __init__(self, paths, labels, options, batch_size, augment, threads=2, seed=None, workers="thread",
                 shard=Shard()):
        paths = list(paths)
        seed = self._check(paths, batch_size, workers, seed)
        aug = Augmentation.from_options(options)
        self._start(_BatchSource(paths, class_indices(paths, labels), len(labels), aug, batch_size, augment, seed),
                    threads, workers, shard)

    @staticmethod
    def _check(paths, batch_size, workers, seed):
        """Refuses arguments no batch can come from; returns the seed (a random one for None)."""
        if batch_size < 1:
            raise DarknetDataError(f"batch size must be >= 1; got {batch_size}")
        if not paths:
            raise DarknetDataError("no image paths to train on")
        if workers not in ("process", "thread"):
            raise ValueError(f"workers must be 'process' or 'thread'; got {workers!r}")
        return np.random.SeedSequence().entropy if seed is None else seed

    def _start(self, source, threads, workers, shard):
        """Starts `threads` workers building the batches of `source` (its batch(k)) that `shard` names, 2 per
        worker ahead of use."""
        self._source, self._shard = source, shard
        self.wait_seconds = 0.0
        self.skipped = 0
        self.reported = set()
        self.index = None
        self._next_n = 0
        self._pending = collections.deque()
        threads = max(1, int(threads))
        if workers == "process":
            self._pool = concurrent.futures.ProcessPoolExecutor(
                threads, mp_context=multiprocessing.get_context(self._start_method), initializer=_init_worker,
                initargs=(self._source, os.getpid()))
        else:
            self._pool = concurrent.futures.ThreadPoolExecutor(threads, thread_name_prefix="darknet-data")
        self._depth = 2 * threads
        self._fill()

    def _submit(self):
        k = self._shard.batch(self._next_n)
        self._next_n += 1
        if isinstance(self._pool, concurrent.futures.ProcessPoolExecutor):
            self._pending.append((k, self._pool.submit(_worker_batch, k)))
        else:
            self._pending.append((k, self._pool.submit(self._source.batch, k)))

    def _fill(self):
        while len(self._pending) < self._depth:
            self._submit()

    def next(self):
        """The next batch: (x, truth)."""
        if not self._pending:
            raise DarknetDataError("ClassifierBatches is closed")
        k, future = self._pending.popleft()
        self._fill()
        start = time.perf_counter()
        try:
            x, truth, skipped = future.result()
        except BaseException:
            self.close()
            raise
        self.wait_seconds = time.perf_counter() - start
        self.index = k
        for path, reason in skipped:
            self.skipped += 1
            if path not in self.reported:
                self.reported.add(path)
                print(f"warning: skipping unreadable image: {reason}", file=sys.stderr)
        return x, truth

    __next__ = next

    def __iter__(self):
        return self

    def close(self):
        """Stop the workers; pending batches are dropped."""
        for _, future in self._pending:
            future.cancel()
        self._pending.clear()
        if self._source is not None:
            self._source = None
            self._pool.shutdown(wait=True, cancel_futures=True)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def __del__(self):
        if getattr(self, "_source", None) is not None:
            self.close()
