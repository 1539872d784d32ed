"""Small real datasets written in darknet's classifier layout (image files, lists, labels, a .data file).

make_digits: scikit-learn's 1,797 handwritten digits (8x8, 17 grey levels; the UCI optdigits test set),
upscaled with nearest neighbour (each source pixel a k x k block, so the file round-trips to the source) and
written as grey PNGs:

    OUT/train/0007_digit-7.png ...    OUT/valid/...    OUT/train.list    OUT/valid.list
    OUT/labels.txt (digit-0 .. digit-9)    OUT/names.txt (zero .. nine)    OUT/digits.data    OUT/backup/

The label strings are matched as substrings of image paths (darknet's rule), so they must not occur anywhere
else in a path: "digit-N" holds a '-', which pytest's temporary directory names never contain, and no label
is a substring of another (plain "zero" .. "nine" would not do: "two" is inside "network"). The held-out split
takes the same fraction of every digit, chosen by `seed`. Paths in the lists and the .data file are relative
to OUT; darknet_py resolves them against the file's directory when they are not found from the current one.
"""
from pathlib import Path

import numpy as np
from PIL import Image

from .errors import DarknetError

NAMES = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
LABELS = tuple(f"digit-{d}" for d in range(10))


def split_digits(targets, valid_fraction, seed):
    """Boolean mask of the held-out images: round(valid_fraction * count) of each digit, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    held_out = np.zeros(len(targets), dtype=bool)
    for digit in range(10):
        members = np.flatnonzero(targets == digit)
        held_out[rng.permutation(members)[:round(valid_fraction * len(members))]] = True
    return held_out


def make_digits(out_dir, size=32, seed=0, valid_fraction=0.2):
    """Write the digits dataset into `out_dir` (created); returns the path of its digits.data."""
    try:
        from sklearn.datasets import load_digits
    except ImportError:
        raise DarknetError("make_digits needs scikit-learn (pip install scikit-learn, or the project's [test] "
                           "extra)") from None
    digits = load_digits()
    out = Path(out_dir)
    held_out = split_digits(digits.target, valid_fraction, seed)
    pixels = np.rint(digits.images * (255 / 16)).astype(np.uint8)   # 0..16 grey levels onto 0..255
    lists = {"train": [], "valid": []}
    for part in lists:
        (out / part).mkdir(parents=True, exist_ok=True)
    (out / "backup").mkdir(exist_ok=True)
    for index, (image, digit) in enumerate(zip(pixels, digits.target)):
        part = "valid" if held_out[index] else "train"
        name = f"{part}/{index:04d}_{LABELS[digit]}.png"
        Image.fromarray(image).resize((size, size), Image.NEAREST).save(out / name, compress_level=1)
        lists[part].append(name)
    for part, names in lists.items():
        (out / f"{part}.list").write_text("".join(n + "\n" for n in names))
    (out / "labels.txt").write_text("".join(label + "\n" for label in LABELS))
    (out / "names.txt").write_text("".join(name + "\n" for name in NAMES))
    data = out / "digits.data"
    data.write_text("classes = 10\ntrain = train.list\nvalid = valid.list\nlabels = labels.txt\n"
                    "names = names.txt\nbackup = backup/\ntop = 2\n")
    return data
