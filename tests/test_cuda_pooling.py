"""The CUDA engine's pooling, resampling and routing kernels (csrc/cuda/pooling.cu, resample.cu, route.cu) through
CudaOps against NumPy references (darknet's loops, or NumpyOps where it is itself checked against darknet in
test_engine_layers.py), on odd sizes, partial blocks and reductions longer than a block; then every layer type and
option of that group, CPU engine vs CUDA engine, forward and backward, in training and inference."""
import numpy as np
import pytest

from darknet_py.backend import FLT_MAX, NumpyOps
from engines import compare_engines, engine_pair, net_cfg
from test_engine_layers import ref_reorg_cpu

CPU = NumpyOps()


def dev(ops, a):
    return ops.asarray(np.asarray(a, dtype=np.float32))


def host(ops, a):
    return np.asarray(ops.to_numpy(a))


def out_size(length, size, stride, padding):
    return (length + padding - size) // stride + 1


# -- max / local average / global average pooling -------------------------------------------------------------------
def darknet_maxpool(x, size, sx, sy, offset, out_h, out_w):
    """forward_maxpool_layer's scan, vectorized over (batch, channel): the values and indexes (y * w + x in the
    plane, -1 where nothing beat -FLT_MAX)."""
    b, c, h, w = x.shape
    out = np.full((b, c, out_h, out_w), -FLT_MAX, np.float32)
    index = np.full(out.shape, -1, np.int64)
    for i in range(out_h):
        for j in range(out_w):
            for n in range(size):
                for m in range(size):
                    y, xx = i * sy - offset + n, j * sx - offset + m
                    if 0 <= y < h and 0 <= xx < w:
                        better = x[:, :, y, xx] > out[:, :, i, j]
                        out[:, :, i, j] = np.where(better, x[:, :, y, xx], out[:, :, i, j])
                        index[:, :, i, j] = np.where(better, y * w + xx, index[:, :, i, j])
    return out, index


def scatter_to_plane_indexes(shape, index, dy):
    """backward_maxpool_layer: each dy added at its plane index (none for -1)."""
    b, c, h, w = shape
    dx = np.zeros((b, c, h * w), np.float64)
    for bi in range(b):
        for ci in range(c):
            keep = index[bi, ci] >= 0
            np.add.at(dx[bi, ci], index[bi, ci][keep], dy[bi, ci][keep])
    return dx.reshape(shape)


# (h, w, size, stride_x, stride_y, padding): odd sizes, overlapping windows, padding beyond the input (empty windows)
POOL_GEOMETRIES = [
    (7, 9, 2, 2, 2, 1), (6, 5, 3, 1, 1, 2), (9, 7, 3, 2, 1, 1), (5, 8, 4, 3, 2, 3), (3, 3, 2, 1, 1, 6),
    (1, 1, 1, 1, 1, 0), (11, 13, 5, 3, 3, 4), (4, 23, 3, 1, 2, 0),
]


def pool_input(shape, seed):
    """Values with many ties (integers), NaNs and -inf: darknet's strict `>` keeps the first maximum, never a NaN."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-3, 4, size=shape).astype(np.float32)
    flat = x.reshape(-1)
    flat[rng.choice(flat.size, max(1, flat.size // 9), replace=False)] = np.nan
    flat[rng.choice(flat.size, max(1, flat.size // 13), replace=False)] = -np.inf
    return x


@pytest.mark.parametrize("h, w, size, sx, sy, padding", POOL_GEOMETRIES, ids=str)
def test_maxpool_kernels_follow_darknets_scan(cuda_ops, h, w, size, sx, sy, padding):
    x = pool_input((2, 3, h, w), h * w + size)
    oh, ow, off = out_size(h, size, sy, padding), out_size(w, size, sx, padding), padding // 2
    want, want_index = darknet_maxpool(x, size, sx, sy, off, oh, ow)
    out, argmax = cuda_ops.maxpool2d_argmax(dev(cuda_ops, x), size, sx, sy, off, oh, ow)
    np.testing.assert_array_equal(host(cuda_ops, out), want)
    np.testing.assert_array_equal(host(cuda_ops, argmax), want_index)
    np.testing.assert_array_equal(host(cuda_ops, cuda_ops.maxpool2d(dev(cuda_ops, x), size, sx, sy, off, oh, ow)), want)
    dy = np.random.default_rng(1).normal(size=want.shape).astype(np.float32)
    dx = cuda_ops.maxpool2d_backward(dev(cuda_ops, dy), argmax, size, sx, sy, off, h, w)
    np.testing.assert_allclose(host(cuda_ops, dx), scatter_to_plane_indexes(x.shape, want_index, dy), rtol=1e-6,
                               atol=1e-6)


@pytest.mark.parametrize("c, out_channels", [(5, 2), (6, 3), (3, 7), (4, 1), (9, 9)])
def test_maxpool_depth_kernels(cuda_ops, c, out_channels):
    x = pool_input((2, c, 3, 5), c * out_channels)
    out, argmax = cuda_ops.maxpool_depth(dev(cuda_ops, x), out_channels)
    want, want_arg = CPU.maxpool_depth(x, out_channels)
    np.testing.assert_array_equal(host(cuda_ops, out), want)
    np.testing.assert_array_equal(host(cuda_ops, argmax), want_arg)
    dy = np.random.default_rng(2).normal(size=want.shape).astype(np.float32)
    dx = cuda_ops.maxpool_depth_backward(dev(cuda_ops, dy), argmax, c)
    np.testing.assert_array_equal(host(cuda_ops, dx), CPU.maxpool_depth_backward(dy, want_arg, c))


def darknet_local_avgpool(x, size, sx, sy, offset, out_h, out_w):
    """forward_local_avgpool_layer: the in-bounds sum over the in-bounds count (0/0 = NaN), in float64."""
    b, c, h, w = x.shape
    out = np.empty((b, c, out_h, out_w))
    for i in range(out_h):
        for j in range(out_w):
            rows = [y for y in range(i * sy - offset, i * sy - offset + size) if 0 <= y < h]
            cols = [xx for xx in range(j * sx - offset, j * sx - offset + size) if 0 <= xx < w]
            with np.errstate(invalid="ignore"):
                out[:, :, i, j] = x[:, :, rows][:, :, :, cols].sum(axis=(2, 3)) / np.float64(len(rows) * len(cols))
    return out


@pytest.mark.parametrize("h, w, size, sx, sy, padding", POOL_GEOMETRIES, ids=str)
def test_local_avgpool_kernels(cuda_ops, h, w, size, sx, sy, padding):
    rng = np.random.default_rng(h + 2 * w)
    x = rng.normal(size=(2, 3, h, w)).astype(np.float32)
    oh, ow, off = out_size(h, size, sy, padding), out_size(w, size, sx, padding), padding // 2
    out = host(cuda_ops, cuda_ops.local_avgpool2d(dev(cuda_ops, x), size, sx, sy, off, oh, ow))
    want = darknet_local_avgpool(x.astype(np.float64), size, sx, sy, off, oh, ow)
    np.testing.assert_allclose(out, want, rtol=1e-6, atol=1e-6)   # NaN where want is NaN (empty windows)
    # backward is the adjoint: <dy, forward(x)> = <backward(dy), x> over the non-empty windows
    dy = rng.normal(size=out.shape).astype(np.float32)
    dy[np.isnan(want)] = 0
    dx = host(cuda_ops, cuda_ops.local_avgpool2d_backward(dev(cuda_ops, dy), size, sx, sy, off, h, w))
    np.testing.assert_allclose(dx, CPU.local_avgpool2d_backward(dy, size, sx, sy, off, h, w), rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(np.sum(dx * x.astype(np.float64)), np.nansum(dy * want), rtol=1e-5, atol=1e-5)


# planes of up to 2048 values are summed by a warp each, longer ones by a block (csrc/cuda/reduce.cuh)
@pytest.mark.parametrize("shape", [(2, 3, 1, 1), (1, 2, 17, 19), (3, 5, 3, 5), (1, 1, 40, 33), (1, 2, 50, 45),
                                   (4, 9, 2, 3)], ids=str)
def test_avgpool_kernels(cuda_ops, shape):
    x = np.random.default_rng(sum(shape)).normal(1, 1, size=shape).astype(np.float32)
    out = host(cuda_ops, cuda_ops.avgpool(dev(cuda_ops, x)))
    np.testing.assert_allclose(out, x.astype(np.float64).mean(axis=(2, 3), keepdims=True), rtol=1e-6, atol=1e-6)
    dy = np.random.default_rng(3).normal(size=shape[:2]).astype(np.float32)
    dx = host(cuda_ops, cuda_ops.avgpool_backward(dev(cuda_ops, dy), *shape[2:]))
    np.testing.assert_array_equal(dx, CPU.avgpool_backward(dy, *shape[2:]))


# -- upsample, reorg, crop ------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape, stride, scale", [((2, 3, 5, 7), 2, 1.0), ((1, 2, 3, 3), 3, 0.5), ((1, 1, 1, 1), 4, 2.5),
                                                  ((3, 1, 9, 11), 1, -1.5)], ids=str)
def test_upsample_and_downsample_kernels(cuda_ops, shape, stride, scale):
    rng = np.random.default_rng(stride)
    x = rng.normal(size=shape).astype(np.float32)
    up = host(cuda_ops, cuda_ops.upsample(dev(cuda_ops, x), stride, scale))
    np.testing.assert_array_equal(up, CPU.upsample(x, stride, scale))
    big = rng.normal(size=up.shape).astype(np.float32)
    down = host(cuda_ops, cuda_ops.downsample(dev(cuda_ops, big), stride, scale))
    np.testing.assert_allclose(down, CPU.downsample(big, stride, scale), rtol=1e-6, atol=1e-6)
    # each the other's adjoint
    np.testing.assert_allclose(np.sum(up * big, dtype=np.float64), np.sum(x * down, dtype=np.float64), rtol=1e-5)


@pytest.mark.parametrize("c, h, w, stride", [(4, 3, 5, 2), (18, 2, 3, 3), (8, 1, 1, 2), (3, 4, 3, 1)], ids=str)
@pytest.mark.parametrize("to_big", [True, False])
def test_reorg_kernel_is_darknets_reorg_cpu(cuda_ops, c, h, w, stride, to_big):
    x = np.arange(2 * c * h * w, dtype=np.float32).reshape(2, -1)
    out = host(cuda_ops, cuda_ops.reorg(dev(cuda_ops, x), stride, c, h, w, to_big))
    np.testing.assert_array_equal(out.reshape(-1), ref_reorg_cpu(x, w, h, c, 2, stride, to_big))
    np.testing.assert_array_equal(out, CPU.reorg(x, stride, c, h, w, to_big))


@pytest.mark.parametrize("top, left, height, width, flip", [(1, 2, 3, 4, False), (0, 1, 5, 5, True), (2, 0, 1, 1, True),
                                                            (0, 0, 5, 7, False)])
def test_crop_kernels(cuda_ops, top, left, height, width, flip):
    rng = np.random.default_rng(top + left)
    x = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)
    out = host(cuda_ops, cuda_ops.crop(dev(cuda_ops, x), top, left, height, width, flip, 2.0, -1.0))
    cols = [7 - 1 - left - j if flip else left + j for j in range(width)]
    np.testing.assert_allclose(out, x[:, :, top:top + height][:, :, :, cols] * 2 - 1, rtol=1e-6, atol=1e-6)
    dy = rng.normal(size=out.shape).astype(np.float32)
    dx = host(cuda_ops, cuda_ops.crop_backward(dev(cuda_ops, dy), top, left, flip, 2.0, 5, 7))
    np.testing.assert_array_equal(dx, CPU.crop_backward(dy, top, left, flip, 2.0, 5, 7))
    with pytest.raises(ValueError, match="not inside"):
        cuda_ops.crop(dev(cuda_ops, x), top + 5, left, height, width, flip, 1.0, 0.0)


# -- route, shortcut, products ----------------------------------------------------------------------------------------
def test_route_copies_columns_and_fills_zeros(cuda_ops):
    rng = np.random.default_rng(4)
    sources = [rng.normal(size=(3, n)).astype(np.float32) for n in (7, 300, 5)]
    cuts = [(0, 7), (101, 150), (2, 3)]
    pieces = [(src, start, count) for src, (start, count) in zip(sources, cuts)]
    want = CPU.route(pieces, 170)
    got = cuda_ops.route([(dev(cuda_ops, src), start, count) for src, start, count in pieces], 170)
    np.testing.assert_array_equal(host(cuda_ops, got), want)
    assert not want[:, 160:].any()
    dy = rng.normal(size=(3, 170)).astype(np.float32)
    deltas = [rng.normal(size=src.shape).astype(np.float32) for src in sources]
    on_device = [dev(cuda_ops, d) for d in deltas]
    cuda_ops.route_backward(dev(cuda_ops, dy), [(d, s, n) for d, (s, n) in zip(on_device, cuts)])
    CPU.route_backward(dy, [(d, s, n) for d, (s, n) in zip(deltas, cuts)])
    for got_delta, want_delta in zip(on_device, deltas):
        np.testing.assert_array_equal(host(cuda_ops, got_delta), want_delta)
    with pytest.raises(ValueError, match="columns"):
        cuda_ops.route([(dev(cuda_ops, sources[0]), 5, 3)], 3)


SHORTCUT_WEIGHTS = [None, "per_feature", "per_channel"]


@pytest.mark.parametrize("weights_type", SHORTCUT_WEIGHTS)
@pytest.mark.parametrize("normalization", ["none", "relu", "softmax"])
def test_shortcut_kernels(cuda_ops, weights_type, normalization):
    if weights_type is None and normalization != "none":
        pytest.skip("normalization applies to weights only")
    rng = np.random.default_rng(5)
    c, h, w = 6, 5, 7
    x = rng.normal(size=(2, c, h, w)).astype(np.float32)
    sources = [rng.normal(size=(2, k, h, w)).astype(np.float32) for k in (6, 2, 9)]   # equal, fewer, more channels
    weights = None
    if weights_type:
        raw = rng.normal(size=(4, c if weights_type == "per_channel" else 1)).astype(np.float32)
        raw[1] = raw[0]                                                                  # a tie for the maximum
        weights = CPU.shortcut_weights(raw, normalization)
        got_weights = cuda_ops.shortcut_weights(dev(cuda_ops, raw), normalization)
        np.testing.assert_allclose(host(cuda_ops, got_weights), weights, rtol=1e-6, atol=1e-7)
    dw = None if weights is None else dev(cuda_ops, weights)
    z = cuda_ops.shortcut(dev(cuda_ops, x), [dev(cuda_ops, s) for s in sources], dw)
    np.testing.assert_allclose(host(cuda_ops, z), CPU.shortcut(x, sources, weights), rtol=1e-6, atol=1e-6)
    dz = rng.normal(size=x.shape).astype(np.float32)
    deltas = [rng.normal(size=s.shape).astype(np.float32) for s in sources]
    on_device = [dev(cuda_ops, d) for d in deltas]
    dx, grad = cuda_ops.shortcut_backward(dev(cuda_ops, dz), dev(cuda_ops, x), [dev(cuda_ops, s) for s in sources],
                                          dw, on_device)
    want_dx, want_grad = CPU.shortcut_backward(dz, x, sources, weights, deltas)
    np.testing.assert_allclose(host(cuda_ops, dx), want_dx, rtol=1e-6, atol=1e-6)
    for got_delta, want_delta in zip(on_device, deltas):
        np.testing.assert_allclose(host(cuda_ops, got_delta), want_delta, rtol=1e-6, atol=1e-6)
    if weights is None:
        assert grad is None
        return
    np.testing.assert_allclose(host(cuda_ops, grad), want_grad, rtol=1e-5, atol=1e-4)
    raw_grad = cuda_ops.shortcut_weights_backward(dev(cuda_ops, raw), got_weights, grad, normalization)
    np.testing.assert_allclose(host(cuda_ops, raw_grad),
                               CPU.shortcut_weights_backward(raw, weights, want_grad, normalization), rtol=1e-5,
                               atol=1e-4)


def test_shortcut_weight_gradient_sums_longer_than_a_block(cuda_ops):
    """dot_segments with segments of several blocks' length, several runs and partial last passes."""
    rng = np.random.default_rng(6)
    x = rng.normal(size=(3, 2, 19, 23)).astype(np.float32)
    dz = rng.normal(size=x.shape).astype(np.float32)
    for weights in (np.ones((1, 1), np.float32), np.ones((1, 2), np.float32)):
        _, grad = cuda_ops.shortcut_backward(dev(cuda_ops, dz), dev(cuda_ops, x), [], dev(cuda_ops, weights), [])
        axes = (0, 2, 3) if weights.shape[1] > 1 else None
        want = np.sum(dz.astype(np.float64) * x, axis=axes).reshape(1, -1)
        np.testing.assert_allclose(host(cuda_ops, grad), want, rtol=1e-5)


@pytest.mark.parametrize("b_shape", [(2, 3, 5, 7), (2, 3, 1, 1), (2, 1, 5, 7)], ids=str)
def test_broadcast_products(cuda_ops, b_shape):
    rng = np.random.default_rng(7)
    a = rng.normal(size=(2, 3, 5, 7)).astype(np.float32)
    b = rng.normal(size=b_shape).astype(np.float32)
    np.testing.assert_array_equal(host(cuda_ops, cuda_ops.multiply(dev(cuda_ops, a), dev(cuda_ops, b))), a * b)
    out = rng.normal(size=a.size).astype(np.float32)
    on_device = dev(cuda_ops, out)
    cuda_ops.add_product(on_device, dev(cuda_ops, a), dev(cuda_ops, b))
    CPU.add_product(out, a, b)
    np.testing.assert_array_equal(host(cuda_ops, on_device), out)
    with pytest.raises(ValueError, match="broadcast"):
        cuda_ops.multiply(dev(cuda_ops, a), dev(cuda_ops, b[:1]))


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 4, 17, 19), (3, 1, 1, 1)], ids=str)
@pytest.mark.parametrize("axis", [1, (2, 3)], ids=["channels", "positions"])
def test_sum_products(cuda_ops, shape, axis):
    rng = np.random.default_rng(8)
    a, b = rng.normal(size=shape).astype(np.float32), rng.normal(size=shape).astype(np.float32)
    got = host(cuda_ops, cuda_ops.sum_products(dev(cuda_ops, a), dev(cuda_ops, b), axis))
    np.testing.assert_allclose(got, np.sum(a.astype(np.float64) * b, axis=axis), rtol=1e-5, atol=1e-5)


# -- every layer type and option: CPU engine vs CUDA engine -----------------------------------------------------------
IDENTITY = ("maxpool", {"size": 1, "stride": 1})
SOURCES = (                                                       # 5 x 4 images
    ("maxpool", {"size": 2, "stride": 1}),                       # 0: 4 channels
    ("route", {"layers": "0,0"}),                                # 1: 8
    ("maxpool", {"maxpool_depth": 1, "out_channels": 2}),        # 2: 2
    ("route", {"layers": "0"}),                                  # 3: 4
    ("local_avgpool", {"size": 3, "stride": 1}),                 # 4: 4, the input of what follows
)

# Summands of a weighted [shortcut] that are not alike (distinct input channels, one negated): with alike summands
# the weight gradients of every summand are nearly equal and the normalizations' backward (g - sum g * w) cancels
# them, leaving float32 rounding of a larger sum (either engine's) above the 1e-5 tolerance.
WEIGHTED_SOURCES = (                                              # 5 x 4 images of 4 channels
    IDENTITY,                                                     # 0: the input
    ("route", {"layers": "0", "groups": 2, "group_id": 1}),       # 1: input channels 2, 3
    ("upsample", {"stride": 1, "scale": -0.8}),                   # 2: -0.8 * layer 1
    ("route", {"layers": "0", "groups": 4, "group_id": 0}),       # 3: input channel 0 (fewer channels)
    ("route", {"layers": "2,0"}),                                 # 4: 6 channels (more)
    ("route", {"layers": "0", "groups": 2, "group_id": 0}),       # 5: input channels 0, 1: the shortcut's input
)

POOL_OPTIONS = [{"size": 2, "stride": 2}, {"size": 3, "stride": 1}, {"size": 3, "stride_x": 2, "stride_y": 1,
                                                                      "padding": 1},
                {"size": 5, "stride": 3, "padding": 4}, {"size": 2, "stride": 1, "padding": 6}]
LAYER_NETS = {
    **{f"maxpool-{i}": (7, 6, 3, [IDENTITY, ("maxpool", o)]) for i, o in enumerate(POOL_OPTIONS)},
    **{f"local_avgpool-{i}": (7, 6, 3, [IDENTITY, ("local_avgpool", o)]) for i, o in enumerate(POOL_OPTIONS)},
    "maxpool_depth": (5, 4, 5, [IDENTITY, ("maxpool", {"maxpool_depth": 1, "out_channels": 2})]),
    "maxpool_depth-more": (5, 4, 3, [IDENTITY, ("maxpool", {"maxpool_depth": 1, "out_channels": 4})]),
    "avgpool": (7, 5, 3, [IDENTITY, ("avgpool", {})]),
    **{f"upsample{s}x{sc}": (6, 4, 2, [IDENTITY, ("upsample", {"stride": s, "scale": sc})])
       for s, sc in [(2, 1.0), (3, 0.5), (-2, 1.5), (-1, 2.0)]},
    **{f"{kind}-{r}": (4, 6, 16, [IDENTITY, (kind, {"stride": 2, "reverse": r})])
       for kind in ("reorg", "reorg3d") for r in (0, 1)},
    **{f"route-{layers}-{g}-{gi}": (5, 4, 4, [*SOURCES, ("route", {"layers": layers, "groups": g, "group_id": gi}),
                                              ("maxpool", {"size": 2, "stride": 1})])
       for layers, g, gi in [("0,1", 1, 0), ("0,1,3", 2, 1), ("0,1,3,2", 3, 1), ("4,2", 3, 2)]},
    "shortcut-plain": (5, 4, 4, [*SOURCES, ("shortcut", {"from": "0"})]),
    "shortcut-multi-leaky": (5, 4, 4, [*SOURCES, ("shortcut", {"from": "0,1,2", "activation": "leaky"})]),
    **{f"shortcut-{wt}-{wn}": (5, 4, 4, [*WEIGHTED_SOURCES, ("shortcut", {"from": "1,3,4", "weights_type": wt,
                                                                 "weights_normalization": wn,
                                                                 "activation": "swish"})])
       for wt in ("per_feature", "per_channel") for wn in ("none", "relu", "softmax")},
    **{f"scale_channels-{act}": (5, 4, 4, [IDENTITY, ("avgpool", {}),
                                           ("scale_channels", {"from": 0, "activation": act})])
       for act in ("linear", "logistic")},
    **{f"scale_channels-wh-{act}": (5, 4, 4, [IDENTITY, ("maxpool", {"maxpool_depth": 1, "out_channels": 1}),
                                              ("scale_channels", {"from": 0, "scale_wh": 1, "activation": act})])
       for act in ("linear", "leaky")},
    **{f"sam-{act}": (5, 4, 4, [IDENTITY, ("maxpool", {"size": 3, "stride": 1}), ("sam", {"from": 0, "activation": act})])
       for act in ("linear", "logistic")},
    "crop": (7, 6, 3, [IDENTITY, ("crop", {"crop_width": 4, "crop_height": 3, "flip": 1})]),
    "crop-noadjust": (7, 6, 3, [IDENTITY, ("crop", {"crop_width": 5, "crop_height": 5, "noadjust": 1})]),
}


@pytest.mark.parametrize("name", sorted(LAYER_NETS))
@pytest.mark.parametrize("train", [True, False], ids=["train", "infer"])
def test_layer_on_both_engines(tmp_path, cuda_device, name, train):
    w, h, c, sections = LAYER_NETS[name]
    cpu, gpu = engine_pair(tmp_path, net_cfg(w, h, c, *sections), cuda_device)
    for net in (cpu, gpu):   # the same crop draws on both engines
        for layer in net.layers:
            if layer.kind == "crop":
                layer.rng = np.random.default_rng(3)
    x = np.random.default_rng(len(name)).normal(size=(2, c, h, w)).astype(np.float32)
    compare_engines(cpu, gpu, x, train=train)


def test_shortcut_weight_gradients_accumulate_on_both_engines(tmp_path, cuda_device):
    cfg = net_cfg(5, 4, 4, *WEIGHTED_SOURCES, ("shortcut", {"from": "1,4", "weights_type": "per_channel",
                                                   "weights_normalization": "softmax"}))
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    x = np.random.default_rng(9).normal(size=(2, 4, 4, 5)).astype(np.float32)
    dy = np.random.default_rng(10).normal(size=(2, 2, 4, 5)).astype(np.float32)
    grads = []
    for net in (cpu, gpu):
        net.forward(x, train=True)
        net.backward(dy)
        net.backward(dy)
        grads.append(np.asarray(net.ops.to_numpy(net.layers[-1].grads["weights"])))
    np.testing.assert_allclose(grads[1], grads[0], rtol=1e-5, atol=1e-6 * np.abs(grads[0]).max())
