"""Classifier data pipeline: .data files, image lists, labels, image loading, darknet's image operations and
augmentation, ClassifierBatches, and the digits dataset. References: darknet's formulas written out here as
plain loops, colorsys, OpenCV (imread, GaussianBlur) and scikit-learn's digits."""
import colorsys
import math
import random
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image

from darknet_py.data import (Augmentation, ClassifierBatches, augment_image, class_indices, classify_input,
                             random_crop_params, read_list, truth_matrix)
from darknet_py.datafile import DarknetDataWarning, read_data_file
from darknet_py.datasets import LABELS, make_digits
from darknet_py.errors import DarknetDataError
from darknet_py.imageops import (crop_image, distort_image, flip_image, gaussian_blur, load_image, resize_image,
                                 resize_min, rotate_crop_image, crop_coordinates)


def write(path, text):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def aug_options(size=16, **overrides):
    values = dict(width=size, height=size, channels=3, min_crop=size, max_crop=size, angle=0.0, aspect=1.0,
                  hue=0.0, saturation=1.0, exposure=1.0, flip=0, mixup=0, blur=0, label_smooth_eps=0.0)
    values.update(overrides)
    return Augmentation(**values)


def test_augmentation_from_net_options():
    from darknet_py.cfg import parse_cfg_text
    from darknet_py.netcfg import NetOptions
    net = parse_cfg_text("[net]\nwidth=24\nheight=20\nchannels=1\nhue=.1\nmixup=1\n")[0]
    aug = Augmentation.from_options(NetOptions(net))
    # darknet's parse_net_options defaults: min_crop = width, max_crop = 2 * width, flip on, no jitter
    assert (aug.width, aug.height, aug.channels, aug.min_crop, aug.max_crop) == (24, 20, 1, 24, 48)
    assert (aug.flip, aug.angle, aug.aspect, aug.saturation, aug.exposure) == (1, 0, 1, 1, 1)
    assert (aug.hue, aug.mixup, aug.size) == (0.1, 1, 24)


# -- .data files ------------------------------------------------------------------------------------------
def test_data_file_values_defaults_and_relative_paths(tmp_path, monkeypatch):
    data_dir = tmp_path / "set"
    write(data_dir / "train.list", "a.png\n")
    write(data_dir / "labels.txt", "lab-a\nlab-b\n\n")
    data = write(data_dir / "x.data", "# comment\n; another\n\n classes = 2 \ntrain=train.list\n"
                                      "valid = /abs/valid.list\nlabels = labels.txt\neval = imagenet\n"
                                      "classes = 7\n")
    monkeypatch.chdir(tmp_path)   # the relative paths are not found here: taken beside the .data file
    d = read_data_file(data)
    assert d.classes == 2         # the first of a repeated key, as darknet's option_find
    assert d.train == data_dir / "train.list"
    assert d.labels == ["lab-a", "lab-b"]
    assert d.names == d.labels    # no names: darknet's predict falls back to labels
    assert d.backup == Path("/backup/") and d.top == 1
    assert d.get("eval") == "imagenet" and d.get("map", "none") == "none"
    write(tmp_path / "train.list", "b.png\n")   # present in the current directory: darknet's choice wins
    assert read_data_file(data).train == Path("train.list")
    (data_dir / "backup").mkdir()
    write(data_dir / "y.data", "classes=2\nbackup = backup\ntop=5\n")
    y = read_data_file(data_dir / "y.data")
    assert y.backup == data_dir / "backup" and y.top == 5


@pytest.mark.parametrize("text, key, line, expected", [
    ("classes = 2\ntrain\n", None, 2, "expected 'key = value'; got 'train'"),
    ("classes = 2\ntrain =\n", "train", 2, "expected a value after '='"),
    ("train = t.list\n", "classes", None, "missing: expected a line 'classes = ...' (darknet would silently assume 2)"),
    ("classes = ten\n", "classes", 1, "expected an integer; got 'ten'"),
    ("classes = 0\n", "classes", 1, "expected classes >= 1; got 0"),
])
def test_data_file_errors(tmp_path, text, key, line, expected):
    data = write(tmp_path / "bad.data", text)
    with pytest.raises(DarknetDataError) as e:
        read_data_file(data).classes
    message = str(e.value)
    assert message.startswith(f"{data}:{line}" if line else f"{data}")
    assert expected in message and (key is None or key in message)
    assert "\n" not in message


def test_darknet_data_files_from_their_layout(shared, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # darknet runs from its root; cfg/x.data names data/... relative to it
    coco = read_data_file(shared / "cfg" / "coco.data")
    assert coco.classes == 80 and coco.names[:2] == ["person", "bicycle"] and coco.get("eval") == "coco"
    with pytest.raises(DarknetDataError, match=r"coco.data:3: valid: file 'coco_testdev' not found"):
        coco.valid
    imagenet = read_data_file(shared / "cfg" / "imagenet1k.data")
    with pytest.warns(DarknetDataWarning, match="21842 entries for classes = 1000"):
        labels = imagenet.labels
    assert len(labels) == 1000 and imagenet.top == 5 and len(set(labels)) == 1000


def test_data_file_missing_files_and_counts(tmp_path):
    with pytest.raises(DarknetDataError, match="nothere.data: cannot read .data file"):
        read_data_file(tmp_path / "nothere.data")
    write(tmp_path / "labels.txt", "lab-a\nlab-b\nlab-c\n")
    write(tmp_path / "names.txt", "a\n\nc\n")
    d = read_data_file(write(tmp_path / "c.data", "classes = 4\nlabels = labels.txt\ntrain = t.list\n"
                                                  "names = names.txt\n"))
    with pytest.raises(DarknetDataError) as e:
        d.labels
    assert str(e.value).startswith(f"{tmp_path / 'c.data'}:2: labels:")
    assert "has 3 entries; expected classes = 4" in str(e.value) and "c.data:1: classes" in str(e.value)
    two = read_data_file(write(tmp_path / "two.data", "classes = 2\nlabels = labels.txt\n"))
    with pytest.warns(DarknetDataWarning, match="has 3 entries for classes = 2; using the first 2"):
        assert two.labels == ["lab-a", "lab-b"]
    with pytest.raises(DarknetDataError, match=r"c.data:3: train: file 't.list' not found"):
        d.train
    with pytest.raises(DarknetDataError, match=r"c.data: valid: missing.*data/train.list"):
        d.valid
    with pytest.raises(DarknetDataError, match=r"names.txt:2: empty line inside the list"):
        d.names


# -- lists and labels -------------------------------------------------------------------------------------
def test_read_list(tmp_path, monkeypatch):
    listed = write(tmp_path / "d" / "l.list", "  img/a.png \n\n/abs/b.png\r\nimg/c.png\n")
    write(tmp_path / "d" / "img" / "a.png", "")
    monkeypatch.chdir(tmp_path)
    assert read_list(listed) == [str(tmp_path / "d" / "img" / "a.png"), "/abs/b.png",
                                 str(tmp_path / "d" / "img" / "c.png")]
    write(tmp_path / "img" / "a.png", "")   # found from the current directory: kept as written
    assert read_list(listed) == ["img/a.png", "/abs/b.png", "img/c.png"]
    with pytest.raises(DarknetDataError, match="missing.list: cannot read image list"):
        read_list(tmp_path / "missing.list")
    with pytest.raises(DarknetDataError, match="empty.list: image list is empty"):
        read_list(write(tmp_path / "empty.list", "\n \n"))


def brute_force_classes(paths, labels):
    return [[i for i, label in enumerate(labels) if label in path] for path in paths]


@pytest.mark.parametrize("labels", [["ab", "bc", "cab", "ca"], ["ab", "abc", "b", "ca"]])
def test_class_indices_agree_with_strstr(labels):
    rng = random.Random(3)
    paths = ["".join(rng.choice("abcx/") for _ in range(rng.randint(1, 9))) for _ in range(3000)]
    found = brute_force_classes(paths, labels)
    single = [p for p, f in zip(paths, found) if len(f) == 1]
    assert len(single) > 100
    assert class_indices(single, labels).tolist() == [f[0] for p, f in zip(paths, found) if len(f) == 1]
    for path, f in zip(paths, found):
        if len(f) != 1:
            with pytest.raises(DarknetDataError) as e:
                class_indices([single[0], path], labels, "t.list")
            assert f"t.list: 1 of 2 image paths do not contain exactly one label; first: '{path}'" in str(e.value) \
                .replace(" (an image's class is the label its path contains)", "")
            named = "none of the labels" if not f else " and ".join(f"'{labels[i]}' (class {i})" for i in f)
            assert str(e.value).endswith(f"contains {named}")


def test_class_indices_bad_labels():
    with pytest.raises(DarknetDataError, match="labels 0 and 2 are both 'cat'"):
        class_indices(["cat.png"], ["cat", "dog", "cat"])
    with pytest.raises(DarknetDataError, match="label 1 is empty"):
        class_indices(["cat.png"], ["cat", ""])


def test_truth_matrix_label_smoothing():
    truth = truth_matrix(np.array([2, 0]), 4, label_smooth_eps=0.1)
    expected = np.full((2, 4), 0.1 / 3, dtype=np.float32)   # darknet: eps / (classes - 1) off the label
    expected[0, 2] = expected[1, 0] = 0.9                    # 1 - eps on it
    np.testing.assert_array_equal(truth, expected)
    np.testing.assert_array_equal(truth_matrix(np.array([1]), 3), [[0, 1, 0]])


# -- image loading ----------------------------------------------------------------------------------------
def test_load_image_matches_opencv(tmp_path):
    rng = np.random.default_rng(0)
    rgb = rng.integers(0, 256, (9, 13, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "rgb.png")
    im = load_image(tmp_path / "rgb.png", 3)
    assert im.dtype == np.float32 and im.shape == (3, 9, 13)
    cv = cv2.imread(str(tmp_path / "rgb.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(im, cv.transpose(2, 0, 1) / np.float32(255))
    grey_cv = cv2.imread(str(tmp_path / "rgb.png"), cv2.IMREAD_GRAYSCALE) / 255
    np.testing.assert_allclose(load_image(tmp_path / "rgb.png", 1)[0], grey_cv, atol=1.01 / 255)
    # alpha dropped as OpenCV's IMREAD_COLOR does; palette expanded; grey replicated to RGB
    rgba = np.dstack([rgb, rng.integers(0, 256, (9, 13), dtype=np.uint8)])
    Image.fromarray(rgba).save(tmp_path / "rgba.png")
    cv = cv2.imread(str(tmp_path / "rgba.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(load_image(tmp_path / "rgba.png"), cv.transpose(2, 0, 1) / np.float32(255))
    Image.fromarray(rgb).quantize(16).save(tmp_path / "pal.png")
    cv = cv2.imread(str(tmp_path / "pal.png"), cv2.IMREAD_COLOR)[:, :, ::-1]
    np.testing.assert_array_equal(load_image(tmp_path / "pal.png"), cv.transpose(2, 0, 1) / np.float32(255))
    Image.fromarray(rgb[:, :, 0]).save(tmp_path / "grey.png")
    np.testing.assert_array_equal(load_image(tmp_path / "grey.png"), np.repeat(rgb[None, :, :, 0], 3, 0) / np.float32(255))


def test_load_image_16_bit_and_exif(tmp_path):
    deep = np.random.default_rng(1).integers(0, 65536, (5, 6), dtype=np.uint16)
    cv2.imwrite(str(tmp_path / "deep.png"), deep)
    np.testing.assert_allclose(load_image(tmp_path / "deep.png", 1)[0], deep / 65535, rtol=1e-6)
    # EXIF orientation 6 (rotate 90 clockwise to display), applied as OpenCV's imread does
    rgb = np.zeros((8, 16, 3), dtype=np.uint8)
    rgb[:, :8] = 255
    exif = Image.Exif()
    exif[0x0112] = 6
    Image.fromarray(rgb).save(tmp_path / "turned.jpg", exif=exif, quality=100)
    cv = cv2.imread(str(tmp_path / "turned.jpg"), cv2.IMREAD_COLOR)[:, :, ::-1].transpose(2, 0, 1) / 255
    im = load_image(tmp_path / "turned.jpg")
    assert im.shape == cv.shape == (3, 16, 8)
    assert np.abs(im - cv).mean() < 2 / 255


def test_load_image_errors(tmp_path):
    Image.new("RGB", (40, 40), (10, 200, 30)).save(tmp_path / "ok.png")
    data = (tmp_path / "ok.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[:len(data) // 2])
    (tmp_path / "text.png").write_text("not an image")
    for name in ("cut.png", "text.png", "absent.png"):
        with pytest.raises(DarknetDataError) as e:
            load_image(tmp_path / name)
        assert str(e.value).startswith(f"{tmp_path / name}: cannot read image: ") and "\n" not in str(e.value)
    with pytest.raises(DarknetDataError, match="1 or 3 channels; the network asks for 4"):
        load_image(tmp_path / "ok.png", 4)


# -- darknet's image operations ---------------------------------------------------------------------------
def darknet_resize(im, w, h):
    """src/image.c resize_image, loop by loop (float32 as in C)."""
    c, H, W = im.shape
    part = np.zeros((c, H, w), np.float32)
    out = np.zeros((c, h, w), np.float32)
    w_scale = np.float32(W - 1) / np.float32(w - 1)
    h_scale = np.float32(H - 1) / np.float32(h - 1)
    for k in range(c):
        for r in range(H):
            for col in range(w):
                if col == w - 1 or W == 1:
                    part[k, r, col] = im[k, r, W - 1]
                else:
                    sx = np.float32(col) * w_scale
                    ix = int(sx)
                    dx = sx - np.float32(ix)
                    part[k, r, col] = (1 - dx) * im[k, r, ix] + dx * im[k, r, ix + 1]
    for k in range(c):
        for r in range(h):
            sy = np.float32(r) * h_scale
            iy = int(sy)
            dy = sy - np.float32(iy)
            out[k, r] = (1 - dy) * part[k, iy]
            if r == h - 1 or H == 1:
                continue
            out[k, r] += dy * part[k, iy + 1]
    return out


@pytest.mark.parametrize("src, dst", [((7, 5), (4, 9)), ((5, 11), (12, 3)), ((6, 6), (6, 17))])
def test_resize_image_matches_darknet(src, dst):
    im = np.random.default_rng(2).random((3,) + src[::-1], dtype=np.float32)
    assert int(np.float32(dst[1] - 1) * (np.float32(src[1] - 1) / np.float32(dst[1] - 1))) == src[1] - 1
    np.testing.assert_allclose(resize_image(im, *dst), darknet_resize(im, *dst), atol=1e-6)


def test_resize_image_last_row_is_last_input_row():
    # 32 -> 8 rows: darknet's float32 product for the last row rounds below 31 and keeps only ~0 of the data
    h_scale = np.float32(31) / np.float32(7)
    assert int(np.float32(7) * h_scale) == 30
    im = np.random.default_rng(3).random((1, 32, 5), dtype=np.float32) + 0.5
    out = resize_image(im, 5, 8)
    assert darknet_resize(im, 5, 8)[:, 7].max() < 1e-5
    np.testing.assert_allclose(out[:, :7], darknet_resize(im, 5, 8)[:, :7], atol=1e-6)
    np.testing.assert_allclose(out[:, 7], im[:, 31], atol=1e-6)


def test_resize_min_crop_and_flip():
    im = np.random.default_rng(4).random((3, 30, 50), dtype=np.float32)
    assert resize_min(im, 12).shape == (3, 12, 50 * 12 // 30)
    assert resize_min(im, 30) is im
    crop = crop_image(im, -2, 27, 4, 5)   # out of range coordinates repeat the edge (darknet's constrain_int)
    for j in range(5):
        for i in range(4):
            np.testing.assert_array_equal(crop[:, j, i], im[:, min(j + 27, 29), max(i - 2, 0)])
    flipped = flip_image(im)
    for x in (0, 7, 49):
        np.testing.assert_array_equal(flipped[:, :, x], im[:, :, 49 - x])


@pytest.mark.parametrize("net_w, net_h", [(16, 16), (16, 12), (12, 20)])
def test_classify_input_matches_reference(tmp_path, net_w, net_h):
    rgb = np.random.default_rng(5).integers(0, 256, (30, 40, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "in.png")
    options = aug_options(width=net_w, height=net_h)
    x = classify_input(tmp_path / "in.png", options)
    im = np.asarray(Image.open(tmp_path / "in.png").convert("RGB"), np.float32).transpose(2, 0, 1) / 255
    resized = darknet_resize(im, 40 * net_w // 30, net_w)   # resize_min: the shorter side (30) becomes net_w
    _, rh, rw = resized.shape
    dx, dy = int((rw - net_w) / 2), int((rh - net_h) / 2)
    rows = np.clip(np.arange(net_h) + dy, 0, rh - 1)
    cols = np.clip(np.arange(net_w) + dx, 0, rw - 1)
    assert x.shape == (1, 3, net_h, net_w) and x.dtype == np.float32
    np.testing.assert_allclose(x[0], resized[:, rows][:, :, cols], atol=1e-5)


def test_rotate_crop_zoom_and_rotation():
    im = np.random.default_rng(6).random((3, 32, 32), dtype=np.float32)
    # no rotation, zoom 1/2: every second pixel exactly (darknet samples at integer coordinates)
    np.testing.assert_array_equal(rotate_crop_image(im, 0.0, 0.5, 16, 16, 0, 0, 1.0), im[:, ::2, ::2])
    # 90 degrees about (w/2, h/2): output (x, y) samples input (x' = w - y, y' = x), zero past the edge
    out = rotate_crop_image(im, math.pi / 2, 1.0, 32, 32, 0, 0, 1.0)
    for y in range(1, 32):
        for x in (0, 5, 31):
            np.testing.assert_allclose(out[:, y, x], im[:, x, 32 - y], atol=1e-5)
    np.testing.assert_allclose(out[:, 0], 0, atol=1e-5)


@pytest.mark.parametrize("shape", [(40, 30), (30, 40), (16, 16), (100, 20)])
def test_random_crops_stay_inside(shape):
    """Without aspect jitter, darknet's crop (min_crop >= network size) lies inside the image. (With `aspect`,
    darknet's formula can reach a little past the edge, sampling zeros there; we keep that.)"""
    w, h = shape
    rng = np.random.default_rng(7)
    aug = aug_options(size=16, min_crop=16, max_crop=32)
    for _ in range(200):
        rad, scale, dx, dy, aspect = random_crop_params(w, h, aug, rng)
        assert rad == 0
        rx, ry = crop_coordinates(w, h, rad, scale, 16, 16, dx, dy, aspect)
        assert rx.min() >= -1e-4 and rx.max() < w and ry.min() >= -1e-4 and ry.max() < h


def test_augment_without_jitter_is_plain_crop():
    rng = np.random.default_rng(8)
    im = rng.random((3, 16, 16), dtype=np.float32)
    np.testing.assert_array_equal(augment_image(im, aug_options(16), rng), im)
    big = rng.random((3, 48, 48), dtype=np.float32)
    np.testing.assert_array_equal(augment_image(big, aug_options(16), rng), big[:, ::3, ::3])
    wide = aug_options(16, width=16, height=8)   # the square crop is then resized to the network size
    np.testing.assert_allclose(augment_image(im, wide, rng), darknet_resize(im, 16, 8), atol=1e-6)


def test_distort_matches_colorsys():
    rng = np.random.default_rng(9)
    im = rng.random((3, 6, 7), dtype=np.float32)
    for hue, sat, exp in [(0.0, 1.5, 1.0), (0.0, 1.0, 0.6), (0.3, 0.7, 1.4), (-0.45, 2.0, 0.5)]:
        out = distort_image(im, hue, sat, exp)
        for y in range(6):
            for x in range(7):
                h, s, v = colorsys.rgb_to_hsv(*im[:, y, x])
                h = h + hue
                h = h - 1 if h > 1 else h + 1 if h < 0 else h
                expected = np.clip(colorsys.hsv_to_rgb(h, s * sat, v * exp), 0, 1)
                np.testing.assert_allclose(out[:, y, x], expected, atol=2e-6)
    grey = rng.random((1, 4, 4), dtype=np.float32)
    np.testing.assert_allclose(distort_image(grey, 0.2, 3.0, 1.7), np.clip(grey * 1.7, 0, 1), rtol=1e-6)


@pytest.mark.parametrize("ksize", [5, 15])
def test_gaussian_blur_matches_opencv(ksize):
    im = np.random.default_rng(10).random((3, 20, 23), dtype=np.float32)
    expected = cv2.GaussianBlur(im.transpose(1, 2, 0), (ksize, ksize), 0).transpose(2, 0, 1)
    np.testing.assert_allclose(gaussian_blur(im, ksize), expected, atol=1e-5)


# -- ClassifierBatches ------------------------------------------------------------------------------------
COLOURS = {"lab-red": (230, 20, 20), "lab-green": (20, 230, 20), "lab-blue": (20, 20, 230)}


@pytest.fixture
def colour_set(tmp_path):
    """Solid-colour images, four per label; each image's colour tells its class."""
    paths = []
    for n in range(12):
        label = list(COLOURS)[n % 3]
        path = tmp_path / f"{n:02d}_{label}.png"
        Image.new("RGB", (16 + n, 16 + 2 * n), COLOURS[label]).save(path)
        paths.append(str(path))
    return paths, list(COLOURS)


def colour_classes(x):
    return x.mean(axis=(2, 3)).argmax(axis=1)


@pytest.mark.parametrize("augment", [False, True])
def test_batches_shapes_and_truth(colour_set, augment):
    paths, labels = colour_set
    options = aug_options(16, max_crop=24, flip=1, angle=7.0, aspect=0.8)
    with ClassifierBatches(paths, labels, options, 8, augment=augment, threads=2, seed=1) as batches:
        for _ in range(3):
            x, truth = batches.next()
            assert x.shape == (8, 3, 16, 16) and x.dtype == np.float32 and truth.dtype == np.float32
            assert truth.shape == (8, 3) and x.min() >= 0 and x.max() <= 1
            np.testing.assert_array_equal(truth.argmax(1), colour_classes(x))
            np.testing.assert_array_equal(truth.sum(1), 1)
            assert isinstance(batches.wait_seconds, float) and batches.wait_seconds >= 0
        assert batches.skipped == 0


def test_batches_deterministic_for_any_workers(colour_set):
    paths, labels = colour_set
    options = aug_options(16, max_crop=24, flip=1, angle=10.0, aspect=0.8, hue=0.1, saturation=1.5,
                          exposure=1.5, mixup=4, blur=1)

    def three(seed, **kwargs):
        with ClassifierBatches(paths, labels, options, 4, augment=True, seed=seed, **kwargs) as batches:
            return [batches.next() for _ in range(3)]

    reference = three(5, threads=1)
    for kwargs in ({"threads": 3}, {"threads": 2, "workers": "process"}):
        for (x, t), (x_ref, t_ref) in zip(three(5, **kwargs), reference):
            np.testing.assert_array_equal(x, x_ref)
            np.testing.assert_array_equal(t, t_ref)
    assert not np.array_equal(three(6, threads=1)[0][0], reference[0][0])


@pytest.mark.parametrize("mixup", [1, 2, 3])
def test_mixup_truth_matches_mixed_colours(colour_set, mixup):
    paths, labels = colour_set
    options = aug_options(16, mixup=mixup)   # crops are exact: each image stays one solid colour
    paths = [p for p in paths if "/00_" in p or "/01_" in p or "/02_" in p]   # the 16 x 16 images
    colours = np.array([COLOURS[label] for label in labels], np.float32) / 255
    mixed = 0
    with ClassifierBatches(paths, labels, options, 6, augment=True, seed=2) as batches:
        for _ in range(6):
            x, truth = batches.next()
            np.testing.assert_allclose(truth.sum(1), 1, rtol=1e-6)
            np.testing.assert_allclose(x.mean(axis=(2, 3)), truth @ colours, atol=2e-3)
            mixed += int((truth.max(1) < 1).any())
    assert mixed   # darknet mixes half of the batches


def test_corrupt_images_are_skipped_once(colour_set, tmp_path, capfd):
    paths, labels = colour_set
    good = Path(paths[0]).read_bytes()
    broken = tmp_path / "99_lab-red.png"
    broken.write_bytes(good[:len(good) // 2])
    options = aug_options(16, max_crop=24)
    with ClassifierBatches(paths[:3] + [str(broken)], labels, options, 8, augment=True, seed=3) as batches:
        for _ in range(4):
            x, truth = batches.next()
            np.testing.assert_array_equal(truth.argmax(1), colour_classes(x))
        assert batches.skipped >= 2   # drawn several times, replaced each time
    err = capfd.readouterr().err
    assert err.count(str(broken)) == 1 and "warning: skipping unreadable image" in err
    with ClassifierBatches([str(broken)], labels, options, 2, augment=True, seed=3) as batches:
        with pytest.raises(DarknetDataError, match="none of the 1 images in the list could be read"):
            batches.next()


def test_batches_reject_ambiguous_paths_before_work(colour_set):
    paths, labels = colour_set
    with pytest.raises(DarknetDataError, match="1 of 13 image paths do not contain exactly one label"):
        ClassifierBatches(paths + ["x/lab-red_lab-blue.png"], labels, aug_options(16), 4, augment=True)


# -- digits dataset ---------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    return make_digits(tmp_path_factory.mktemp("digits"), size=32, seed=0)


def test_make_digits(digits, tmp_path, monkeypatch):
    from sklearn.datasets import load_digits
    source = load_digits()
    monkeypatch.chdir(tmp_path)   # the relative paths in the dataset work from elsewhere
    data = read_data_file(digits)
    assert data.classes == 10 and data.labels == list(LABELS) and len(data.names) == 10
    assert not any(a in b for a in LABELS for b in LABELS if a != b)
    train, valid = read_list(data.train), read_list(data.valid)
    assert len(train) + len(valid) == 1797 and not set(train) & set(valid)
    indices = [int(Path(p).name.split("_")[0]) for p in train + valid]
    assert sorted(indices) == list(range(1797))
    np.testing.assert_array_equal(class_indices(train + valid, data.labels), source.target[indices])
    valid_targets = source.target[[int(Path(p).name.split("_")[0]) for p in valid]]
    for digit in range(10):
        assert (valid_targets == digit).sum() == round(0.2 * (source.target == digit).sum())
    for path, index in zip(train[:50] + valid[:50], indices[:50] + indices[len(train):len(train) + 50]):
        im = np.asarray(Image.open(path))
        assert im.shape == (32, 32)
        np.testing.assert_array_equal(im[::4, ::4], np.rint(source.images[index] * 255 / 16))
    assert data.backup.is_dir()


def test_make_digits_deterministic(digits, tmp_path):
    again = make_digits(tmp_path / "again", size=32, seed=0)
    assert (again.parent / "valid.list").read_text() == (digits.parent / "valid.list").read_text()
    other = make_digits(tmp_path / "other", size=28, seed=1)
    assert (other.parent / "valid.list").read_text() != (digits.parent / "valid.list").read_text()
    assert Image.open(other.parent / read_list(other.parent / "train.list")[0]).size == (28, 28)
