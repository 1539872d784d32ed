"""[yolo] training loss: the layer's gradient against an explicit-loop transcription of darknet's
forward_yolo_layer/process_batch (flat indexes as in the C code) written here, hand-made cases, finite
differences where darknet's delta is a true gradient, and the printed loss line."""
import math
import re

import numpy as np
import pytest

from darknet_py.backend import NumpyOps
from darknet_py.yolo_loss import dx_box_iou, box_iou, box_giou
import darknet_py

ANCHORS = [6, 8, 12, 10, 16, 24, 30, 26, 40, 52, 60, 58]    # pixels of the 64x64 input


def yolo_net(tmp_path, size=64, classes=3, mask="3,4,5", **options):
    opts = {"mask": mask, "anchors": ",".join(map(str, ANCHORS)), "classes": classes, "num": 6}
    opts.update(options)
    n = len(mask.split(","))
    text = (f"[net]\nwidth={size}\nheight={size}\nchannels=3\n\n[convolutional]\nfilters={n * (classes + 5)}\n"
            f"size=1\nstride=8\npad=0\nactivation=linear\n\n[yolo]\n" +
            "".join(f"{k}={v}\n" for k, v in opts.items()))
    path = tmp_path / "y.cfg"
    path.write_text(text)
    net = darknet_py.load(path, quiet=True, batch=2)
    net.ops = NumpyOps(np.float64)
    net.layers[0].weights = {"biases": np.zeros(net.layers[0].filters),
                             "weights": np.zeros((net.layers[0].filters, 3, 1, 1))}
    return net, opts


def run_head(net, z, truth):
    """Training forward of the [yolo] head alone on logits z; returns (head output, d loss / d z)."""
    head = net.layers[-1]
    net.train, net.truth = True, truth
    out = head.forward(z, net)
    return out, head.loss_grad


# -- darknet transcription ----------------------------------------------------------------------------------
def c_iou(a, b):
    def ov(x1, w1, x2, w2):
        return min(x1 + w1 / 2, x2 + w2 / 2) - max(x1 - w1 / 2, x2 - w2 / 2)
    w, h = ov(a[0], a[2], b[0], b[2]), ov(a[1], a[3], b[1], b[3])
    inter = 0 if w < 0 or h < 0 else w * h
    union = a[2] * a[3] + b[2] * b[3] - inter
    return 0 if inter == 0 or union == 0 else inter / union


def c_enclose(a, b):
    top, bot = min(a[1] - a[3] / 2, b[1] - b[3] / 2), max(a[1] + a[3] / 2, b[1] + b[3] / 2)
    left, right = min(a[0] - a[2] / 2, b[0] - b[2] / 2), max(a[0] + a[2] / 2, b[0] + b[2] / 2)
    return right - left, bot - top


def c_giou(a, b):
    w, h = c_enclose(a, b)
    iou = c_iou(a, b)
    if w * h == 0:
        return iou
    inter = iou and iou * (a[2] * a[3] + b[2] * b[3]) / (1 + iou)
    return iou - (w * h - (a[2] * a[3] + b[2] * b[3] - inter)) / (w * h)


def c_diou(a, b):
    w, h = c_enclose(a, b)
    c = w * w + h * h
    return c_iou(a, b) - (((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / c) ** 0.6


def c_ciou(a, b):
    w, h = c_enclose(a, b)
    c = w * w + h * h
    iou = c_iou(a, b)
    ar = 4 / math.pi ** 2 * (math.atan(b[2] / b[3]) - math.atan(a[2] / a[3])) ** 2
    alpha = ar / (1 - iou + ar + 0.000001)
    return iou - (((a[0] - b[0]) ** 2 + (a[1] - b[1]) ** 2) / c + alpha * ar)


def c_dx_box_iou(pred, truth, kind):
    """src/box.c dx_box_iou, line by line (boxes with positive w, h)."""
    pt, pb = pred[1] - pred[3] / 2, pred[1] + pred[3] / 2
    pl, pr = pred[0] - pred[2] / 2, pred[0] + pred[2] / 2
    tt, tb = truth[1] - truth[3] / 2, truth[1] + truth[3] / 2
    tl, tr = truth[0] - truth[2] / 2, truth[0] + truth[2] / 2
    X = (pb - pt) * (pr - pl)
    Xhat = (tb - tt) * (tr - tl)
    Ih = min(pb, tb) - max(pt, tt)
    Iw = min(pr, tr) - max(pl, tl)
    I = Iw * Ih
    U = X + Xhat - I
    S = (pred[0] - truth[0]) ** 2 + (pred[1] - truth[1]) ** 2
    gCw = max(pr, tr) - min(pl, tl)
    gCh = max(pb, tb) - min(pt, tt)
    gC = gCw * gCh
    dX_t, dX_b, dX_l, dX_r = -(pr - pl), pr - pl, -(pb - pt), pb - pt
    dI_t = -Iw if pt > tt else 0
    dI_b = Iw if pb < tb else 0
    dI_l = -Ih if pl > tl else 0
    dI_r = Ih if pr < tr else 0
    dU_t, dU_b, dU_l, dU_r = dX_t - dI_t, dX_b - dI_b, dX_l - dI_l, dX_r - dI_r
    dC_t = -gCw if pt < tt else 0
    dC_b = gCw if pb > tb else 0
    dC_l = -gCh if pl < tl else 0
    dC_r = gCh if pr > tr else 0
    p_dt = p_db = p_dl = p_dr = 0
    if U > 0:
        p_dt = (U * dI_t - I * dU_t) / (U * U)
        p_db = (U * dI_b - I * dU_b) / (U * U)
        p_dl = (U * dI_l - I * dU_l) / (U * U)
        p_dr = (U * dI_r - I * dU_r) / (U * U)
    if kind == "giou":
        g = [(gC * dU_t - U * dC_t) / gC ** 2, (gC * dU_b - U * dC_b) / gC ** 2,
             (gC * dU_l - U * dC_l) / gC ** 2, (gC * dU_r - U * dC_r) / gC ** 2]
        if gC > 0:
            p_dt, p_db, p_dl, p_dr = p_dt + g[0], p_db + g[1], p_dl + g[2], p_dr + g[3]
        if Iw <= 0 or Ih <= 0:
            p_dt, p_db, p_dl, p_dr = g
    Cw, Ch = c_enclose(pred, truth)
    C = Cw * Cw + Ch * Ch
    dCt_dy, dCt_dh = (1, -0.5) if pt < tt else (0, 0)
    dCb_dy, dCb_dh = (1, 0.5) if pb > tb else (0, 0)
    dCl_dx, dCl_dw = (1, -0.5) if pl < tl else (0, 0)
    dCr_dx, dCr_dw = (1, 0.5) if pr > tr else (0, 0)
    dCw_dx, dCw_dw = dCr_dx - dCl_dx, dCr_dw - dCl_dw
    dCh_dy, dCh_dh = dCb_dy - dCt_dy, dCb_dh - dCt_dh
    p_dx, p_dy, p_dw, p_dh = p_dl + p_dr, p_dt + p_db, p_dr - p_dl, p_db - p_dt
    if kind in ("diou", "ciou"):
        ar_dw = ar_dh = alpha = 0
        if kind == "ciou":
            diff = math.atan(truth[2] / truth[3]) - math.atan(pred[2] / pred[3])
            ar = 4 / math.pi ** 2 * diff * diff
            alpha = ar / (1 - I / U + ar + 0.000001)
            ar_dw, ar_dh = 8 / math.pi ** 2 * diff * pred[3], -8 / math.pi ** 2 * diff * pred[2]
        ddx = (2 * (truth[0] - pred[0]) * C - (2 * Cw * dCw_dx) * S) / (C * C)
        ddy = (2 * (truth[1] - pred[1]) * C - (2 * Ch * dCh_dy) * S) / (C * C)
        ddw = (2 * Cw * dCw_dw) * S / (C * C) + alpha * ar_dw
        ddh = (2 * Ch * dCh_dh) * S / (C * C) + alpha * ar_dh
        if C > 0:
            p_dx, p_dy, p_dw, p_dh = p_dx + ddx, p_dy + ddy, p_dw + ddw, p_dh + ddh
        if Iw <= 0 or Ih <= 0:
            p_dx, p_dy, p_dw, p_dh = ddx, ddy, ddw, ddh
    return p_dx, p_dy, p_dw, p_dh


def c_forward_yolo(out, truth, p, lw, lh, netw, neth):
    """forward_yolo_layer + process_batch on the flat output `out` (batch*outputs): the flat delta, count,
    tot_iou, tot_iou_loss and tot_giou_loss."""
    classes = p["classes"]
    mask = [int(m) for m in str(p["mask"]).split(",")]
    n_anchors, total = len(mask), p["num"]
    biases = [float(a) for a in str(p["anchors"]).split(",")]
    iou_norm, obj_norm = p.get("iou_normalizer", 0.75), p.get("obj_normalizer", 1.0)
    cls_norm, eps = p.get("cls_normalizer", 1.0), p.get("label_smooth_eps", 0.0)
    ignore, truth_thresh = p.get("ignore_thresh", 0.5), p.get("truth_thresh", 1.0)
    iou_thresh, kind = p.get("iou_thresh", 1.0), p.get("iou_loss", "mse")
    max_delta, focal = p.get("max_delta", math.inf), p.get("focal_loss", 0)
    smooth, new_coords = p.get("objectness_smooth", 0), p.get("new_coords", 0)
    mult = None
    if "counters_per_class" in p:
        counts = [max(1, int(c)) for c in str(p["counters_per_class"]).split(",")]
        mult = [min(max(counts) / c, max_delta) for c in counts]
    batch = truth.shape[0]
    outputs = lw * lh * n_anchors * (classes + 5)
    stride = lw * lh
    delta = np.zeros_like(out)
    st = {"count": 0, "tot_iou": 0.0, "tot_iou_loss": 0.0, "tot_giou_loss": 0.0}

    def entry(b, loc, e):
        return b * outputs + (loc // stride) * stride * (classes + 5) + e * stride + loc % stride

    def get_box(n, idx, i, j):
        if new_coords:
            return ((i + out[idx]) / lw, (j + out[idx + stride]) / lh, out[idx + 2 * stride] ** 2 * 4 * biases[2 * n] / netw,
                    out[idx + 3 * stride] ** 2 * 4 * biases[2 * n + 1] / neth)
        return ((i + out[idx]) / lw, (j + out[idx + stride]) / lh, math.exp(out[idx + 2 * stride]) * biases[2 * n] / netw,
                math.exp(out[idx + 3 * stride]) * biases[2 * n + 1] / neth)

    def delta_box(tr, n, idx, i, j, scale, norm):
        pred = get_box(n, idx, i, j)
        ious = {"iou": c_iou(pred, tr), "giou": c_giou(pred, tr)}
        if kind == "mse":
            if new_coords:
                tw, th = math.sqrt(tr[2] * netw / (4 * biases[2 * n])), math.sqrt(tr[3] * neth / (4 * biases[2 * n + 1]))
            else:
                tw, th = math.log(tr[2] * netw / biases[2 * n]), math.log(tr[3] * neth / biases[2 * n + 1])
            for k, t in enumerate((tr[0] * lw - i, tr[1] * lh - j, tw, th)):
                delta[idx + k * stride] += scale * (t - out[idx + k * stride]) * norm
        else:
            d = list(c_dx_box_iou(pred, tr, kind))
            if not new_coords:
                d[2] *= math.exp(out[idx + 2 * stride])
                d[3] *= math.exp(out[idx + 3 * stride])
            for k in range(4):
                v = d[k] * norm
                if max_delta != math.inf:
                    v = min(max(v, -max_delta), max_delta)
                delta[idx + k * stride] += v
        return ious

    def delta_class(idx, cid):
        if delta[idx + stride * cid]:
            y = 1 * (1 - eps) + 0.5 * eps if eps else 1
            delta[idx + stride * cid] = y - out[idx + stride * cid]
            if mult:
                delta[idx + stride * cid] *= mult[cid]
            return
        if focal:
            pt = out[idx + stride * cid] + 0.000000000000001
            grad = -(1 - pt) * (2 * pt * math.log(pt) + pt - 1)
            for c in range(classes):
                delta[idx + stride * c] = ((c == cid) - out[idx + stride * c]) * 0.5 * grad
            return
        for c in range(classes):
            y = float(c == cid)
            if eps:
                y = y * (1 - eps) + 0.5 * eps
            delta[idx + stride * c] = y - out[idx + stride * c]
            if mult and c == cid:
                delta[idx + stride * c] *= mult[cid] * cls_norm

    def positive(b, tr, cid, n, mask_n, i, j):
        loc = mask_n * stride + j * lw + i
        m = mult[cid] if mult else 1.0
        ious = delta_box(tr, n, entry(b, loc, 0), i, j, 2 - tr[2] * tr[3], iou_norm * m)
        st["tot_iou"] += ious["iou"]
        st["tot_iou_loss"] += 1 - ious["iou"]
        st["tot_giou_loss"] += 1 - ious["giou"]
        oi = entry(b, loc, 4)
        if not smooth or delta[oi] == 0:
            delta[oi] = m * obj_norm * (1 - out[oi])
        delta_class(entry(b, loc, 5), cid)
        st["count"] += 1

    for b in range(batch):
        truths = []
        for t in range(truth.shape[1]):
            if not truth[b, t, 0]:
                break
            truths.append((tuple(truth[b, t, :4]), int(truth[b, t, 4])))
        for j in range(lh):
            for i in range(lw):
                for n in range(n_anchors):
                    loc = n * stride + j * lw + i
                    ci, oi, bi = entry(b, loc, 5), entry(b, loc, 4), entry(b, loc, 0)
                    pred = get_box(mask[n], bi, i, j)
                    best_match, best_iou, best_t = 0, 0, 0
                    for t, (tr, cid) in enumerate(truths):
                        if not 0 <= cid < classes:
                            continue
                        match = any(out[ci + stride * c] > 0.25 for c in range(classes))
                        iou = c_iou(pred, tr)
                        if iou > best_match and match:
                            best_match = iou
                        if iou > best_iou:
                            best_iou, best_t = iou, t
                    delta[oi] = obj_norm * (0 - out[oi])
                    if best_match > ignore:
                        delta[oi] = max(delta[oi], obj_norm * (best_match - out[oi])) if smooth else 0
                    if best_iou > truth_thresh:
                        tr, cid = truths[best_t]
                        delta[oi] = obj_norm * ((best_iou ** 2 if smooth else 1) - out[oi])
                        delta_class(ci, cid)
                        m = mult[cid] if mult else 1.0
                        if smooth:
                            delta[ci + stride * cid] = m * (best_iou ** 2 - out[ci + stride * cid])
                        delta_box(tr, mask[n], bi, i, j, 2 - tr[2] * tr[3], iou_norm * m)
        for tr, cid in truths:
            if not 0 <= cid < classes:
                continue
            i, j = int(tr[0] * lw), int(tr[1] * lh)
            shift = (0, 0, tr[2], tr[3])
            best, best_n = 0, 0
            for n in range(total):
                iou = c_iou((0, 0, biases[2 * n] / netw, biases[2 * n + 1] / neth), shift)
                if iou > best:
                    best, best_n = iou, n
            if best_n in mask:
                positive(b, tr, cid, best_n, mask.index(best_n), i, j)
            for n in range(total):
                if n in mask and n != best_n and iou_thresh < 1:
                    a = (0, 0, biases[2 * n] / netw, biases[2 * n + 1] / neth)
                    iou = {"iou": c_iou, "giou": c_giou, "diou": c_diou, "ciou": c_ciou}[
                        p.get("iou_thresh_kind", "iou")](a, shift)
                    if iou > iou_thresh:
                        positive(b, tr, cid, n, mask.index(n), i, j)
        if iou_thresh < 1:
            for loc in range(n_anchors * stride):
                if delta[entry(b, loc, 4)] != 0:
                    k = sum(delta[entry(b, loc, 5) + stride * c] > 0 for c in range(classes))
                    if k:
                        for e in range(4):
                            delta[entry(b, loc, e)] /= k
    return delta, st


def random_case(rng, net, boxes=3):
    """Logits for the head (as the previous layer gives them) and truth rows with some boxes close to anchors."""
    head = net.layers[-1]
    z = rng.normal(0, 1.0, size=(2, head.c, head.h, head.w))
    truth = np.zeros((2, head.max_boxes, 5))
    for b in range(2):
        for t in range(boxes):
            w, h = rng.uniform(0.1, 0.9, size=2)
            truth[b, t] = [rng.uniform(0.05, 0.95), rng.uniform(0.05, 0.95), w, h, rng.integers(0, head.classes)]
    return z, truth


CASES = [
    {},
    {"iou_loss": "giou", "iou_normalizer": 0.07},
    {"iou_loss": "diou", "iou_normalizer": 0.5},
    {"iou_loss": "ciou", "iou_normalizer": 0.07, "max_delta": 0.05},
    {"iou_loss": "iou"},
    {"iou_loss": "ciou", "iou_thresh": 0.213, "scale_x_y": 1.05, "ignore_thresh": 0.2},
    {"iou_thresh": 0.3, "iou_thresh_kind": "giou", "label_smooth_eps": 0.1, "obj_normalizer": 0.7},
    {"focal_loss": 1, "truth_thresh": 0.3, "ignore_thresh": 0.1},
    {"counters_per_class": "100,20,5", "cls_normalizer": 2.0, "max_delta": 7, "objectness_smooth": 1,
     "ignore_thresh": 0.1},
    {"new_coords": 1, "iou_loss": "ciou"},
    {"new_coords": 1},
]


@pytest.mark.parametrize("case", CASES, ids=lambda c: ",".join(f"{k}={v}" for k, v in c.items()) or "defaults")
def test_delta_matches_darknet_transcription(tmp_path, case):
    net, opts = yolo_net(tmp_path, **case)
    head = net.layers[-1]
    rng = np.random.default_rng(len(str(case)))
    for _ in range(3):
        z, truth = random_case(rng, net)
        if case.get("new_coords"):
            z[:, :] = 1 / (1 + np.exp(-z))     # new_coords heads read the logistic of the convolution
        out, grad = run_head(net, z, truth)
        expected, stats = c_forward_yolo(out.reshape(-1).copy(), truth, opts, head.w, head.h, 64, 64)
        assert stats["count"] > 0
        np.testing.assert_allclose(-grad.reshape(-1), expected, rtol=1e-9, atol=1e-12)
        assert f"count: {stats['count']}," in head.loss_line
        assert f"Avg (IOU: {stats['tot_iou'] / stats['count']:f})" in head.loss_line


def test_one_truth_by_hand(tmp_path):
    """One 0.5x0.8 box at (0.55, 0.3) on an 8x8 grid at 64x64: its best anchor by shape IoU is 40x52 (index 4,
    the second of mask 3,4,5), which trains cell (x 4, y 2); every other prediction learns objectness 0."""
    net, opts = yolo_net(tmp_path, ignore_thresh=1.0)
    head = net.layers[-1]
    z = np.zeros((2, head.c, 8, 8))
    truth = np.zeros((2, head.max_boxes, 5))
    truth[0, 0] = [0.55, 0.3, 0.5, 0.8, 2]
    out, grad = run_head(net, z, truth)
    shapes = [(ANCHORS[2 * n] / 64, ANCHORS[2 * n + 1] / 64) for n in range(6)]
    ious = [min(w, 0.5) * min(h, 0.8) / (w * h + 0.5 * 0.8 - min(w, 0.5) * min(h, 0.8)) for w, h in shapes]
    assert int(np.argmax(ious)) == 4 and head.mask == [3, 4, 5]
    o = out.reshape(2, 3, 8, 8, 8)
    g = -grad.reshape(2, 3, 8, 8, 8)
    scale = 2 - 0.5 * 0.8
    tx, ty = 0.55 * 8 - 4, 0.3 * 8 - 2                                   # offsets in the cell
    tw, th = math.log(0.5 * 64 / 40), math.log(0.8 * 64 / 52)           # log size ratios to the anchor
    assert g[0, 1, 0, 2, 4] == pytest.approx(scale * (tx - 0.5) * 0.75)
    assert g[0, 1, 1, 2, 4] == pytest.approx(scale * (ty - 0.5) * 0.75)
    assert g[0, 1, 2, 2, 4] == pytest.approx(scale * tw * 0.75)
    assert g[0, 1, 3, 2, 4] == pytest.approx(scale * th * 0.75)
    assert g[0, 1, 4, 2, 4] == pytest.approx(0.5)                          # 1 - logistic(0)
    np.testing.assert_allclose(g[0, 1, 5:, 2, 4], [-0.5, -0.5, 0.5])        # one-hot class 2 minus 0.5
    positive = np.zeros((2, 3, 8, 8), bool)
    positive[0, 1, 2, 4] = True
    np.testing.assert_allclose(g[:, :, 4][~positive], -0.5)               # objectness 0 - 0.5 elsewhere
    others = np.broadcast_to(~positive[:, :, None], (2, 3, 3, 8, 8))
    assert not g[:, :, :4][np.broadcast_to(~positive[:, :, None], (2, 3, 4, 8, 8))].any()
    assert not g[:, :, 5:][others].any()
    assert o[0, 1, 4, 2, 4] == 0.5


def test_ignore_thresh_clears_objectness(tmp_path):
    """A prediction overlapping the truth by more than ignore_thresh (and with a class > .25) gets no objectness
    delta; with ignore_thresh above its IoU it learns objectness 0. The truth itself trains anchor 3 there."""
    truth = np.zeros((2, 200, 5))
    truth[0, 0] = [0.3, 0.3, 0.5, 0.5, 0]
    pred = (0.3, 0.3, 0.55, 0.55)
    assert c_iou(pred, truth[0, 0, :4]) == pytest.approx(0.25 / 0.55 ** 2)
    for ignore, expect_zero in ((0.5, True), (0.9, False)):
        net, _ = yolo_net(tmp_path, ignore_thresh=ignore)
        z = np.full((2, 24, 8, 8), -4.0)
        # anchor 5 (the third of mask 3,4,5) at cell (2, 2) predicting `pred`
        z[0, 2 * 8 + 2, 2, 2] = math.log(0.55 * 64 / ANCHORS[10])
        z[0, 2 * 8 + 3, 2, 2] = math.log(0.55 * 64 / ANCHORS[11])
        z[0, 2 * 8 + 0, 2, 2] = z[0, 2 * 8 + 1, 2, 2] = math.log(0.4 / 0.6)    # logistic .4: x = 2.4/8
        z[0, 2 * 8 + 5, 2, 2] = 2.0                                           # class 0 at .88
        out, grad = run_head(net, z, truth)
        g = grad.reshape(2, 3, 8, 8, 8)
        assert g[0, 0, 4, 2, 2] < 0                                           # anchor 3 is the positive
        if expect_zero:
            assert g[0, 2, 4, 2, 2] == 0
        else:
            assert g[0, 2, 4, 2, 2] == pytest.approx(out.reshape(2, 3, 8, 8, 8)[0, 2, 4, 2, 2])


def _bce(p, y):
    return -(y * np.log(p) + (1 - y) * np.log(1 - p))


def test_mse_delta_is_the_gradient_of_darknets_loss(tmp_path):
    """With iou_loss=mse (scale_x_y 1, no iou_thresh) darknet's delta is minus the gradient, with respect to
    the logits, of: obj_normalizer*BCE for objectness, BCE for classes and for x, y (soft targets), and
    0.5*(tw - w)^2 for w, h, weighted by (2 - w*h)*iou_normalizer, with the assignment held fixed.
    Central differences of that loss match the head's gradient, and the engine's backward carries it on."""
    net, opts = yolo_net(tmp_path, obj_normalizer=0.8, iou_normalizer=0.6, ignore_thresh=0.6)
    head = net.layers[-1]
    rng = np.random.default_rng(5)
    _, truth = random_case(rng, net, boxes=2)
    x = rng.normal(size=(2, 3, 64, 64))
    net.layers[0].weights["weights"] = rng.normal(0, 0.3, net.layers[0].weights["weights"].shape)
    net.forward(x, train=True, truth=truth)
    grad = head.loss_grad.copy()
    z = net.layers[0].output.copy()
    shape = (2, 3, 8, 8, 8)
    # the assignment, read from the delta's structure: positives have box deltas; other predictions learn
    # objectness 0 unless ignored (objectness delta exactly 0)
    d = -grad.reshape(shape)
    positive = np.any(d[:, :, :4] != 0, axis=2)
    ignored = (d[:, :, 4] == 0) & ~positive
    targets = {}
    for b, n, j, i in zip(*np.nonzero(positive)):
        for t in range(2):
            tx, ty, w, h, c = truth[b, t]
            if (int(tx * 8), int(ty * 8)) == (i, j):
                anchor = head.mask[n]
                targets[(b, n, j, i)] = (tx * 8 - i, ty * 8 - j, math.log(w * 64 / ANCHORS[2 * anchor]),
                                         math.log(h * 64 / ANCHORS[2 * anchor + 1]), int(c), 2 - w * h)
    assert targets and len(targets) == positive.sum()

    def loss(zz):
        zz = zz.reshape(shape)
        s = 1 / (1 + np.exp(-zz))
        total = 0.8 * np.sum(_bce(s[:, :, 4], 0.0)[~positive & ~ignored])
        for (b, n, j, i), (tx, ty, tw, th, c, scale) in targets.items():
            total += 0.8 * _bce(s[b, n, 4, j, i], 1.0)
            total += sum(_bce(s[b, n, 5 + k, j, i], float(k == c)) for k in range(3))
            total += scale * 0.6 * (_bce(s[b, n, 0, j, i], tx) + _bce(s[b, n, 1, j, i], ty))
            total += scale * 0.6 * 0.5 * ((tw - zz[b, n, 2, j, i]) ** 2 + (th - zz[b, n, 3, j, i]) ** 2)
        return total

    eps = 1e-6
    flat = z.reshape(-1)
    for k in rng.choice(flat.size, 60, replace=False).tolist() + [int(np.argmax(np.abs(grad)))]:
        zp, zm = flat.copy(), flat.copy()
        zp[k] += eps
        zm[k] -= eps
        assert grad.reshape(-1)[k] == pytest.approx((loss(zp) - loss(zm)) / (2 * eps), rel=1e-5, abs=1e-7)
    # backward: input -> 1x1 stride-8 convolution -> head
    for layer in net.layers:
        layer.grads = {}
    net.backward()
    w_grad = np.einsum("bfhw,bchw->fc", grad, x[:, :, ::8, ::8])
    np.testing.assert_allclose(net.layers[0].grads["weights"].reshape(w_grad.shape), w_grad, rtol=1e-9)
    assert net.cost == pytest.approx(head.cost)


@pytest.mark.parametrize("kind", ["iou", "giou"])
def test_dx_box_iou_is_the_iou_gradient(kind):
    """For iou and giou darknet's dx_box_iou is the gradient of IoU (GIoU) with respect to x, y and twice the
    gradient with respect to w, h (darknet does not halve them); diou/ciou add darknet's own terms, checked
    against the transcription."""
    rng = np.random.default_rng(3)
    f = {"iou": lambda a, b: float(box_iou(a, b)), "giou": box_giou}[kind]
    for _ in range(20):
        truth = tuple(rng.uniform(0.3, 0.7, 2)) + tuple(rng.uniform(0.1, 0.4, 2))
        pred = tuple(np.asarray(truth) + rng.normal(0, 0.08, 4) * [1, 1, 0.5, 0.5])
        for other in ("diou", "ciou"):
            np.testing.assert_allclose(dx_box_iou(pred, truth, other), c_dx_box_iou(pred, truth, other), rtol=1e-12)
        if not box_iou(pred, truth):
            continue      # darknet's intersection goes negative for disjoint boxes: not a gradient there
        g = dx_box_iou(pred, truth, kind)
        eps = 1e-7
        for k, factor in enumerate((1, 1, 2, 2)):
            hi, lo = list(pred), list(pred)
            hi[k] += eps
            lo[k] -= eps
            assert g[k] == pytest.approx(factor * (f(hi, truth) - f(lo, truth)) / (2 * eps), rel=1e-4, abs=1e-6)


def test_loss_line_and_cost(tmp_path):
    net, opts = yolo_net(tmp_path, iou_loss="ciou", iou_normalizer=0.07, cls_normalizer=1.0)
    head = net.layers[-1]
    z, truth = random_case(np.random.default_rng(9), net)
    out, grad = run_head(net, z, truth)
    delta, st = c_forward_yolo(out.reshape(-1).copy(), truth, opts, 8, 8, 64, 64)
    delta = delta.reshape(out.shape[0], 3, 8, 8, 8)
    classification = float(np.sum(delta[:, :, 4:] ** 2))
    loss = float(np.sum(delta ** 2))
    m = re.fullmatch(r"v3 \(iou loss, Normalizer: \(iou: 0\.07, obj: 1\.00, cls: 1\.00\) Region 1 Avg \(IOU: "
                     r"([\d.]+)\), count: (\d+), class_loss = ([\d.]+), iou_loss = ([\d.]+), total_loss = ([\d.]+) ",
                     head.loss_line)
    assert m, head.loss_line
    assert int(m[2]) == st["count"]
    assert float(m[3]) == pytest.approx(classification / 2, abs=1e-6)
    assert float(m[4]) == pytest.approx((loss - classification) / 2, abs=1e-6)
    assert float(m[5]) == pytest.approx(loss / 2, abs=1e-6)
    assert head.cost == pytest.approx(0.07 * st["tot_iou_loss"] / st["count"] + classification)


def test_truth_beyond_max_boxes_and_bad_classes_are_ignored(tmp_path):
    """Rows after the first x == 0 are not read, and class ids outside 0..classes-1 train nothing."""
    net, opts = yolo_net(tmp_path, max=2)
    z = np.zeros((2, 24, 8, 8))
    truth = np.zeros((2, 4, 5))
    truth[0, 0] = [0.5, 0.5, 0.6, 0.8, 7]          # class beyond classes=3
    truth[0, 2] = [0.2, 0.2, 0.6, 0.8, 1]          # after the terminating zero row
    truth[1, 0] = [0.5, 0.5, 0.6, 0.8, 1]
    truth[1, 1] = [0.7, 0.7, 0.6, 0.8, 1]
    truth[1, 2] = [0.2, 0.2, 0.6, 0.8, 1]          # beyond max=2
    out, grad = run_head(net, z, truth)
    d = -grad.reshape(2, 3, 8, 8, 8)
    assert not d[0, :, :4].any()
    assert np.count_nonzero(np.any(d[1, :, :4] != 0, axis=1)) == 2
