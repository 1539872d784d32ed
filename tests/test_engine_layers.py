"""CPU engine: every layer type without convolution weights (pooling, route, shortcut, upsample, reorg, scale_channels,
sam, dropout, softmax, cost, crop and the detection heads). Forward against explicit-loop transcriptions of darknet's
CPU code, backward against finite differences (tests/gradcheck.py)."""
import math

import numpy as np
import pytest

from gradcheck import check_network_gradients, float64_net
import darknet_py
from darknet_py import DarknetError
from darknet_py.backend import NumpyOps

FLT_MAX = float(np.finfo(np.float32).max)


def net_cfg(width, height, channels, *sections):
    text = f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\n"
    for name, options in sections:
        text += f"\n[{name}]\n" + "".join(f"{k}={v}\n" for k, v in options.items())
    return text


def build(tmp_path, cfg, dtype=np.float32):
    path = tmp_path / "t.cfg"
    path.write_text(cfg)
    net = darknet_py.load(path, quiet=True)
    net.ops = NumpyOps(dtype)
    return net


def gradcheck(tmp_path, cfg, shape, seed=0, train=True, prepare=None, **kwargs):
    """Finite-difference check of the whole network of `cfg` on a random float64 input of `shape`."""
    net = float64_net(tmp_path, cfg, seed=seed)
    if prepare is not None:
        prepare(net)
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(size=shape)
    check_network_gradients(net, x, rng, train=train, **kwargs)
    return net


IDENTITY = ("maxpool", {"size": 1, "stride": 1})     # a first layer that passes its input through


# -- darknet transcriptions (explicit loops, flat indexes as in the C code) ------------------------------------
def ref_maxpool(x, size, stride_x, stride_y, padding):
    """forward_maxpool_layer's generic loop: (output, indexes) with index -1 where no tap is inside."""
    batch, c, h, w = x.shape
    out_h = (h + padding - size) // stride_y + 1
    out_w = (w + padding - size) // stride_x + 1
    w_offset = h_offset = int(-padding / 2)            # C: -l.pad / 2, truncation toward zero
    flat = x.reshape(-1)
    out = np.empty((batch, c, out_h, out_w), dtype=x.dtype)
    indexes = np.empty(out.shape, dtype=np.int64)
    for b in range(batch):
        for k in range(c):
            for i in range(out_h):
                for j in range(out_w):
                    best, best_i = -FLT_MAX, -1
                    for n in range(size):
                        for m in range(size):
                            cur_h = h_offset + i * stride_y + n
                            cur_w = w_offset + j * stride_x + m
                            index = cur_w + w * (cur_h + h * (k + b * c))
                            valid = 0 <= cur_h < h and 0 <= cur_w < w
                            val = flat[index] if valid else -FLT_MAX
                            if val > best:
                                best, best_i = val, index
                    out[b, k, i, j] = best
                    indexes[b, k, i, j] = best_i
    return out, indexes


def ref_maxpool_depth(x, out_channels):
    batch, c, h, w = x.shape
    flat = x.reshape(-1)
    out = np.empty((batch, out_channels, h, w), dtype=x.dtype)
    indexes = np.empty(out.shape, dtype=np.int64)
    for b in range(batch):
        for i in range(h):
            for j in range(w):
                for g in range(out_channels):
                    best, best_i = -FLT_MAX, -1
                    for k in range(g, c, out_channels):
                        in_index = j + w * (i + h * (k + c * b))
                        if flat[in_index] > best:
                            best, best_i = flat[in_index], in_index
                    out[b, g, i, j] = best
                    indexes[b, g, i, j] = best_i
    return out, indexes


def scatter_to_indexes(shape, indexes, dy):
    """backward_maxpool_layer: state.delta[index] += l.delta[i] (indexes of -1 skipped)."""
    dx = np.zeros(int(np.prod(shape)), dtype=dy.dtype)
    for index, d in zip(indexes.reshape(-1), dy.reshape(-1)):
        if index >= 0:
            dx[index] += d
    return dx.reshape(shape)


def ref_local_avgpool(x, size, stride_x, stride_y, padding):
    batch, c, h, w = x.shape
    out_h = (h + padding - size) // stride_y + 1
    out_w = (w + padding - size) // stride_x + 1
    offset = int(-padding / 2)
    out = np.empty((batch, c, out_h, out_w), dtype=x.dtype)
    with np.errstate(invalid="ignore"):
        for b in range(batch):
            for k in range(c):
                for i in range(out_h):
                    for j in range(out_w):
                        total, counter = x.dtype.type(0), 0
                        for n in range(size):
                            for m in range(size):
                                cur_h, cur_w = offset + i * stride_y + n, offset + j * stride_x + m
                                if 0 <= cur_h < h and 0 <= cur_w < w:
                                    counter += 1
                                    total += x[b, k, cur_h, cur_w]
                        out[b, k, i, j] = total / x.dtype.type(counter)
    return out


def ref_reorg_cpu(x, out_w, out_h, out_c, batch, stride, forward):
    """src/blas.c reorg_cpu on a flat buffer."""
    x = x.reshape(-1)
    out = np.full(x.size, np.nan, dtype=x.dtype)
    in_c = out_c // (stride * stride)
    for b in range(batch):
        for k in range(out_c):
            for j in range(out_h):
                for i in range(out_w):
                    in_index = i + out_w * (j + out_h * (k + out_c * b))
                    c2 = k % in_c
                    offset = k // in_c
                    w2 = i * stride + offset % stride
                    h2 = j * stride + offset // stride
                    out_index = w2 + out_w * stride * (h2 + out_h * stride * (c2 + in_c * b))
                    if forward:
                        out[out_index] = x[in_index]
                    else:
                        out[in_index] = x[out_index]
    return out


def ref_upsample_cpu(inp, w, h, c, batch, stride, forward, scale, out):
    """src/blas.c upsample_cpu, in place on flat buffers."""
    for b in range(batch):
        for k in range(c):
            for j in range(h * stride):
                for i in range(w * stride):
                    in_index = b * w * h * c + k * w * h + (j // stride) * w + i // stride
                    out_index = b * w * h * c * stride * stride + k * w * h * stride * stride + j * w * stride + i
                    if forward:
                        out[out_index] = scale * inp[in_index]
                    else:
                        inp[in_index] += scale * out[out_index]


def ref_shortcut(x, sources, weights, normalization):
    """shortcut_multilayer_cpu: x (batch, c, h, w), sources [(batch, c_i, h, w)], weights flat or None."""
    batch = x.shape[0]
    src_outputs = x[0].size
    n = len(sources)
    nweights = 0 if weights is None else len(weights)
    layer_step = nweights // (n + 1)
    step = src_outputs // layer_step if nweights else 0
    xin = x.reshape(-1)
    out = np.empty(x.size)
    relu = lambda v: v if v > 0 else 0.0   # noqa: E731

    def norm(w, total, max_val):
        if normalization == "relu":
            return relu(w) / total
        if normalization == "softmax":
            return math.exp(w - max_val) / total
        return w

    for idx in range(batch * src_outputs):
        src_i, src_b = idx % src_outputs, idx // src_outputs
        total, max_val = 1.0, -FLT_MAX
        if weights is not None and normalization != "none":
            if normalization == "softmax":
                for i in range(n + 1):
                    max_val = max(max_val, weights[src_i // step + i * layer_step])
            total = 0.0001
            for i in range(n + 1):
                w = weights[src_i // step + i * layer_step]
                total += relu(w) if normalization == "relu" else math.exp(w - max_val)
        if weights is not None:
            out[idx] = xin[idx] * norm(weights[src_i // step], total, max_val)
        else:
            out[idx] = xin[idx]
        for i, src in enumerate(sources):
            add_outputs = src[0].size
            if src_i < add_outputs:
                add = src.reshape(-1)[add_outputs * src_b + src_i]
                if weights is not None:
                    out[idx] += add * norm(weights[src_i // step + (i + 1) * layer_step], total, max_val)
                else:
                    out[idx] += add
    return out.reshape(x.shape)


def logistic(v):
    return 1.0 / (1.0 + math.exp(-v))


def ref_softmax(values, temperature=1.0):
    """src/blas.c softmax() on a list."""
    largest = max(values)
    e = [math.exp(v / temperature - largest / temperature) for v in values]
    total = sum(e)
    return [v / total for v in e]


class FixedRandom:
    """Stands in for a layer's numpy Generator so that repeated training forwards draw the same numbers."""

    def __init__(self, seed=0, ints=(1,)):
        self.seed, self.ints, self.calls, self.cache = seed, ints, 0, {}

    def random(self, shape):
        if shape not in self.cache:
            self.cache[shape] = np.random.default_rng(self.seed).random(shape)
        return self.cache[shape]

    def integers(self, high):
        value = self.ints[self.calls % len(self.ints)] % high
        self.calls += 1
        return value


# -- maxpool -------------------------------------------------------------------------------------------------
MAXPOOL_CASES = [
    # (h, w, options)
    (6, 6, {"size": 2, "stride": 2}),
    (7, 7, {"size": 2, "stride": 2}),                      # odd input: padding 1 adds a last partial window
    (6, 5, {"size": 3, "stride": 2}),
    (7, 6, {"size": 5, "stride": 1}),                      # SPP: offset -2, same size out
    (8, 7, {"size": 9, "stride": 1}),
    (6, 6, {"size": 3, "stride": 1, "padding": 0}),
    (5, 7, {"size": 2, "stride_x": 2, "stride_y": 1}),
    (7, 5, {"size": 3, "stride_x": 1, "stride_y": 3}),
    (6, 6, {"size": 2, "stride": 1}),                      # padding 1, offset 0: the extra window is at the end
    (5, 5, {"size": 4, "stride": 2, "padding": 3}),       # odd padding: offset -1
]


@pytest.mark.parametrize("h,w,options", MAXPOOL_CASES)
def test_maxpool_forward_backward_match_darknet_loop(tmp_path, h, w, options):
    net = build(tmp_path, net_cfg(w, h, 3, ("maxpool", options)))
    layer = net.layers[0]
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, h, w)).astype(np.float32)
    out = net.forward(x)
    ref, indexes = ref_maxpool(x, layer.size, layer.stride_x, layer.stride_y, layer.padding)
    assert out.dtype == np.float32 and out.shape == ref.shape == (2, 3, layer.out_h, layer.out_w)
    np.testing.assert_array_equal(out, ref)
    dy = rng.normal(size=out.shape).astype(np.float32)
    np.testing.assert_allclose(net.backward(dy), scatter_to_indexes(x.shape, indexes, dy), rtol=1e-6, atol=1e-6)


def test_maxpool_ties_go_to_first_maximum_in_scan_order(tmp_path):
    net = build(tmp_path, net_cfg(7, 6, 2, ("maxpool", {"size": 3, "stride": 2})), dtype=np.float64)
    x = np.random.default_rng(2).integers(0, 3, size=(2, 2, 6, 7)).astype(np.float64)   # many ties
    out = net.forward(x)
    ref, indexes = ref_maxpool(x, 3, 2, 2, 2)
    np.testing.assert_array_equal(out, ref)
    dy = np.random.default_rng(3).normal(size=out.shape)
    np.testing.assert_allclose(net.backward(dy), scatter_to_indexes(x.shape, indexes, dy), rtol=1e-12, atol=1e-12)


def test_maxpool_windows_outside_the_input_give_minus_flt_max(tmp_path):
    # padding 6: offset -3, the first windows lie entirely above/left of the 3x3 input
    net = build(tmp_path, net_cfg(3, 3, 1, ("maxpool", {"size": 2, "stride": 1, "padding": 6})))
    x = np.random.default_rng(4).normal(size=(1, 1, 3, 3)).astype(np.float32)
    out = net.forward(x)
    ref, indexes = ref_maxpool(x, 2, 1, 1, 6)
    assert out.shape == (1, 1, 8, 8) and out[0, 0, 0, 0] == -FLT_MAX
    np.testing.assert_array_equal(out, ref)
    dy = np.ones(out.shape, dtype=np.float32)
    np.testing.assert_array_equal(net.backward(dy), scatter_to_indexes(x.shape, indexes, dy))


@pytest.mark.parametrize("c,out_channels", [(8, 3), (6, 2), (4, 1), (3, 5)])
def test_maxpool_depth_matches_darknet_loop(tmp_path, c, out_channels):
    net = build(tmp_path, net_cfg(4, 3, c, ("maxpool", {"maxpool_depth": 1, "out_channels": out_channels,
                                                          "size": 2, "stride": 2})))
    rng = np.random.default_rng(5)
    x = rng.integers(0, 4, size=(2, c, 3, 4)).astype(np.float32)    # ties across channels too
    out = net.forward(x)
    ref, indexes = ref_maxpool_depth(x, out_channels)
    assert out.shape == (2, out_channels, 3, 4)
    np.testing.assert_array_equal(out, ref)
    dy = rng.normal(size=out.shape).astype(np.float32)
    np.testing.assert_array_equal(net.backward(dy), scatter_to_indexes(x.shape, indexes, dy))


GRAD_POOL_CASES = [(h, w, o) for h, w, o in MAXPOOL_CASES if o.get("padding", 0) < 3]


@pytest.mark.parametrize("h,w,options", GRAD_POOL_CASES)
def test_maxpool_gradients(tmp_path, h, w, options):
    gradcheck(tmp_path, net_cfg(w, h, 3, IDENTITY, ("maxpool", options)), (2, 3, h, w))


def test_maxpool_depth_gradients(tmp_path):
    gradcheck(tmp_path, net_cfg(4, 3, 8, ("maxpool", {"maxpool_depth": 1, "out_channels": 3}),
                                ("maxpool", {"size": 2, "stride": 1})), (2, 8, 3, 4))


def test_maxpool_accepts_flat_input(tmp_path):
    # [detection] outputs (batch, n); the maxpool after it reads that as n channels of 1 x 1
    cfg = net_cfg(1, 1, 6, ("detection", {"side": 1, "num": 1, "coords": 4, "classes": 1}),
                  ("maxpool", {"maxpool_depth": 1, "out_channels": 2}))
    net = build(tmp_path, cfg)
    x = np.random.default_rng(6).normal(size=(2, 6, 1, 1)).astype(np.float32)
    out = net.forward(x)
    assert net.layers[0].output.shape == (2, 6)
    np.testing.assert_array_equal(out.reshape(2, 2), x.reshape(2, 3, 2).max(axis=1))
    dx = net.backward(np.ones(out.shape, dtype=np.float32))
    assert dx.shape == x.shape and dx.sum() == 4


# -- local_avgpool / avgpool ---------------------------------------------------------------------------------
LOCAL_AVG_CASES = [
    (6, 6, {"size": 2, "stride": 2}),
    (7, 7, {"size": 2, "stride": 2}),
    (6, 5, {"size": 3, "stride": 2}),
    (7, 6, {"size": 5, "stride": 1}),
    (5, 7, {"size": 3, "stride_x": 2, "stride_y": 1}),
    (6, 6, {"size": 3, "stride": 1, "padding": 0}),
]


@pytest.mark.parametrize("h,w,options", LOCAL_AVG_CASES)
def test_local_avgpool_divides_by_in_bounds_count(tmp_path, h, w, options):
    net = build(tmp_path, net_cfg(w, h, 3, ("local_avgpool", options)))
    layer = net.layers[0]
    x = np.random.default_rng(7).normal(size=(2, 3, h, w)).astype(np.float32)
    out = net.forward(x)
    ref = ref_local_avgpool(x, layer.size, layer.stride_x, layer.stride_y, layer.padding)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("h,w,options", LOCAL_AVG_CASES)
def test_local_avgpool_gradients(tmp_path, h, w, options):
    gradcheck(tmp_path, net_cfg(w, h, 3, IDENTITY, ("local_avgpool", options)), (2, 3, h, w))


def test_local_avgpool_empty_window_is_nan_as_in_darknet(tmp_path):
    net = build(tmp_path, net_cfg(3, 3, 1, ("local_avgpool", {"size": 2, "stride": 1, "padding": 6})))
    x = np.random.default_rng(8).normal(size=(1, 1, 3, 3)).astype(np.float32)
    out = net.forward(x)
    np.testing.assert_array_equal(out, ref_local_avgpool(x, 2, 1, 1, 6))
    assert np.isnan(out[0, 0, 0, 0]) and np.isfinite(out[0, 0, 3, 3])


def test_avgpool_forward_and_gradients(tmp_path):
    cfg = net_cfg(5, 4, 3, IDENTITY, ("avgpool", {}))
    net = build(tmp_path, cfg)
    x = np.random.default_rng(9).normal(size=(2, 3, 4, 5)).astype(np.float32)
    out = net.forward(x)
    assert out.shape == (2, 3, 1, 1)
    np.testing.assert_allclose(out[:, :, 0, 0], x.sum(axis=(2, 3)) / 20, rtol=1e-6)
    gradcheck(tmp_path, cfg, (2, 3, 4, 5))


# -- route ---------------------------------------------------------------------------------------------------
def ref_route(outputs, groups, group_id):
    """forward_route_layer: for each input its [part*group_id, part*(group_id+1)) of the flat per-image output."""
    batch = outputs[0].shape[0]
    pieces = []
    for b in range(batch):
        row = []
        for o in outputs:
            flat = list(o[b].reshape(-1))
            part = len(flat) // groups
            row += flat[part * group_id:part * (group_id + 1)]
        pieces.append(row)
    return np.array(pieces)


ROUTE_NET = (
    ("maxpool", {"size": 2, "stride": 1}),                       # 0: 4 ch
    ("local_avgpool", {"size": 3, "stride": 1}),                 # 1: 4 ch
    ("maxpool", {"maxpool_depth": 1, "out_channels": 2}),        # 2: 2 ch
    ("upsample", {"stride": 1, "scale": 2}),                     # 3: 2 ch
)


@pytest.mark.parametrize("layers,groups,group_id", [("0", 1, 0), ("0,1", 1, 0), ("0,1,3", 2, 1), ("-4,1,2", 2, 0),
                                                     ("1,0,2", 5, 3), ("3", 2, 1)])
def test_route_forward_matches_darknet(tmp_path, layers, groups, group_id):
    cfg = net_cfg(5, 4, 4, *ROUTE_NET, ("route", {"layers": layers, "groups": groups, "group_id": group_id}))
    net = build(tmp_path, cfg)
    x = np.random.default_rng(10).normal(size=(2, 4, 4, 5)).astype(np.float32)
    out = net.forward(x)
    route = net.layers[-1]
    assert out.shape == (2, route.out_c, 4, 5)
    ref = ref_route([net.layers[i].output for i in route.input_layers], groups, group_id)
    np.testing.assert_array_equal(out.reshape(2, -1), ref)


@pytest.mark.parametrize("layers,groups,group_id", [("0,1", 1, 0), ("0,1,3", 2, 1), ("1,0,2", 5, 3), ("0,0", 2, 1)])
def test_route_gradients(tmp_path, layers, groups, group_id):
    cfg = net_cfg(5, 4, 4, *ROUTE_NET, ("route", {"layers": layers, "groups": groups, "group_id": group_id}),
                  ("local_avgpool", {"size": 2, "stride": 1}))
    gradcheck(tmp_path, cfg, (2, 4, 4, 5))


def test_route_groups_cut_each_flat_input_even_mid_channel(tmp_path):
    # channels 3 + 1 with groups=2: darknet takes half of each input's flat buffer, 1.5 channels of the first
    cfg = net_cfg(4, 2, 3, IDENTITY, ("maxpool", {"maxpool_depth": 1, "out_channels": 1}),
                  ("route", {"layers": "0,1", "groups": 2, "group_id": 1}))
    net = build(tmp_path, cfg)
    x = np.arange(2 * 3 * 2 * 4, dtype=np.float32).reshape(2, 3, 2, 4)
    out = net.forward(x)
    assert out.shape == (2, 2, 2, 4)
    np.testing.assert_array_equal(out.reshape(2, -1), ref_route([x, net.layers[1].output], 2, 1))
    np.testing.assert_array_equal(out[0].reshape(-1)[:12], x[0].reshape(-1)[12:])
    gradcheck(tmp_path, cfg, (2, 3, 2, 4))


# -- shortcut ------------------------------------------------------------------------------------------------
SHORTCUT_NET = (
    ("maxpool", {"size": 2, "stride": 1}),                       # 0: 4 ch
    ("route", {"layers": "0,0"}),                                # 1: 8 ch
    ("maxpool", {"maxpool_depth": 1, "out_channels": 2}),        # 2: 2 ch
    ("route", {"layers": "0"}),                                  # 3: 4 ch
    ("local_avgpool", {"size": 3, "stride": 1}),                 # 4: 4 ch, the input of the shortcut
)


def shortcut_cfg(**options):
    base = {"from": "0", "activation": "linear"}
    base.update(options)
    return net_cfg(5, 4, 4, *SHORTCUT_NET, ("shortcut", base))


WEIGHT_CASES = [(t, n) for t in ("per_feature", "per_channel") for n in ("none", "relu", "softmax")]


@pytest.mark.parametrize("froms", ["0", "1", "2", "0,1,2", "-2,-4"])
@pytest.mark.parametrize("weights_type,normalization", [("none", "none")] + WEIGHT_CASES)
def test_shortcut_forward_matches_shortcut_multilayer_cpu(tmp_path, froms, weights_type, normalization):
    net = build(tmp_path, shortcut_cfg(**{"from": froms, "weights_type": weights_type,
                                          "weights_normalization": normalization}), dtype=np.float64)
    layer = net.layers[-1]
    rng = np.random.default_rng(11)
    weights = None
    if layer.nweights:
        weights = rng.normal(0, 1, layer.nweights)
        weights[0] = weights[1]                                   # a tie for the softmax's maximum
        layer.weights["weights"] = weights.astype(np.float32).astype(np.float64)
        weights = layer.weights["weights"]
    x = rng.normal(size=(2, 4, 4, 5))
    out = net.forward(x)
    sources = [net.layers[i].output for i in layer.input_layers]
    ref = ref_shortcut(net.layers[-2].output, sources, weights, normalization if weights is not None else "none")
    np.testing.assert_allclose(out, ref, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("weights_type,normalization", WEIGHT_CASES)
@pytest.mark.parametrize("froms", ["0,1,2", "-1", "2"])
def test_shortcut_gradients_with_weights(tmp_path, weights_type, normalization, froms):
    cfg = shortcut_cfg(**{"from": froms, "weights_type": weights_type, "weights_normalization": normalization})
    gradcheck(tmp_path, cfg, (2, 4, 4, 5), samples=40)


@pytest.mark.parametrize("activation", ["linear", "leaky", "logistic", "mish", "swish", "normalize_channels"])
def test_shortcut_gradients_plain_and_activations(tmp_path, activation):
    gradcheck(tmp_path, shortcut_cfg(**{"from": "0,1,2", "activation": activation}), (2, 4, 4, 5))


def test_shortcut_weight_gradient_of_the_softmax_maximum(tmp_path):
    # the largest raw weight also moves the subtracted maximum: the eps term makes that visible
    cfg = shortcut_cfg(**{"from": "0", "weights_type": "per_feature", "weights_normalization": "softmax"})

    def prepare(net):
        net.layers[-1].weights["weights"] = np.array([-9.0, -12.0])   # eps/sum is not negligible here
    gradcheck(tmp_path, cfg, (2, 4, 4, 5), prepare=prepare, tol=1e-7)


def test_shortcut_weight_gradients_accumulate(tmp_path):
    net = float64_net(tmp_path, shortcut_cfg(**{"from": "0,2", "weights_type": "per_channel"}))
    x = np.random.default_rng(12).normal(size=(2, 4, 4, 5))
    out = net.forward(x)
    dy = np.ones(out.shape)
    net.backward(dy)
    first = net.layers[-1].grads["weights"].copy()
    net.backward(dy)
    np.testing.assert_allclose(net.layers[-1].grads["weights"], 2 * first)


# -- upsample ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("stride,scale", [(2, 1.0), (2, 0.5), (3, 1.25), (-2, 1.0), (-2, 1.5), (-3, 0.25)])
def test_upsample_matches_upsample_cpu(tmp_path, stride, scale):
    h, w = (6, 6) if stride == -3 else (4, 6)
    net = build(tmp_path, net_cfg(w, h, 2, ("upsample", {"stride": stride, "scale": scale})))
    layer = net.layers[0]
    rng = np.random.default_rng(13)
    x = rng.normal(size=(2, 2, h, w)).astype(np.float32)
    out = net.forward(x)
    ref = np.zeros(2 * layer.outputs, dtype=np.float32)
    s, sc = abs(stride), np.float32(scale)
    if stride > 0:
        ref_upsample_cpu(x.reshape(-1), w, h, 2, 2, s, 1, sc, ref)
    else:
        ref_upsample_cpu(ref, layer.out_w, layer.out_h, 2, 2, s, 0, sc, x.reshape(-1).copy())
    np.testing.assert_array_equal(out.reshape(-1), ref)
    dy = rng.normal(size=out.shape).astype(np.float32)
    dref = np.zeros(x.size, dtype=np.float32)
    if stride > 0:
        ref_upsample_cpu(dref, w, h, 2, 2, s, 0, sc, dy.reshape(-1).copy())
    else:
        ref_upsample_cpu(dy.reshape(-1).copy(), layer.out_w, layer.out_h, 2, 2, s, 1, sc, dref)
    np.testing.assert_allclose(net.backward(dy).reshape(-1), dref, rtol=1e-6)


@pytest.mark.parametrize("stride,scale", [(2, 1.0), (2, 0.5), (-2, 1.5), (3, 2.0)])
def test_upsample_gradients(tmp_path, stride, scale):
    gradcheck(tmp_path, net_cfg(6, 6, 2, IDENTITY, ("upsample", {"stride": stride, "scale": scale})), (2, 2, 6, 6))


# -- reorg3d / reorg -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("kind,stride,reverse,c,h,w", [
    ("reorg3d", 2, 0, 3, 4, 6), ("reorg3d", 3, 0, 2, 6, 3), ("reorg3d", 2, 1, 16, 2, 3), ("reorg3d", 2, 1, 32, 3, 2),
    ("reorg", 2, 0, 8, 4, 6), ("reorg", 2, 0, 4, 2, 2), ("reorg", 3, 0, 9, 3, 6), ("reorg", 2, 1, 8, 3, 2),
    ("reorg", 2, 1, 4, 2, 3)])
def test_reorg_matches_reorg_cpu(tmp_path, kind, stride, reverse, c, h, w):
    net = build(tmp_path, net_cfg(w, h, c, (kind, {"stride": stride, "reverse": reverse})))
    layer = net.layers[0]
    rng = np.random.default_rng(14)
    x = rng.normal(size=(2, c, h, w)).astype(np.float32)
    out = net.forward(x)
    dims = (layer.out_w, layer.out_h, layer.out_c) if kind == "reorg3d" else (w, h, c)
    ref = ref_reorg_cpu(x, *dims, 2, stride, reverse)           # forward passes forward = reverse
    assert out.shape == (2, layer.out_c, layer.out_h, layer.out_w)
    np.testing.assert_array_equal(out.reshape(-1), ref)
    dy = rng.normal(size=out.shape).astype(np.float32)
    dref = ref_reorg_cpu(dy, *dims, 2, stride, 1 - reverse)     # backward passes the other flag
    np.testing.assert_array_equal(net.backward(dy).reshape(-1), dref)


def space_to_depth(x, s):
    b, c, h, w = x.shape
    return x.reshape(b, c, h // s, s, w // s, s).transpose(0, 3, 5, 1, 2, 4).reshape(b, s * s * c, h // s, w // s)


def depth_to_space(x, s):
    b, c, h, w = x.shape
    return x.reshape(b, s, s, c // (s * s), h, w).transpose(0, 3, 4, 1, 5, 2).reshape(b, c // (s * s), h * s, w * s)


def test_reorg_element_orders(tmp_path):
    """reorg3d is ONNX's SpaceToDepth, reorg reverse=1 its DepthToSpace; reorg3d reverse=1 and reorg reverse=0
    are darknet's own orders (reorg_cpu called with dims that are not the input's)."""
    x = np.arange(2 * 16 * 4 * 4, dtype=np.float32).reshape(2, 16, 4, 4)
    outs = {}
    for kind in ("reorg3d", "reorg"):
        for reverse in (0, 1):
            net = build(tmp_path, net_cfg(4, 4, 16, (kind, {"stride": 2, "reverse": reverse})))
            outs[kind, reverse] = net.forward(x)
    np.testing.assert_array_equal(outs["reorg3d", 0], space_to_depth(x, 2))
    np.testing.assert_array_equal(outs["reorg", 1], depth_to_space(x, 2))
    assert not np.array_equal(outs["reorg3d", 1], depth_to_space(x, 2))
    assert not np.array_equal(outs["reorg", 0], space_to_depth(x, 2))
    # the YOLOv2 order: reorg reads its c x h x w input as c/4 x 2h x 2w and takes that apart by space-to-depth
    np.testing.assert_array_equal(outs["reorg", 0], space_to_depth(x.reshape(2, 4, 8, 8), 2).reshape(2, 64, 2, 2))
    # reorg3d reverse: depth-to-space of the input read as c/4 x 2h x 2w (the output's dims)
    np.testing.assert_array_equal(outs["reorg3d", 1], depth_to_space(x.reshape(2, 4, 8, 8), 2).reshape(2, 4, 8, 8))


@pytest.mark.parametrize("kind,stride,reverse,c,h,w", [("reorg3d", 2, 0, 3, 4, 6), ("reorg3d", 2, 1, 16, 2, 2),
                                                       ("reorg", 2, 0, 4, 4, 2), ("reorg", 2, 1, 8, 2, 3)])
def test_reorg_gradients(tmp_path, kind, stride, reverse, c, h, w):
    gradcheck(tmp_path, net_cfg(w, h, c, IDENTITY, (kind, {"stride": stride, "reverse": reverse}),
                                ("local_avgpool", {"size": 2, "stride": 1})), (2, c, h, w))


@pytest.mark.parametrize("kind,reverse,c", [("reorg3d", 1, 4), ("reorg3d", 1, 8), ("reorg", 0, 2), ("reorg", 0, 6)])
def test_reorg_channel_counts_darknet_cannot_run_are_refused(tmp_path, kind, reverse, c):
    net = build(tmp_path, net_cfg(4, 4, c, (kind, {"stride": 2, "reverse": reverse})))
    with pytest.raises(DarknetError, match="reorg_cpu"):
        net.forward(np.zeros((1, c, 4, 4), dtype=np.float32))


# -- scale_channels / sam ------------------------------------------------------------------------------------
def test_scale_channels_forward(tmp_path):
    cfg = net_cfg(5, 4, 3, ("local_avgpool", {"size": 3, "stride": 1}), ("avgpool", {}),
                  ("scale_channels", {"from": -2}))
    net = build(tmp_path, cfg)
    x = np.random.default_rng(15).normal(size=(2, 3, 4, 5)).astype(np.float32)
    out = net.forward(x)
    src, scale = net.layers[0].output, net.layers[1].output.reshape(2, 3)
    ref = np.empty_like(src)
    for b in range(2):
        for c in range(3):
            ref[b, c] = scale[b, c] * src[b, c]
    np.testing.assert_array_equal(out, ref)


def test_scale_channels_scale_wh_forward(tmp_path):
    cfg = net_cfg(5, 4, 3, ("local_avgpool", {"size": 3, "stride": 1}),
                  ("maxpool", {"maxpool_depth": 1, "out_channels": 1}),
                  ("scale_channels", {"from": -2, "scale_wh": 1, "activation": "logistic"}))
    net = build(tmp_path, cfg, dtype=np.float64)
    x = np.random.default_rng(16).normal(size=(2, 3, 4, 5))
    out = net.forward(x)
    src, scale = net.layers[0].output, net.layers[1].output
    for b in range(2):
        for c in range(3):
            for y in range(4):
                for xx in range(5):
                    assert out[b, c, y, xx] == pytest.approx(logistic(scale[b, 0, y, xx] * src[b, c, y, xx]))


@pytest.mark.parametrize("activation", ["linear", "logistic", "leaky"])
def test_scale_channels_gradients(tmp_path, activation):
    cfg = net_cfg(5, 4, 3, ("local_avgpool", {"size": 3, "stride": 1}), ("avgpool", {}),
                  ("scale_channels", {"from": -2, "activation": activation}))
    gradcheck(tmp_path, cfg, (2, 3, 4, 5))


@pytest.mark.parametrize("activation", ["linear", "logistic"])
def test_scale_channels_scale_wh_gradients(tmp_path, activation):
    cfg = net_cfg(5, 4, 3, ("local_avgpool", {"size": 3, "stride": 1}),
                  ("maxpool", {"maxpool_depth": 1, "out_channels": 1}),
                  ("scale_channels", {"from": 0, "scale_wh": 1, "activation": activation}))
    gradcheck(tmp_path, cfg, (2, 3, 4, 5))


@pytest.mark.parametrize("activation", ["linear", "logistic"])
def test_sam_forward_and_gradients(tmp_path, activation):
    cfg = net_cfg(5, 4, 3, IDENTITY, ("local_avgpool", {"size": 3, "stride": 1}),
                  ("sam", {"from": 0, "activation": activation}))
    net = build(tmp_path, cfg, dtype=np.float64)
    x = np.random.default_rng(17).normal(size=(2, 3, 4, 5))
    out = net.forward(x)
    prod = net.layers[1].output * x
    np.testing.assert_allclose(out, prod if activation == "linear" else 1 / (1 + np.exp(-prod)), rtol=1e-12)
    gradcheck(tmp_path, cfg, (2, 3, 4, 5))


# -- dropout -------------------------------------------------------------------------------------------------
def test_dropout_inference_is_identity(tmp_path):
    net = build(tmp_path, net_cfg(4, 3, 2, IDENTITY, ("dropout", {"probability": 0.5})))
    x = np.random.default_rng(18).normal(size=(2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(net.forward(x), x)
    dy = np.ones((2, 2, 3, 4), dtype=np.float32)
    np.testing.assert_array_equal(net.backward(dy), dy)


def ref_splitmix64_uniform(seed, i):
    """Value i of the dropout generator, from the published splitmix64 (Steele, Lea, Flood 2014) in Python integers:
    output i + 1 of the stream `seed`, its top 24 bits over 2^24."""
    mask = (1 << 64) - 1
    z = (seed + (i + 1) * 0x9E3779B97F4A7C15) & mask
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & mask
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & mask
    z ^= z >> 31
    return (z >> 40) / 2.0 ** 24


def test_dropout_training_mask_and_scale(tmp_path):
    # the mask comes from a counter-based generator (so that the CUDA engine draws the same): checked against an
    # independent splitmix64 transcription, value by value, from the seed the forward drew
    net = build(tmp_path, net_cfg(8, 8, 4, IDENTITY, ("dropout", {"probability": 0.3})))
    layer = net.layers[1]
    x = np.random.default_rng(19).normal(size=(2, 4, 8, 8)).astype(np.float32)
    out = net.forward(x, train=True)
    rand = np.array([ref_splitmix64_uniform(layer.mask_seed, i) for i in range(x.size)]).reshape(x.shape)
    scale = np.float32(1 / (1 - np.float64(np.float32(0.3))))
    np.testing.assert_array_equal(out, np.where(rand < np.float32(0.3), 0, x * scale))
    assert out.dtype == np.float32 and 0.2 < np.mean(out == 0) < 0.4
    dy = np.random.default_rng(20).normal(size=out.shape).astype(np.float32)
    np.testing.assert_array_equal(net.backward(dy), np.where(rand < np.float32(0.3), 0, dy * scale))
    assert not np.array_equal(net.forward(x, train=True) == 0, out == 0)    # a fresh mask every forward


def test_dropout_gradients(tmp_path):
    cfg = net_cfg(5, 4, 3, IDENTITY, ("dropout", {"probability": 0.4}))

    def prepare(net):
        net.layers[1].rng = FixedRandom(3)
    gradcheck(tmp_path, cfg, (2, 3, 4, 5), prepare=prepare)
    gradcheck(tmp_path, cfg, (2, 3, 4, 5), train=False)


def test_dropblock_training_is_refused(tmp_path):
    net = build(tmp_path, net_cfg(8, 8, 2, IDENTITY, ("dropout", {"probability": 0.1, "dropblock": 1})))
    x = np.zeros((1, 2, 8, 8), dtype=np.float32)
    np.testing.assert_array_equal(net.forward(x), x)
    with pytest.raises(DarknetError, match="DropBlock"):
        net.forward(x, train=True)


# -- softmax / cost ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("groups,temperature", [(1, 1.0), (3, 1.0), (2, 0.5), (6, 2.0)])
def test_softmax_forward_and_gradients(tmp_path, groups, temperature):
    cfg = net_cfg(2, 2, 3, IDENTITY, ("softmax", {"groups": groups, "temperature": temperature}))
    net = build(tmp_path, cfg, dtype=np.float64)
    x = np.random.default_rng(21).normal(size=(2, 3, 2, 2)) * 3
    out = net.forward(x)
    flat = x.reshape(2, -1)
    n = 12 // groups
    ref = [sum((ref_softmax(list(flat[b, g * n:(g + 1) * n]), temperature) for g in range(groups)), [])
           for b in range(2)]
    np.testing.assert_allclose(out.reshape(2, -1), np.array(ref), rtol=1e-12)
    gradcheck(tmp_path, cfg, (2, 3, 2, 2))


def test_softmax_tree_and_spatial_are_refused(tmp_path):
    for options, match in (({"tree": "data/9k.tree"}, "tree"), ({"spatial": 1}, "spatial")):
        net = build(tmp_path, net_cfg(2, 2, 3, ("softmax", options)))
        with pytest.raises(DarknetError, match=match):
            net.forward(np.zeros((1, 3, 2, 2), dtype=np.float32))


def test_cost_is_identity(tmp_path):
    cfg = net_cfg(4, 3, 2, ("local_avgpool", {"size": 2, "stride": 1}), ("cost", {"type": "sse", "scale": 3}))
    net = build(tmp_path, cfg)
    x = np.random.default_rng(22).normal(size=(2, 2, 3, 4)).astype(np.float32)
    np.testing.assert_array_equal(net.forward(x), net.layers[0].output)
    gradcheck(tmp_path, cfg, (2, 2, 3, 4))


# -- crop ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("noadjust", [0, 1])
@pytest.mark.parametrize("h,w,ch,cw", [(6, 7, 3, 4), (5, 5, 5, 5), (8, 6, 1, 3)])
def test_crop_inference_is_darknets_center_crop(tmp_path, noadjust, h, w, ch, cw):
    net = build(tmp_path, net_cfg(w, h, 2, ("crop", {"crop_height": ch, "crop_width": cw, "noadjust": noadjust,
                                                     "flip": 1})))
    x = np.random.default_rng(23).random((2, 2, h, w)).astype(np.float32)
    out = net.forward(x)
    scale, trans = (1, 0) if noadjust else (2, -1)
    dh, dw = (h - ch) // 2, (w - cw) // 2
    ref = np.empty((2, 2, ch, cw), dtype=np.float32)
    for b in range(2):
        for c in range(2):
            for i in range(ch):
                for j in range(cw):
                    ref[b, c, i, j] = x[b, c, i + dh, j + dw] * np.float32(scale) + np.float32(trans)
    np.testing.assert_array_equal(out, ref)


def test_crop_training_draws_offset_and_flip(tmp_path):
    net = build(tmp_path, net_cfg(7, 6, 1, ("crop", {"crop_height": 3, "crop_width": 4, "flip": 1})))
    layer = net.layers[0]
    layer.rng = FixedRandom(ints=(1, 2, 3))            # flip, dh = 2, dw = 3
    x = np.random.default_rng(24).random((1, 1, 6, 7)).astype(np.float32)
    out = net.forward(x, train=True)
    for i in range(3):
        for j in range(4):
            assert out[0, 0, i, j] == x[0, 0, i + 2, 7 - 3 - j - 1] * 2 - 1


@pytest.mark.parametrize("train", [False, True])
def test_crop_gradients(tmp_path, train):
    cfg = net_cfg(7, 6, 2, IDENTITY, ("crop", {"crop_height": 3, "crop_width": 4, "flip": 1}))

    def prepare(net):
        net.layers[1].rng = FixedRandom(ints=(1, 2, 1))
    gradcheck(tmp_path, cfg, (2, 2, 6, 7), train=train, prepare=prepare)


# -- detection heads -----------------------------------------------------------------------------------------
def yolo_section(**options):
    base = {"mask": "0,1", "anchors": "10,13, 16,30, 33,23", "classes": 2, "num": 3}
    base.update(options)
    return "yolo", base


@pytest.mark.parametrize("scale_x_y,new_coords", [(1.0, 0), (1.05, 0), (2.0, 0), (1.0, 1), (2.0, 1)])
def test_yolo_activations(tmp_path, scale_x_y, new_coords):
    cfg = net_cfg(3, 2, 14, yolo_section(scale_x_y=scale_x_y, new_coords=new_coords))
    net = build(tmp_path, cfg, dtype=np.float64)
    x = np.random.default_rng(25).normal(size=(2, 14, 2, 3)) * 2
    out = net.forward(x)
    sxy = float(np.float32(scale_x_y))
    for b in range(2):
        for n in range(2):
            for e in range(7):
                for i in range(2):
                    for j in range(3):
                        v = x[b, n * 7 + e, i, j]
                        if not new_coords and e != 2 and e != 3:
                            v = logistic(v)
                        if e < 2:
                            v = v * sxy - 0.5 * (sxy - 1)
                        assert out[b, n * 7 + e, i, j] == pytest.approx(v, rel=1e-12, abs=1e-12)


@pytest.mark.parametrize("scale_x_y,new_coords", [(1.0, 0), (1.2, 0), (1.0, 1), (2.0, 1)])
def test_yolo_gradients(tmp_path, scale_x_y, new_coords):
    cfg = net_cfg(3, 2, 14, IDENTITY, yolo_section(scale_x_y=scale_x_y, new_coords=new_coords))
    gradcheck(tmp_path, cfg, (2, 14, 2, 3))


def gaussian_section(**options):
    base = {"mask": "0", "anchors": "10,13, 16,30", "classes": 2, "num": 2}
    base.update(options)
    return "Gaussian_yolo", base


def test_gaussian_yolo_activations_and_gradients(tmp_path):
    cfg = net_cfg(3, 2, 11, IDENTITY, gaussian_section(scale_x_y=1.1))
    net = build(tmp_path, cfg, dtype=np.float64)
    x = np.random.default_rng(26).normal(size=(2, 11, 2, 3))
    out = net.forward(x)
    sxy = float(np.float32(1.1))
    for e in range(11):
        v = x[:, e]
        if e not in (4, 6):
            v = 1 / (1 + np.exp(-v))
        if e in (0, 2):
            v = v * sxy - 0.5 * (sxy - 1)
        np.testing.assert_allclose(out[:, e], v, rtol=1e-12, atol=1e-12)
    gradcheck(tmp_path, cfg, (2, 11, 2, 3))


@pytest.mark.parametrize("softmax", [0, 1])
def test_region_forward_matches_darknet_order(tmp_path, softmax):
    cfg = net_cfg(3, 2, 16, ("region", {"classes": 3, "num": 2, "softmax": softmax, "anchors": "1,1, 2,2"}))
    net = build(tmp_path, cfg, dtype=np.float64)
    x = np.random.default_rng(27).normal(size=(2, 16, 2, 3))
    out = net.forward(x)
    assert out.shape == (2, 96)
    size, locations = 8, 6
    for b in range(2):
        flat = x[b].reshape(-1)
        # flatten(): swap[i*layers + c] = x[c*size + i] for size = h*w, layers = num*(classes+5)
        swapped = [flat[c * locations + i] for i in range(locations) for c in range(16)]
        for i in range(locations * 2):
            index = size * i
            swapped[index + 4] = logistic(swapped[index + 4])
            if softmax:
                swapped[index + 5:index + 8] = ref_softmax(swapped[index + 5:index + 8])
        np.testing.assert_allclose(out[b], swapped, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("softmax", [0, 1])
def test_region_gradients(tmp_path, softmax):
    cfg = net_cfg(3, 2, 16, IDENTITY, ("region", {"classes": 3, "num": 2, "softmax": softmax, "anchors": "1,1, 2,2"}))
    gradcheck(tmp_path, cfg, (2, 16, 2, 3))


def test_region_tree_and_other_coords_are_refused(tmp_path):
    net = build(tmp_path, net_cfg(2, 2, 8, ("region", {"classes": 3, "num": 1, "tree": "data/9k.tree"})))
    with pytest.raises(DarknetError, match="tree"):
        net.forward(np.zeros((1, 8, 2, 2), dtype=np.float32))
    net = build(tmp_path, net_cfg(2, 2, 9, ("region", {"classes": 3, "num": 1, "coords": 5})))
    with pytest.raises(DarknetError, match="coords"):
        net.forward(np.zeros((1, 9, 2, 2), dtype=np.float32))


@pytest.mark.parametrize("softmax", [0, 1])
def test_detection_forward_and_gradients(tmp_path, softmax):
    # side 2, num 1, coords 4, classes 3: 4 * (5 + 3) = 32 inputs, the first 12 are class scores
    cfg = net_cfg(2, 2, 8, IDENTITY, ("detection", {"side": 2, "num": 1, "coords": 4, "classes": 3,
                                                    "softmax": softmax}))
    net = build(tmp_path, cfg, dtype=np.float64)
    x = np.random.default_rng(28).normal(size=(2, 8, 2, 2))
    out = net.forward(x)
    flat = x.reshape(2, -1)
    ref = flat.copy()
    if softmax:
        for b in range(2):
            for loc in range(4):
                ref[b, loc * 3:loc * 3 + 3] = ref_softmax(list(flat[b, loc * 3:loc * 3 + 3]))
    np.testing.assert_allclose(out, ref, rtol=1e-12)
    gradcheck(tmp_path, cfg, (2, 8, 2, 2))


# -- a deeper network mixing everything ----------------------------------------------------------------------
def test_mixed_network_gradients(tmp_path):
    cfg = net_cfg(8, 8, 4,
                  ("maxpool", {"size": 2, "stride": 1}),                          # 0: 8x8x4
                  ("local_avgpool", {"size": 3, "stride": 1}),                    # 1
                  ("maxpool", {"maxpool_depth": 1, "out_channels": 2}),           # 2: 8x8x2
                  ("route", {"layers": "0,1", "groups": 2, "group_id": 1}),       # 3: 8x8x4
                  ("shortcut", {"from": "0,2", "weights_type": "per_channel",
                                "weights_normalization": "relu", "activation": "leaky"}),
                  ("reorg3d", {"stride": 2}),                                     # 5: 4x4x16
                  ("maxpool", {"size": 5, "stride": 1}),                          # 6
                  ("avgpool", {}),                                                # 7: 1x1x16
                  ("scale_channels", {"from": 6}),                                # 8: 4x4x16
                  ("upsample", {"stride": -2, "scale": 0.5}),                     # 9: 2x2x16
                  ("reorg", {"stride": 2, "reverse": 1}),                         # 10: 4x4x4
                  ("sam", {"from": -1, "activation": "logistic"}),                # 11
                  ("softmax", {"groups": 4}))
    gradcheck(tmp_path, cfg, (2, 4, 8, 8), samples=30)


FLOAT32_NETS = [
    net_cfg(8, 8, 4, ("maxpool", {"size": 2, "stride": 2}), ("local_avgpool", {"size": 3, "stride": 1}),
            ("route", {"layers": "0,1"}), ("shortcut", {"from": "0", "weights_type": "per_feature",
                                                       "weights_normalization": "softmax", "activation": "mish"}),
            ("upsample", {"stride": 2}), ("reorg3d", {"stride": 2}), ("avgpool", {}), ("softmax", {"groups": 2})),
    net_cfg(8, 8, 6, ("maxpool", {"maxpool_depth": 1, "out_channels": 4}), ("upsample", {"stride": -2, "scale": 2}),
            ("reorg", {"stride": 2}), ("dropout", {"probability": 0.3}), ("cost", {})),
    net_cfg(8, 8, 4, IDENTITY, ("avgpool", {}), ("scale_channels", {"from": 0, "activation": "logistic"}),
            ("sam", {"from": 0}), ("maxpool", {"maxpool_depth": 1, "out_channels": 1}),
            ("scale_channels", {"from": 3, "scale_wh": 1}), ("crop", {"crop_height": 5, "crop_width": 6, "flip": 1})),
    net_cfg(3, 2, 14, IDENTITY, yolo_section(scale_x_y=1.05)),
    net_cfg(3, 2, 11, IDENTITY, gaussian_section()),
    net_cfg(3, 2, 16, IDENTITY, ("region", {"classes": 3, "num": 2, "softmax": 1})),
    net_cfg(2, 2, 8, IDENTITY, ("detection", {"side": 2, "num": 1, "coords": 4, "classes": 3, "softmax": 1})),
]


@pytest.mark.parametrize("train", [False, True])
@pytest.mark.parametrize("index", range(len(FLOAT32_NETS)))
def test_float32_in_float32_out(tmp_path, index, train):
    net = build(tmp_path, FLOAT32_NETS[index])
    for layer in net.layers:
        if layer.kind == "shortcut":
            layer.weights["weights"] = np.ones(layer.nweights, dtype=np.float32)
    x = np.random.default_rng(29).normal(size=(2, net.channels, net.height, net.width)).astype(np.float32)
    out = net.forward(x, train=train)
    for layer in net.layers:
        assert layer.output.dtype == np.float32, layer.kind
        assert np.isfinite(layer.output).all(), layer.kind
    dx = net.backward(np.ones(out.shape, dtype=np.float32))
    assert dx.dtype == np.float32 and dx.shape == x.shape
    for layer in net.layers:
        assert layer.delta.dtype == np.float32, layer.kind
    assert all(g.dtype == np.float32 for layer in net.layers for g in layer.grads.values())


def test_route_of_one_contiguous_piece_is_a_view():
    """A [route] that selects one group of channels of one image, or all of one layer, shares that layer's output
    (no copy); a slice that is not contiguous (several images) is copied. Values are the columns either way."""
    ops = NumpyOps()
    src = np.arange(2 * 12, dtype=np.float32).reshape(2, 12)
    group = ops.route([(src[:1], 4, 4)], 4)
    assert np.shares_memory(group, src) and group.flags.c_contiguous
    np.testing.assert_array_equal(group, src[:1, 4:8])
    whole = ops.route([(src, 0, 12)], 12)
    assert np.shares_memory(whole, src)
    batch = ops.route([(src, 4, 4)], 4)
    assert not np.shares_memory(batch, src) and batch.flags.c_contiguous
    np.testing.assert_array_equal(batch, src[:, 4:8])
    padded = ops.route([(src[:1], 4, 4)], 6)
    np.testing.assert_array_equal(padded, np.concatenate([src[:1, 4:8], np.zeros((1, 2), np.float32)], 1))
