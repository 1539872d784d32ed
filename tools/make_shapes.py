"""Generate the "shapes" detection data set: coloured circles, squares and triangles on textured backgrounds,
with YOLO labels beside the images (darknet's layout), train/valid lists, deterministic for a given seed.

    python tools/make_shapes.py [--out data/shapes-dataset] [--train 800] [--valid 200] [--size 160]

Writes OUT/images/{train,valid}_NNNN.jpg with OUT/images/*.txt labels ("class x y w h", relative centre and
size), OUT/train.txt and OUT/valid.txt (one image path a line, as cfg/shapes.data expects).
"""
import argparse
import math
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

NAMES = ("circle", "square", "triangle")
MIN_SIDE, MAX_SIDE = 14, 64         # object size in pixels at --size 160 (scaled for other sizes)
MAX_OBJECTS = 5
MAX_OVERLAP = 0.15                  # IoU above which a new object is redrawn elsewhere


def texture(rng, size):
    """A background: a colour gradient, soft noise blobs, and sometimes stripes or a checkerboard."""
    y, x = np.mgrid[0:size, 0:size] / size
    base = rng.uniform(0, 1, 3)
    tilt = rng.uniform(-0.4, 0.4, (2, 3))
    img = base + x[..., None] * tilt[0] + y[..., None] * tilt[1]
    noise = rng.normal(0, 1, (size // 8 + 1, size // 8 + 1, 3))
    noise = np.asarray(Image.fromarray(((noise * 0.15 + 0.5).clip(0, 1) * 255).astype(np.uint8)).resize(
        (size, size), Image.BILINEAR), dtype=np.float64) / 255 - 0.5
    img = img + noise * rng.uniform(0.2, 0.8)
    pattern = rng.integers(0, 3)
    if pattern == 1:
        period = rng.uniform(6, 20)
        angle = rng.uniform(0, math.pi)
        stripes = np.sin((x * math.cos(angle) + y * math.sin(angle)) * size / period * 2 * math.pi)
        img = img + stripes[..., None] * rng.uniform(0.05, 0.15)
    elif pattern == 2:
        cell = int(rng.integers(8, 24))
        board = ((np.arange(size)[:, None] // cell + np.arange(size)[None, :] // cell) % 2) - 0.5
        img = img + board[..., None] * rng.uniform(0.05, 0.15)
    img += rng.normal(0, 0.03, img.shape)
    return Image.fromarray((img.clip(0, 1) * 255).astype(np.uint8))


def iou(a, b):
    """IoU of boxes (left, top, right, bottom)."""
    w = min(a[2], b[2]) - max(a[0], b[0])
    h = min(a[3], b[3]) - max(a[1], b[1])
    if w <= 0 or h <= 0:
        return 0.0
    inter = w * h
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def draw_shape(draw, cls, box, colour):
    left, top, right, bottom = box
    if cls == 0:
        draw.ellipse(box, fill=colour)
    elif cls == 1:
        draw.rectangle((left, top, right - 1, bottom - 1), fill=colour)
    else:
        draw.polygon([((left + right) / 2, top), (right, bottom), (left, bottom)], fill=colour)


def make_image(rng, size):
    """(PIL image, [(class, left, top, right, bottom)])."""
    img = texture(rng, size)
    draw = ImageDraw.Draw(img)
    scale = size / 160
    objects = []
    for _ in range(int(rng.integers(1, MAX_OBJECTS + 1))):
        for _attempt in range(20):
            side = rng.uniform(MIN_SIDE, MAX_SIDE) * scale
            aspect = rng.uniform(0.75, 1.33)
            w, h = int(round(side * aspect)), int(round(side / aspect))
            left, top = int(rng.integers(0, size - w + 1)), int(rng.integers(0, size - h + 1))
            box = (left, top, left + w, top + h)
            if all(iou(box, other[1:]) < MAX_OVERLAP for other in objects):
                break
        else:
            continue
        cls = int(rng.integers(0, len(NAMES)))
        # a colour far from the background under the object
        under = np.asarray(img.crop(box), dtype=np.float64).reshape(-1, 3).mean(axis=0)
        colour = rng.uniform(0, 255, 3)
        for _ in range(10):
            if np.abs(colour - under).sum() > 200:
                break
            colour = rng.uniform(0, 255, 3)
        draw_shape(draw, cls, box, tuple(int(c) for c in colour))
        objects.append((cls,) + box)
    if rng.uniform() < 0.3:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.3, 1.0)))
    return img, objects


def write_split(out, name, count, size, rng):
    images = out / "images"
    images.mkdir(parents=True, exist_ok=True)
    paths = []
    for k in range(count):
        img, objects = make_image(rng, size)
        path = images / f"{name}_{k:04d}.jpg"
        img.save(path, quality=92)
        lines = [f"{cls} {(l + r) / 2 / size:.6f} {(t + b) / 2 / size:.6f} {(r - l) / size:.6f} {(b - t) / size:.6f}"
                 for cls, l, t, r, b in objects]
        path.with_suffix(".txt").write_text("".join(line + "\n" for line in lines))
        paths.append(str(path))
    (out / f"{name}.txt").write_text("".join(p + "\n" for p in paths))
    return paths


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default="data/shapes-dataset")
    parser.add_argument("--train", type=int, default=800)
    parser.add_argument("--valid", type=int, default=200)
    parser.add_argument("--size", type=int, default=160)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    out = Path(args.out)
    rng = np.random.default_rng(args.seed)
    write_split(out, "train", args.train, args.size, rng)
    write_split(out, "valid", args.valid, args.size, rng)
    (out / "shapes.names").write_text("".join(n + "\n" for n in NAMES))
    print(f"{args.train} training and {args.valid} validation images in {out}")


if __name__ == "__main__":
    main()
