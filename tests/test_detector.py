"""Detector inference and evaluation: yolo/region decoding against darknet's formulas computed by hand, NMS
(greedy, DIoU, beta) on hand-made boxes, darknet's print order, AP by hand for -points 0/11/101, agreement with
OpenCV DNN 4.x's yolo outputs on real cfgs, and the `detector test` / `detector map` command line."""
import io
import json
import math
import re

import numpy as np
import pytest

from conftest import load_quiet, one_error_line
from darknet_py import DarknetError
from darknet_py.cli import main
from darknet_py.detection import (Detections, MapStats, average_precision, box_iou, label_path, letterbox_image,
                                  network_boxes, nms_sort, printed_detections)
from darknet_py.weights import save_weights


def sigmoid(v):
    return 1.0 / (1.0 + math.exp(-v))


def write(path, text):
    path.write_text(text)
    return path


HEAD_CFG = """[net]
width={w}
height={h}
channels=3

[convolutional]
filters={filters}
size=1
stride=1
pad=0
activation=linear

[{head}]
{options}
"""


def head_net(tmp_path, head, options, filters, w=64, h=32):
    cfg = write(tmp_path / f"{head}.cfg", HEAD_CFG.format(w=w, h=h, filters=filters, head=head, options=options))
    return load_quiet(cfg)


def planted_yolo(net, cell, anchor, logits):
    """Run the yolo layer's forward on an input that is 0 everywhere except `logits` at one cell and anchor
    (values per anchor: x, y, w, h, objectness, classes), with objectness -20 elsewhere."""
    layer = net.layers[-1]
    values = 5 + layer.classes
    x = np.zeros((1, layer.n, values, layer.h, layer.w), np.float32)
    x[:, :, 4] = -20
    col, row = cell
    x[0, anchor, :, row, col] = logits
    layer.output = layer.forward(x.reshape(1, -1, layer.h, layer.w), net)
    return layer


YOLO_OPTIONS = "mask=1,2\nanchors=10,14, 23,27, 37,58\nclasses=2\nnum=3\nscale_x_y={s}\nnew_coords={nc}"


@pytest.mark.parametrize("new_coords", [0, 1])
@pytest.mark.parametrize("letter_box", [False, True])
def test_yolo_decoding_by_hand(tmp_path, new_coords, letter_box):
    s = 1.1
    net = head_net(tmp_path, "yolo", YOLO_OPTIONS.format(s=s, nc=new_coords), filters=14)   # 64x32 grid
    tx, ty, tw, th, obj, c0, c1 = (0.3, -0.7, 0.4, -0.2, 0.9, 2.0, -1.0) if not new_coords else \
        (0.6, 0.2, 0.7, 0.4, 0.8, 0.9, 0.1)
    col, row = 5, 3
    planted_yolo(net, (col, row), 1, [tx, ty, tw, th, obj, c0, c1])   # mask entry 1 = anchor 2: 37 x 58
    im_w, im_h = 100, 100
    dets = network_boxes(net, im_w, im_h, thresh=0.25, letter_box=letter_box)
    assert len(dets) == 1
    # darknet: forward applies the logistic (not with new_coords) and x*s - (s-1)/2; get_yolo_box adds the cell
    act = (lambda v: v) if new_coords else sigmoid
    x = (col + act(tx) * s - (s - 1) / 2) / 64
    y = (row + act(ty) * s - (s - 1) / 2) / 32
    if new_coords:
        w, h = tw * tw * 4 * 37 / 64, th * th * 4 * 58 / 32
    else:
        w, h = math.exp(tw) * 37 / 64, math.exp(th) * 58 / 32
    if letter_box:   # a 100x100 image in a 64x32 input: scaled to 32x32, 16 columns of grey on each side
        x, w = (x - 32 / 2 / 64) / (32 / 64), w * 64 / 32
    objectness = act(obj)
    probs = [objectness * act(c0), objectness * act(c1)]
    probs = [p if p > 0.25 else 0 for p in probs]
    assert np.allclose(dets.boxes[0], [x, y, w, h], rtol=1e-5, atol=1e-6)
    assert np.isclose(dets.objectness[0], objectness, rtol=1e-6)
    assert np.allclose(dets.probs[0], probs, rtol=1e-5)


def test_yolo_threshold_is_on_objectness(tmp_path):
    net = head_net(tmp_path, "yolo", YOLO_OPTIONS.format(s=1, nc=0), filters=14)
    planted_yolo(net, (0, 0), 0, [0, 0, 0, 0, -1.2, 5, 5])   # objectness .23
    assert len(network_boxes(net, 64, 32, thresh=0.25)) == 0
    assert len(network_boxes(net, 64, 32, thresh=0.2)) == 1


def test_region_decoding_by_hand(tmp_path):
    net = head_net(tmp_path, "region", "anchors=1.5,2.5, 3,4\nclasses=2\nnum=2\nsoftmax=1\ncoords=4",
                   filters=14, w=48, h=32)
    layer = net.layers[-1]
    x = np.zeros((1, 2, 7, 32, 48), np.float32)
    x[:, :, 4] = -20
    col, row = 7, 4
    tx, ty, tw, th, obj, c0, c1 = 0.2, -0.4, 0.3, -0.6, 1.5, 1.0, -0.5
    x[0, 1, :, row, col] = [tx, ty, tw, th, obj, c0, c1]
    layer.output = layer.forward(x.reshape(1, 14, 32, 48), net)
    dets = network_boxes(net, 48, 32, thresh=0.25)
    assert len(dets) == 48 * 32 * 2   # darknet keeps every cell and anchor of a region layer
    k = (row * 48 + col) * 2 + 1
    softmax = [math.exp(c0) / (math.exp(c0) + math.exp(c1)), math.exp(c1) / (math.exp(c0) + math.exp(c1))]
    probs = [sigmoid(obj) * p for p in softmax]
    expected = [(col + sigmoid(tx)) / 48, (row + sigmoid(ty)) / 32, math.exp(tw) * 3 / 48, math.exp(th) * 4 / 32]
    assert np.allclose(dets.boxes[k], expected, rtol=1e-5)
    assert np.allclose(dets.probs[k], [p if p > 0.25 else 0 for p in probs], rtol=1e-5)
    assert np.count_nonzero(dets.probs) == sum(p > 0.25 for p in probs)


@pytest.mark.parametrize("point", ["center", "left_top", "right_bottom"])
def test_gaussian_yolo_decoding_by_hand(tmp_path, point):
    net = head_net(tmp_path, "Gaussian_yolo", f"mask=0\nanchors=10,14\nclasses=2\nnum=1\nyolo_point={point}",
                   filters=11)
    layer = net.layers[-1]
    x = np.zeros((1, 1, 11, 32, 64), np.float32)
    x[:, :, 8] = -20
    t = [0.3, -1.0, -0.4, 0.5, 0.2, -2.0, -0.3, 0.1, 1.2, 0.8, -2.5]   # x sx y sy w sw h sh obj c0 c1
    col, row = 9, 6
    x[0, 0, :, row, col] = t
    layer.output = layer.forward(x.reshape(1, 11, 32, 64), net)
    dets = network_boxes(net, 64, 32, thresh=0.1)
    w, h = math.exp(t[4]) * 10 / 64, math.exp(t[6]) * 14 / 32
    shift = {"center": 0, "left_top": 0.5, "right_bottom": -0.5}[point]
    expected = [(col + sigmoid(t[0])) / 64 + shift * w, (row + sigmoid(t[2])) / 32 + shift * h, w, h]
    uncertainty = (sigmoid(t[1]) + sigmoid(t[3]) + sigmoid(t[5]) + sigmoid(t[7])) / 4
    probs = [sigmoid(t[8]) * sigmoid(c) * (1 - uncertainty) for c in t[9:]]
    assert len(dets) == 1
    assert np.allclose(dets.boxes[0], expected, rtol=1e-5)
    assert np.allclose(dets.probs[0], [p if p > 0.1 else 0 for p in probs], rtol=1e-5)


def test_yolov1_detection_decoding_by_hand(tmp_path):
    cfg = write(tmp_path / "v1.cfg", "[net]\nwidth=8\nheight=8\nchannels=1\n\n[connected]\noutput=28\n"
                                     "activation=linear\n\n[detection]\nclasses=2\ncoords=4\nside=2\nnum=1\n"
                                     "sqrt=1\nsoftmax=0\n")
    net = load_quiet(cfg)
    layer = net.layers[-1]
    values = np.linspace(0.05, 0.95, 28).astype(np.float32)   # 4 cells x 2 classes, 4 scales, 4 boxes
    layer.output = layer.forward(values[None], net)
    dets = network_boxes(net, 100, 100, thresh=0.2)
    for cell in range(4):
        col, row = cell % 2, cell // 2
        scale = values[8 + cell]
        bx = values[12 + 4 * cell:16 + 4 * cell]
        assert np.allclose(dets.boxes[cell], [(bx[0] + col) / 2, (bx[1] + row) / 2, bx[2] ** 2, bx[3] ** 2])
        probs = [scale * values[2 * cell + j] for j in range(2)]
        assert np.allclose(dets.probs[cell], [p if p > 0.2 else 0 for p in probs])


def test_letterbox_image_centres_on_grey():
    image = np.random.default_rng(0).random((3, 50, 100), dtype=np.float32)
    boxed = letterbox_image(image, 64, 64)   # 100x50 -> 64x32, rows 16..47
    assert np.all(boxed[:, :16] == 0.5) and np.all(boxed[:, 48:] == 0.5)
    assert np.allclose(boxed[:, 16, 0], image[:, 0, 0]) and np.allclose(boxed[:, 47, 63], image[:, 49, 99])


# -- NMS --------------------------------------------------------------------------------------------
def hand_iou(a, b):
    left, right = max(a[0] - a[2] / 2, b[0] - b[2] / 2), min(a[0] + a[2] / 2, b[0] + b[2] / 2)
    top, bottom = max(a[1] - a[3] / 2, b[1] - b[3] / 2), min(a[1] + a[3] / 2, b[1] + b[3] / 2)
    inter = max(right - left, 0) * max(bottom - top, 0)
    return inter / (a[2] * a[3] + b[2] * b[3] - inter)


def hand_diou(a, b, beta):
    cw = max(a[0] + a[2] / 2, b[0] + b[2] / 2) - min(a[0] - a[2] / 2, b[0] - b[2] / 2)
    ch = max(a[1] + a[3] / 2, b[1] + b[3] / 2) - min(a[1] - a[3] / 2, b[1] - b[3] / 2)
    d = (a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2
    return hand_iou(a, b) - (d / (cw * cw + ch * ch)) ** beta


def test_box_iou_by_hand():
    a, b = (0.3, 0.5, 0.4, 0.4), (0.42, 0.55, 0.3, 0.2)
    assert np.isclose(box_iou(a, b), hand_iou(a, b), rtol=1e-6)
    assert box_iou(a, (0.9, 0.9, 0.1, 0.1)) == 0


# A and B overlap with IoU .538 > .45, but their DIoU (exponent .6) is .408 < .45
A, B, FAR = (0.3, 0.5, 0.4, 0.4), (0.42, 0.5, 0.4, 0.4), (0.85, 0.2, 0.1, 0.1)


@pytest.mark.parametrize("kind, beta", [("default", 0.6), ("greedynms", 0.6), ("diounms", 0.6),
                                        ("diounms", 1.0)])
def test_nms_kinds_on_hand_made_boxes(kind, beta):
    dets = Detections([B, A, FAR], [0.9, 0.9, 0.9], [[0.8, 0.0], [0.9, 0.3], [0.7, 0.0]])
    out = nms_sort(dets, 0.45, kind, beta)
    overlap = hand_iou(A, B) if kind == "default" else hand_diou(A, B, 0.6 if kind == "greedynms" else beta)
    assert hand_iou(A, B) > 0.45
    suppressed = overlap > 0.45
    assert suppressed == (kind == "default" or beta == 1.0)
    by_box = {tuple(round(float(v), 4) for v in out.boxes[i]): out.probs[i] for i in range(3)}
    assert np.isclose(by_box[B][0], 0 if suppressed else 0.8)   # B loses class 0 to the more probable A
    assert np.isclose(by_box[A][0], 0.9) and np.isclose(by_box[A][1], 0.3) and np.isclose(by_box[FAR][0], 0.7)


def test_nms_leaves_zero_objectness_alone_and_orders_by_last_class():
    dets = Detections([A, A, B], [0.0, 0.9, 0.9], [[0.95, 0.0], [0.9, 0.0], [0.2, 0.6]])
    out = nms_sort(dets, 0.45)
    # the objectness-0 box is moved to the end untouched; the others end sorted by class 1 (the last)
    assert out.objectness[-1] == 0 and np.isclose(out.probs[-1, 0], 0.95)
    assert np.allclose(out.probs[:2], [[0.0, 0.6], [0.9, 0.0]])   # B's class 0 (.2) suppressed by A's .9


def reference_nms(boxes, objectness, probs, thresh):
    """darknet's do_nms_sort transcribed loop by loop (Python floats, list.sort is stable like glibc's qsort)."""
    dets = [[list(b), o, list(p)] for b, o, p in zip(boxes, objectness, probs)]
    k = len(dets) - 1
    i = 0
    while i <= k:
        if dets[i][1] == 0:
            dets[i], dets[k] = dets[k], dets[i]
            k -= 1
            i -= 1
        i += 1
    total = k + 1
    for cls in range(len(probs[0])):
        dets[:total] = sorted(dets[:total], key=lambda d: -d[2][cls])
        for i in range(total):
            if dets[i][2][cls] == 0:
                continue
            for j in range(i + 1, total):
                if hand_iou(dets[i][0], dets[j][0]) > thresh:
                    dets[j][2][cls] = 0
    return dets


@pytest.mark.parametrize("matrix_limit", [0, 10_000])
def test_nms_matches_a_transcription_of_darknet(monkeypatch, matrix_limit):
    import darknet_py.detection as detection
    monkeypatch.setattr(detection, "MAX_NMS_MATRIX", matrix_limit)   # both the row-by-row and the matrix path
    rng = np.random.default_rng(1)
    n = 60
    boxes = np.column_stack([rng.uniform(0.2, 0.8, (n, 2)), rng.uniform(0.05, 0.4, (n, 2))]).astype(np.float32)
    objectness = np.where(rng.random(n) < 0.1, 0, rng.uniform(0.3, 1, n)).astype(np.float32)
    probs = np.where(rng.random((n, 3)) < 0.3, 0, rng.uniform(0.01, 1, (n, 3))).astype(np.float32)
    out = nms_sort(Detections(boxes, objectness, probs), 0.45)
    expected = reference_nms(boxes.astype(float), objectness.astype(float), probs.astype(float), 0.45)
    assert np.allclose(out.boxes, [d[0] for d in expected])
    assert np.allclose(out.probs, [d[2] for d in expected])
    assert 0 < np.count_nonzero(out.probs) < np.count_nonzero(probs)


def test_printed_order_is_left_to_right_best_class_first():
    names = ["cat", "dont_show_me", "dog"]
    dets = Detections([(0.6, 0.5, 0.2, 0.2), (0.2, 0.5, 0.2, 0.2), (0.5, 0.5, 0.1, 0.1)], [1, 1, 1],
                      [[0.3, 0.0, 0.7], [0.9, 0.95, 0.0], [0.2, 0.0, 0.1]])
    printed = [(names[c], round(p, 2)) for c, p, _, _ in printed_detections(dets, 0.25, names)]
    # box 1 (left .1): best class cat (a dont_show class is never the best, but darknet's loop over the other
    # classes does not skip it); box 0 (left .5): dog best, then cat; box 2 is below thresh
    assert printed == [("cat", 0.9), ("dont_show_me", 0.95), ("dog", 0.7), ("cat", 0.3)]


# -- mAP --------------------------------------------------------------------------------------------
def test_average_precision_by_hand_for_each_points_method():
    """One class, 3 objects (G1, G2 in image 1, G3 in image 2); detections by confidence: TP G1, FP, TP G3,
    FP (G1 again), TP G2 -> precision 1, 1/2, 2/3, 1/2, 3/5 at recall 1/3, 1/3, 2/3, 2/3, 1."""
    g1, g2, g3 = (0.25, 0.25, 0.2, 0.2), (0.7, 0.7, 0.3, 0.2), (0.5, 0.5, 0.4, 0.4)
    stats = MapStats(classes=2, thresh=0.55, iou_thresh=0.5)
    near_g1 = (0.26, 0.25, 0.2, 0.2)
    stats.add(Detections([g1, (0.9, 0.1, 0.1, 0.1), near_g1, g2], [1] * 4,
                         [[0.9, 0], [0.8, 0], [0.6, 0], [0.5, 0]]), [0, 0], [g1, g2])
    stats.add(Detections([g3], [1], [[0.7, 0]]), [0], [g3])
    aps = {points: stats.result(points).aps[0] for points in (0, 11, 101)}
    assert np.isclose(aps[0], 1 / 3 * 1 + 1 / 3 * (2 / 3) + 1 / 3 * (3 / 5))
    # 11 levels 0, .1, ..., 1: four reach precision 1, three 2/3, four 3/5
    assert np.isclose(aps[11], (4 * 1 + 3 * (2 / 3) + 4 * (3 / 5)) / 11)
    # 101 levels: .00-.33 -> 1, .34-.66 -> 2/3, .67-1 -> 3/5
    assert np.isclose(aps[101], (34 * 1 + 33 * (2 / 3) + 34 * (3 / 5)) / 101)
    result = stats.result(0)
    assert result.aps[1] == 0 and np.isclose(result.map, aps[0] / 2)
    # at conf .55: G1 (TP), FP, G1 again (FP: already found in this image), G3 (TP)
    assert (result.tp, result.fp, result.fn) == (2, 2, 1)
    assert np.isclose(result.precision, 0.5) and np.isclose(result.recall, 2 / 3)
    assert np.isclose(result.average_iou, (1 + 1) / 4)
    assert result.detections_count == 5 and result.unique_truth_count == 3


def test_average_precision_function():
    assert average_precision([1.0, 0.5], [0.5, 0.5], 0) == 0.5
    assert average_precision([], [], 11) == 0.0
    for points in (1, -3, 7):   # darknet documents 0, 11 and 101 (one recall level would divide by zero)
        with pytest.raises(DarknetError, match=f"-points {points}: expected 0 .area under the curve., 11 "
                                               f".VOC2007. or 101 .COCO.$"):
            average_precision([1.0], [1.0], points)


def test_label_path_rule():
    assert label_path("/d/VOC2007/JPEGImages/000001.jpg") == "/d/VOC2007/labels/000001.txt"
    assert label_path("/coco/images/val2014/x.JPEG") == "/coco/labels/val2014/x.txt"
    assert label_path("/data/images/x.png") == "/data/images/x.txt"   # other 'images' folders stay
    assert label_path("/a.jpg/b.gif") == "/a.jpg/b.gif"


# -- agreement with OpenCV --------------------------------------------------------------------------
@pytest.mark.parametrize("name", ["yolov4-tiny", "yolov3-tiny"])
def test_yolo_boxes_match_opencv(shared, tmp_path, name):
    cv2 = pytest.importorskip("cv2")
    if not hasattr(cv2.dnn, "readNetFromDarknet"):
        pytest.skip("this OpenCV has no darknet importer")
    from reference_nets import image_blob, reference_net
    cfg = shared / "cfg" / f"{name}.cfg"
    weights = tmp_path / "w.weights"
    net = reference_net(cfg, weights)
    x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
    net.forward(x)
    dets = network_boxes(net, net.width, net.height, thresh=0.0)
    cvnet = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setInput(x)
    # OpenCV's rows: cell by cell, anchor by anchor, heads in order: [x, y, w, h, objectness, class scores]
    theirs = np.concatenate(cvnet.forward(cvnet.getUnconnectedOutLayersNames()))
    assert theirs.shape == (len(dets), 4 + 1 + dets.probs.shape[1])
    assert np.allclose(dets.boxes, theirs[:, :4], rtol=1e-4, atol=1e-5)
    assert np.allclose(dets.objectness, theirs[:, 4], rtol=1e-4, atol=1e-5)
    # OpenCV zeroes class scores below its region layer's thresh, .2 (entries within 1e-4 of it may fall either way)
    clear = np.abs(dets.probs - 0.2) > 1e-4
    ours = np.where(dets.probs > 0.2, dets.probs, 0)
    assert clear.mean() > 0.99 and (theirs[:, 5:] > 0).mean() > 0.9
    assert np.allclose(ours[clear], theirs[:, 5:][clear], rtol=1e-4, atol=1e-5)


def test_detections_on_real_images_are_deterministic(shared, tmp_path):
    from reference_nets import reference_net
    net = reference_net(shared / "cfg" / "yolov3-tiny.cfg", tmp_path / "w.weights")
    for image in ("dog.jpg", "horses.jpg"):
        first = net.detect(shared / "data" / image, thresh=0.1)
        assert first and net.detect(shared / "data" / image, thresh=0.1) == first


# -- command line -----------------------------------------------------------------------------------
TINY_CFG = """[net]
width=32
height=32
channels=3

[maxpool]
size=8
stride=8

[convolutional]
filters=7
size=1
stride=1
pad=0
activation=linear

[yolo]
mask=0
anchors=16,16
classes=2
num=1
"""
# every cell of the 4x4 grid predicts a 16x16 box (half the input) centred on the cell, class 0 ("a")
LOGITS = [0, 0, 0, 0, 3.0, 2.0, -8.0]


@pytest.fixture
def tiny(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cfg = write(tmp_path / "tiny.cfg", TINY_CFG)
    net = load_quiet(cfg)
    net.layers[1].weights = {"biases": np.array(LOGITS, np.float32), "weights": np.zeros((7, 3, 1, 1), np.float32)}
    save_weights(net, tmp_path / "tiny.weights")
    write(tmp_path / "tiny.names", "a\nb\n")
    write(tmp_path / "tiny.data", "classes = 2\nnames = tiny.names\nvalid = valid.txt\n")
    image = tmp_path / "img.png"
    from PIL import Image
    Image.new("RGB", (200, 100), (120, 60, 30)).save(image)
    return tmp_path


def run(capsys, *argv, stdin=None, monkeypatch=None):
    if stdin is not None:
        monkeypatch.setattr("sys.stdin", io.StringIO(stdin))
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def c_round(v):
    return int(math.copysign(math.floor(abs(v) + 0.5), v))


def expected_tiny_lines(im_w, im_h):
    prob = sigmoid(3.0) * sigmoid(2.0)
    lines = []
    for col in range(4):
        for row in range(4):   # box centre (col + .5)/4, size .5: left edge (col + .5)/4 - .25, halves rounded away
            left = c_round(((col + 0.5) / 4 - 0.25) * im_w)
            top = c_round(((row + 0.5) / 4 - 0.25) * im_h)
            lines.append(f"a: {prob * 100:.0f}%\t(left_x: {left:4d}   top_y: {top:4d}   width: {im_w // 2:4d}   "
                         f"height: {im_h // 2:4d})")
    return lines


def test_cli_test_prints_like_darknet(capsys, tiny):
    code, out, err = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png",
                         "-ext_output", "-dont_show")
    assert code == 0, err
    lines = out.splitlines()
    assert re.fullmatch(r"img\.png: Predicted in \d+\.\d{6} milli-seconds\.", lines[0])
    assert sorted(lines[1:]) == sorted(expected_tiny_lines(200, 100))
    lefts = [int(re.search(r"left_x: +(-?\d+)", line).group(1)) for line in lines[1:]]
    assert lefts == sorted(lefts)
    assert (tiny / "predictions.jpg").is_file()
    code, out, _ = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "img.png")
    assert out.splitlines()[1:] == [f"a: {sigmoid(3.0) * sigmoid(2.0) * 100:.0f}%"] * 16


def test_cli_json_stdin_and_list(capsys, tiny, monkeypatch):
    code, out, err = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "-out", "r.json",
                         stdin="img.png\n\nimg.png\n", monkeypatch=monkeypatch)
    assert code == 0, err
    assert out.count("Enter Image Path: ") == 4 and out.count("Predicted in") == 2
    frames = json.loads((tiny / "r.json").read_text())
    assert [f["frame_id"] for f in frames] == [1, 2] and frames[0]["filename"] == "img.png"
    objects = frames[0]["objects"]
    assert len(objects) == 16 and set(objects[0]) == {"class_id", "name", "relative_coordinates", "confidence"}
    assert {(o["class_id"], o["name"]) for o in objects} == {(0, "a")}
    centres = sorted((o["relative_coordinates"]["center_x"], o["relative_coordinates"]["center_y"]) for o in objects)
    assert np.allclose(centres, sorted(((c + 0.5) / 4, (r + 0.5) / 4) for c in range(4) for r in range(4)))
    assert all(o["relative_coordinates"]["width"] == 0.5 for o in objects)
    assert np.isclose(objects[0]["confidence"], sigmoid(3.0) * sigmoid(2.0), atol=1e-6)
    write(tiny / "list.txt", "img.png\nimg.png\nimg.png\n")
    code, out, _ = run(capsys, "detector", "test", "tiny.data", "tiny.cfg", "tiny.weights", "list.txt")
    assert code == 0 and out.count("Predicted in") == 3 and "Enter Image Path" not in out


def test_python_detect(tiny):
    net = load_quiet(tiny / "tiny.cfg", weights=tiny / "tiny.weights")
    found = net.detect(tiny / "img.png", names=["a", "b"])
    assert len(found) == 16 and {name for name, _, _ in found} == {"a"}
    assert sorted(box for _, _, box in found) == sorted(
        ((c + 0.5) * 50, (r + 0.5) * 25, 100.0, 50.0) for c in range(4) for r in range(4))
    assert net.detect(np.zeros((10, 20, 3), np.uint8), thresh=0.9) == []


def test_cli_map(capsys, tiny):
    # one image whose truth is the 16 predicted boxes of class 0 and one extra object of class 1
    write(tiny / "valid.txt", "img.png\n")
    truth = [f"0 {(c + 0.5) / 4} {(r + 0.5) / 4} 0.5 0.5" for c in range(4) for r in range(4)]
    write(tiny / "img.txt", "\n".join(truth + ["1 0.5 0.5 0.2 0.2"]) + "\n")
    code, out, err = run(capsys, "detector", "map", "tiny.data", "tiny.cfg", "tiny.weights")
    assert code == 0, err
    assert " detections_count = 16, unique_truth_count = 17  " in out
    assert "class_id = 0, name = a, ap = 100.00%   \t (TP = 16, FP = 0) " in out
    assert "class_id = 1, name = b, ap = 0.00%   \t (TP = 0, FP = 0) " in out
    assert " for conf_thresh = 0.25, TP = 16, FP = 0, FN = 1, average IoU = 100.00 % " in out
    assert " mean average precision (mAP@0.50) = 0.500000, or 50.00 % " in out
    assert " IoU threshold = 50 %, used Area-Under-Curve for each unique Recall " in out
    code, out, _ = run(capsys, "detector", "map", "tiny.data", "tiny.cfg", "tiny.weights", "-points", "11",
                       "-iou_thresh", "0.75")
    assert code == 0 and " IoU threshold = 75 %, used 11 Recall-points " in out
    assert " mean average precision (mAP@0.75) = 0.500000, or 50.00 % " in out
    code, _, err = run(capsys, "detector", "map", "tiny.data", "tiny.cfg", "tiny.weights", "-points", "1")
    assert code == 2 and "argument -points: invalid choice: 1 (choose from 0, 11, 101)" in err


def test_cli_errors(capsys, tiny, shared):
    cases = [
        (["tiny.data", shared / "cfg" / "darknet.cfg", "tiny.weights", "img.png"],
         ("darknet.cfg: this cfg has no detection layer", "use classifier predict")),
        (["tiny.data", "tiny.cfg", "tiny.weights", "missing.jpg"], ("missing.jpg: cannot read image",)),
        (["tiny.data", "tiny.cfg", "tiny.names", "img.png"], ("tiny.names",)),
        (["nonames.data", "tiny.cfg", "tiny.weights", "img.png"], ("nonames.data", "names: missing")),
        (["three.data", "tiny.cfg", "tiny.weights", "img.png"], ("three.names has 3 names", "tiny.cfg:",
                                                                 "classes is 2")),
    ]
    write(tiny / "nonames.data", "classes = 2\n")
    write(tiny / "three.names", "a\nb\nc\n")
    write(tiny / "three.data", "names = three.names\n")
    big = tiny / "big.weights"
    big.write_bytes((tiny / "tiny.weights").read_bytes() + bytes(40))
    cases.append((["tiny.data", "tiny.cfg", "big.weights", "img.png"], ("big.weights", "left over")))
    for argv, words in cases:
        code, out, err = run(capsys, "detector", "test", *argv, "-out", "err.json")
        assert code == 2 and one_error_line(err), (argv, err)
        assert all(w in err for w in words), (argv, err)
        assert not (tiny / "err.json").exists() and not (tiny / "predictions.jpg").exists()
