"""[region] (YOLOv2) training loss against a flat-index transcription of darknet's forward_region_layer, a
one-truth case by hand, finite differences, and a tiny `detector train` with a region head."""
import math
import warnings

import numpy as np
import pytest

import darknet_py
from darknet_py.backend import NumpyOps

ANCHORS = [0.6, 0.8, 1.5, 1.2, 3.0, 2.6]     # grid cells, as yolov2 cfgs give them


def region_net(tmp_path, classes=3, num=3, **options):
    opts = {"anchors": ",".join(map(str, ANCHORS[:2 * num])), "classes": classes, "num": num, "coords": 4,
            "softmax": 1}
    opts.update(options)
    text = (f"[net]\nwidth=64\nheight=64\nchannels=3\n\n[convolutional]\nfilters={num * (classes + 5)}\n"
            f"size=1\nstride=16\npad=0\nactivation=linear\n\n[region]\n" +
            "".join(f"{k}={v}\n" for k, v in opts.items()))
    path = tmp_path / "r.cfg"
    path.write_text(text)
    net = darknet_py.load(path, quiet=True, batch=2)
    net.ops = NumpyOps(np.float64)
    return net


def run_head(net, z, truth, seen):
    head = net.layers[-1]
    net.train, net.truth, net.seen = True, truth, seen
    out = head.forward(z, net)
    return out, head.loss_grad


# -- darknet transcription (flat indices, as region_layer.c) ------------------------------------------------
def logistic(x):
    return 1 / (1 + math.exp(-x))


def c_overlap(x1, w1, x2, w2):
    return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)


def c_iou(a, b):
    w, h = c_overlap(a[0], a[2], b[0], b[2]), c_overlap(a[1], a[3], b[1], b[3])
    inter = 0 if w < 0 or h < 0 else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0 if inter == 0 or union == 0 else inter / union


def c_get_region_box(x, biases, n, index, i, j, w, h):
    return [(i + logistic(x[index])) / w, (j + logistic(x[index + 1])) / h,
            math.exp(x[index + 2]) * biases[2 * n] / w, math.exp(x[index + 3]) * biases[2 * n + 1] / h]


def c_delta_region_box(truth, x, biases, n, index, i, j, w, h, delta, scale):
    pred = c_get_region_box(x, biases, n, index, i, j, w, h)
    iou = c_iou(pred, truth)
    tx, ty = truth[0] * w - i, truth[1] * h - j
    tw, th = math.log(truth[2] * w / biases[2 * n]), math.log(truth[3] * h / biases[2 * n + 1])
    for k, t in ((0, tx), (1, ty)):
        s = logistic(x[index + k])
        delta[index + k] = scale * (t - s) * (1 - s) * s
    delta[index + 2] = scale * (tw - x[index + 2])
    delta[index + 3] = scale * (th - x[index + 3])
    return iou


def c_delta_region_class(output, delta, index, class_id, classes, scale, avg_cat):
    for n in range(classes):
        delta[index + n] = scale * ((1 if n == class_id else 0) - output[index + n])
        if n == class_id:
            avg_cat[0] += output[index + n]


def c_forward_region(out, truth, p, lw, lh, batch, seen):
    """forward_region_layer's training part on the flat (transposed) output; returns delta (same order) and
    the printed averages."""
    size, ln, classes = p["classes"] + 5, p["num"], p["classes"]
    outputs = lw * lh * ln * size
    biases = p["anchors"]
    delta = np.zeros(len(out))
    avg_iou = recall = avg_obj = avg_anyobj = 0.0
    avg_cat = [0.0]
    count = class_count = 0
    for b in range(batch):
        for j in range(lh):
            for i in range(lw):
                for n in range(ln):
                    index = size * (j * lw * ln + i * ln + n) + b * outputs
                    pred = c_get_region_box(out, biases, n, index, i, j, lw, lh)
                    best_iou = 0
                    for t in range(len(truth[b]) // 5):
                        tr = truth[b][5 * t:5 * t + 4]
                        if int(truth[b][5 * t + 4]) >= classes:
                            continue
                        if not tr[0]:
                            break
                        best_iou = max(best_iou, c_iou(pred, tr))
                    avg_anyobj += out[index + 4]
                    o = out[index + 4]
                    delta[index + 4] = p["noobject_scale"] * ((0 - o) * (1 - o) * o)
                    if best_iou > p["thresh"]:
                        delta[index + 4] = 0
                    if seen < 12800:
                        prior = [(i + .5) / lw, (j + .5) / lh, biases[2 * n] / lw, biases[2 * n + 1] / lh]
                        c_delta_region_box(prior, out, biases, n, index, i, j, lw, lh, delta, .01)
        for t in range(len(truth[b]) // 5):
            tr = truth[b][5 * t:5 * t + 4]
            class_id = int(truth[b][5 * t + 4])
            if class_id >= classes:
                continue
            if not tr[0]:
                break
            best_iou, best_index, best_n = 0, 0, 0
            i, j = int(tr[0] * lw), int(tr[1] * lh)
            for n in range(ln):
                index = size * (j * lw * ln + i * ln + n) + b * outputs
                pred = c_get_region_box(out, biases, n, index, i, j, lw, lh)
                if p["bias_match"]:
                    pred[2], pred[3] = biases[2 * n] / lw, biases[2 * n + 1] / lh
                iou = c_iou([0, 0, pred[2], pred[3]], [0, 0, tr[2], tr[3]])
                if iou > best_iou:
                    best_index, best_iou, best_n = index, iou, n
            iou = c_delta_region_box(tr, out, biases, best_n, best_index, i, j, lw, lh, delta, p["coord_scale"])
            recall += iou > .5
            avg_iou += iou
            o = out[best_index + 4]
            avg_obj += o
            delta[best_index + 4] = p["object_scale"] * ((iou if p["rescore"] else 1) - o) * (1 - o) * o
            c_delta_region_class(out, delta, best_index + 5, class_id, classes, p["class_scale"], avg_cat)
            count += 1
            class_count += 1
    line = (avg_iou / count, avg_cat[0] / class_count, avg_obj / count, avg_anyobj / (lw * lh * ln * batch),
            recall / count, count)
    return delta, line


def c_unflatten(delta, wh, c, batch):
    """darknet's flatten(..., forward=0): (position, channel) order back to (channel, position)."""
    back = np.zeros_like(delta)
    for b in range(batch):
        for pos in range(wh):
            for k in range(c):
                back[b * wh * c + k * wh + pos] = delta[b * wh * c + pos * c + k]
    return back


OPTION_SETS = [
    dict(seen=0, rescore=0, bias_match=0, thresh=0.6),
    dict(seen=12800, rescore=1, bias_match=1, thresh=0.3, object_scale=5, noobject_scale=1, class_scale=1,
         coord_scale=1),
    dict(seen=12799, rescore=1, bias_match=0, thresh=0.1, object_scale=5, noobject_scale=0.5, class_scale=2,
         coord_scale=3),
    dict(seen=20000, rescore=0, bias_match=1, thresh=0.0),
]


@pytest.mark.parametrize("case", range(len(OPTION_SETS)))
def test_delta_matches_darknet_transcription(tmp_path, case):
    opts = dict(OPTION_SETS[case])
    seen = opts.pop("seen")
    net = region_net(tmp_path, **opts)
    head = net.layers[-1]
    rng = np.random.default_rng(case)
    z = rng.normal(0, 1, (2, head.c, head.h, head.w))
    truth = np.zeros((2, 6, 5))
    for b, k in ((0, 3), (1, 2)):
        truth[b, :k, :2] = rng.uniform(0.05, 0.95, (k, 2))
        truth[b, :k, 2:4] = rng.uniform(0.1, 0.7, (k, 2))
        truth[b, :k, 4] = rng.integers(0, 3, k)
    truth[1, 1, 4] = 7          # class >= classes: skipped, not the end of the list
    out, grad = run_head(net, z, truth, seen)
    p = dict(classes=3, num=3, anchors=ANCHORS, noobject_scale=1, object_scale=1, class_scale=1, coord_scale=1)
    p.update(opts)
    delta, line = c_forward_region(out.reshape(-1), truth.reshape(2, -1), p, head.w, head.h, 2, seen)
    expected = -c_unflatten(delta, head.w * head.h, head.c, 2).reshape(grad.shape)
    np.testing.assert_allclose(grad, expected, rtol=1e-9, atol=1e-12)
    assert head.cost == pytest.approx(float(np.sum(delta ** 2)), rel=1e-9)
    assert head.loss_line == ("Region Avg IOU: %f, Class: %f, Obj: %f, No Obj: %f, Avg Recall: %f,  count: %d"
                              % line)
    if case == 0:
        assert np.any(delta[2::8])      # the seen < 12800 prior term trains every w
    else:
        assert not np.all(grad.reshape(2, 3, 8, -1)[:, :, 4])     # the thresh rule cleared some objectness


def test_one_truth_by_hand(tmp_path):
    """A 4x4 grid, one truth at cell (1, 2) closest in shape to anchor 1; all logits 0 (objectness .5,
    class probabilities 1/3, boxes exp(0) = anchor, centred)."""
    net = region_net(tmp_path, bias_match=1, object_scale=5, class_scale=2, coord_scale=3, thresh=1)
    head = net.layers[-1]
    z = np.zeros((2, head.c, head.h, head.w))
    truth = np.zeros((2, 2, 5))
    truth[0, 0] = [1.6 / 4, 2.5 / 4, 1.4 / 4, 1.3 / 4, 2]
    out, grad = run_head(net, z, truth, 20000)
    size, wh = 8, 16
    g = grad.reshape(2, 3, size, wh)        # (batch, anchor, value, position)
    pos = 2 * 4 + 1
    # no objects elsewhere: noobject 1 * (0 - .5) * .25, the engine's gradient is minus it
    assert g[0, 0, 4, 0] == pytest.approx(0.125) and g[1, 2, 4, 5] == pytest.approx(0.125)
    # the truth: x target 1.6-1 = .6, y .5; logistic(0)=.5 with gradient .25; w log(1.4/1.5), h log(1.3/1.2)
    assert g[0, 1, 0, pos] == pytest.approx(-3 * (0.6 - 0.5) * 0.25)
    assert g[0, 1, 1, pos] == pytest.approx(0.0)
    assert g[0, 1, 2, pos] == pytest.approx(-3 * math.log(1.4 / 1.5))
    assert g[0, 1, 3, pos] == pytest.approx(-3 * math.log(1.3 / 1.2))
    assert g[0, 1, 4, pos] == pytest.approx(-5 * (1 - 0.5) * 0.25)
    np.testing.assert_allclose(g[0, 1, 5:, pos], [2 / 3, 2 / 3, -2 * (1 - 1 / 3)])
    assert np.count_nonzero(g[0, :, :4]) == 3 and np.count_nonzero(g[0, :, 5:]) == 3
    # IoU of the centred anchor-sized box (1.5 x 1.2 at (1.5, 2.5)) with the truth (1.4 x 1.3 at (1.6, 2.5))
    inter = (min(2.25, 2.3) - max(0.75, 0.9)) * 1.2
    iou = inter / (1.5 * 1.2 + 1.4 * 1.3 - inter)
    assert head.loss_line.startswith(f"Region Avg IOU: {iou:f}, Class: {1 / 3:f}, Obj: 0.500000, "
                                     f"No Obj: 0.500000, Avg Recall: {float(iou > .5):f},  count: 1")


def surrogate_loss(net, z, truth, seen, best_n, cell):
    """The loss whose gradient darknet's delta is (with the assignment fixed): half squared errors of x, y
    through the logistic, w, h and objectness, and cross-entropy of the softmax classes."""
    head = net.layers[-1]
    out = head.forward(z, net).reshape(2, head.h * head.w, head.n, 8)
    sig = 1 / (1 + np.exp(-out[..., :2]))
    loss = 0.0
    mask = np.ones(out.shape[:3], bool)
    for b, (box, class_id) in enumerate(truth):
        p, n = cell[b], best_n[b]
        i, j = p % head.w, p // head.w
        mask[b, p, n] = False
        t = [box[0] * head.w - i, box[1] * head.h - j, math.log(box[2] * head.w / ANCHORS[2 * n]),
             math.log(box[3] * head.h / ANCHORS[2 * n + 1])]
        loss += head.coord_scale / 2 * ((t[0] - sig[b, p, n, 0]) ** 2 + (t[1] - sig[b, p, n, 1]) ** 2
                                        + (t[2] - out[b, p, n, 2]) ** 2 + (t[3] - out[b, p, n, 3]) ** 2)
        loss += head.object_scale / 2 * (1 - out[b, p, n, 4]) ** 2
        loss -= head.class_scale * math.log(out[b, p, n, 5 + class_id])
    loss += head.noobject_scale / 2 * np.sum(out[..., 4][mask] ** 2)
    if seen < 12800:
        loss += 0.01 / 2 * np.sum(((0.5 - sig[mask]) ** 2).sum(-1) + (out[..., 2:4][mask] ** 2).sum(-1))
    return loss


@pytest.mark.parametrize("seen", [0, 12800])
def test_delta_is_the_gradient_of_darknets_loss(tmp_path, seen):
    """Without rescore and with thresh 1 (no prediction is cleared), darknet's delta is minus the gradient of
    the half squared errors + cross-entropy it trains: finite differences agree."""
    net = region_net(tmp_path, bias_match=1, object_scale=5, noobject_scale=0.5, class_scale=2, coord_scale=3,
                     thresh=1)
    head = net.layers[-1]
    rng = np.random.default_rng(7)
    z = rng.normal(0, 0.5, (2, head.c, head.h, head.w))
    boxes = [((0.3, 0.6, 0.3, 0.2), 1), ((0.8, 0.1, 0.7, 0.6), 0)]
    truth = np.zeros((2, 1, 5))
    for b, (box, class_id) in enumerate(boxes):
        truth[b, 0] = [*box, class_id]
    _, grad = run_head(net, z, truth, seen)
    grad = grad.copy()
    best_n = [1, 2]      # bias_match: shape IoU with anchors 1.5x1.2 and 3x2.6 cells of a 4x4 grid
    cell = [2 * 4 + 1, 0 * 4 + 3]
    eps = 1e-6
    for idx in rng.choice(z.size, 60, replace=False).tolist() + [np.ravel_multi_index((0, 8 + 4, 2, 1), z.shape)]:
        zp, zm = z.copy(), z.copy()
        zp.flat[idx] += eps
        zm.flat[idx] -= eps
        fd = (surrogate_loss(net, zp, boxes, seen, best_n, cell) - surrogate_loss(net, zm, boxes, seen, best_n,
                                                                                   cell)) / (2 * eps)
        assert grad.flat[idx] == pytest.approx(fd, rel=1e-5, abs=1e-8)


def test_tree_is_refused_and_training_a_region_cfg_lowers_the_loss(tmp_path, capsys):
    from test_detector_train import TINY_CFG, make_dataset
    from darknet_py.detector_train import train_detector
    from darknet_py.errors import DarknetError
    data, cfg = make_dataset(tmp_path, 30)
    head = TINY_CFG.split("[yolo]")[0]
    cfg.write_text(head.format(max_batches=30) + "[region]\nanchors=1.25,1.25, 2.5,2.5, 4.5,4.5\nbias_match=1\n"
                   "classes=3\ncoords=4\nnum=3\nsoftmax=1\njitter=.1\nrescore=1\nobject_scale=5\nnoobject_scale=1\n"
                   "class_scale=1\ncoord_scale=1\nthresh=.6\n")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        result = train_detector(str(data), str(cfg), progress=False, chart=None, seed=4, threads=1,
                                workers="thread")
    out = capsys.readouterr()
    losses = [float(line.split(":")[1].split(",")[0]) for line in out.out.splitlines()
              if line.startswith(" ") and " avg loss, " in line]
    assert len(losses) == 30 and result["iteration"] == 30
    assert np.mean(losses[-5:]) < 0.7 * np.mean(losses[:5])
    assert "Region Avg IOU: " in out.err and ",  count: " in out.err
    cfg.write_text(cfg.read_text().replace("thresh=.6\n", "thresh=.6\ntree=t.tree\n"))
    with pytest.raises(DarknetError, match="tree"):
        train_detector(str(data), str(cfg), progress=False, chart=None, max_batches=1, threads=1,
                       workers="thread")


def test_gaussian_yolo_training_is_refused_naming_the_layer(tmp_path):
    """No Gaussian_yolo loss yet: a training forward with truth says so, naming the cfg line, instead of
    training.py's generic 'no layer computes a loss'."""
    from darknet_py.errors import DarknetError
    from darknet_py.network import Network
    from darknet_py.weights import init_weights
    cfg = tmp_path / "g.cfg"
    cfg.write_text("[net]\nwidth=32\nheight=32\nchannels=3\n\n[convolutional]\nfilters=30\nsize=1\n"
                   "activation=linear\n\n[Gaussian_yolo]\nmask=0,1,2\nanchors=4,4, 8,8, 16,16\nclasses=1\nnum=3\n")
    net = Network(cfg)
    init_weights(net)
    x = np.zeros((1, 3, 32, 32), np.float32)
    truth = np.zeros((1, 90, 5), np.float32)
    with pytest.raises(DarknetError, match=r"g\.cfg:\d+: \[Gaussian_yolo\].*not supported yet"):
        net.forward(x, train=True, truth=truth)
    net.forward(x)                       # inference still runs
