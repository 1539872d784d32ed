"""Convolution in the CUDA engine (csrc/cuda/conv.cu, depthwise.cu, CudaOps' convolution methods): each kernel
against NumPy references (NumpyOps in float64, itself checked against explicit loops and darknet's im2col in
test_engine_conv.py) on odd shapes, partial tiles and blocks; then [convolutional] and [connected] layers against
the CPU engine, forward and backward, under emulation and on a GPU where there is one."""
import numpy as np
import pytest

from darknet_py.activations import activate
from darknet_py.backend import NumpyOps, _Geometry
from engines import compare_engines, engine_pair, net_cfg

REF = NumpyOps(np.float64)


def rand(rng, *shape):
    return rng.normal(size=shape).astype(np.float32)


def close(got, want, rtol=2e-6, what="values"):
    """max |got - want| <= rtol * max |want| (float32 kernels against float64 references)."""
    got, want = np.asarray(got, np.float64), np.asarray(want, np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    assert np.abs(got - want).max() <= rtol * max(np.abs(want).max(), 1e-30), f"{what}: max error " \
        f"{np.abs(got - want).max():.3g} over {np.abs(want).max():.3g}"


def conv_shape(ops, c, h, w, filters, groups, size, sx, sy, pad, dilation):
    g = _Geometry(c, h, w, size, sx, sy, pad, dilation)
    return ops.k.ConvShape(c, h, w, filters, groups, size, sx, sy, dilation, g.off, g.out_h, g.out_w), g


# (channels, height, width, groups, size, stride_x, stride_y, pad, dilation): odd maps, strides either way, windows
# past the border, dilation (with the output size darknet's formula gives), rows the windows never reach.
IM2COL_GEOMETRIES = [
    (3, 9, 7, 1, 3, 1, 1, 1, 1), (4, 9, 7, 2, 3, 2, 1, 1, 1), (2, 8, 10, 1, 5, 1, 2, 2, 1), (3, 11, 9, 3, 3, 1, 1, 1, 2),
    (2, 9, 7, 1, 3, 2, 3, 0, 2), (6, 7, 9, 2, 1, 2, 2, 0, 1), (1, 5, 6, 1, 7, 1, 1, 3, 1), (4, 10, 8, 4, 2, 3, 2, 1, 1),
]


@pytest.mark.parametrize("c, h, w, groups, size, sx, sy, pad, d", IM2COL_GEOMETRIES)
def test_im2col_and_col2im_of_each_group_match_numpy(cuda_ops, c, h, w, groups, size, sx, sy, pad, d):
    rng = np.random.default_rng(c * h + size)
    images, cg = 3, c // groups
    x = rand(rng, images, c, h, w)
    shape, g = conv_shape(cuda_ops, c, h, w, 2 * groups, groups, size, sx, sy, pad, d)
    pixels, rows = g.out_h * g.out_w, cg * size * size
    xd = cuda_ops.asarray(x)
    for j in range(groups):
        cols = cuda_ops.asarray(np.full((rows, images * pixels), np.nan, np.float32))
        cuda_ops.k.im2col(cuda_ops._at(xd, j * cg * h * w, "x"), images, shape, cuda_ops._ptr(cols), cuda_ops._stream)
        want = np.concatenate([REF.im2col(x[i, j * cg:(j + 1) * cg].astype(np.float64), g) for i in range(images)],
                              axis=1)
        np.testing.assert_array_equal(cuda_ops.to_numpy(cols), want.astype(np.float32))

        dcols = rand(rng, rows, images * pixels)
        dcols_device = cuda_ops.asarray(dcols)   # alive until the kernel has run
        dx = cuda_ops.asarray(np.full(x.shape, np.nan, np.float32))
        cuda_ops.k.col2im(cuda_ops._ptr(dcols_device), images, shape, cuda_ops._at(dx, j * cg * h * w, "dx"),
                          cuda_ops._stream)
        got = cuda_ops.to_numpy(dx)
        for i in range(images):
            close(got[i, j * cg:(j + 1) * cg], REF.col2im(dcols[:, i * pixels:(i + 1) * pixels].astype(np.float64),
                                                           cg, g), what=f"col2im image {i} group {j}")
        outside = np.ones(c, bool)
        outside[j * cg:(j + 1) * cg] = False
        assert np.isnan(got[:, outside]).all(), "col2im wrote outside its group's channels"


@pytest.mark.parametrize("outer, inner, n", [(3, 5, 7), (1, 4, 300), (6, 1, 1), (2, 33, 65)])
def test_swap_leading_axes(cuda_ops, outer, inner, n):
    a = rand(np.random.default_rng(n), outer, inner, n)
    a_device, out = cuda_ops.asarray(a), cuda_ops.empty((inner, outer, n))
    cuda_ops.k.swap_leading_axes(cuda_ops._ptr(a_device), cuda_ops._ptr(out), outer, inner, n, cuda_ops._stream)
    np.testing.assert_array_equal(cuda_ops.to_numpy(out), a.swapaxes(0, 1))


def run_conv(ops, x, w, geometry, scale=None, shift=None, activation=None, dy=None):
    """(output, dx, dw) of the CUDA engine: conv2d (or conv2d_affine_activation with an activation) and
    conv2d_backward with dy."""
    sx, sy, pad, d, groups = geometry
    xd, wd = ops.asarray(x), ops.asarray(w)
    if activation is None:
        out = ops.conv2d(xd, wd, sx, sy, pad, d, groups)
    else:
        out = ops.conv2d_affine_activation(xd, wd, None if scale is None else ops.asarray(scale), ops.asarray(shift),
                                           activation, sx, sy, pad, d, groups)
    if dy is None:
        return ops.to_numpy(out), None, None
    dx, dw = ops.conv2d_backward(xd, wd, ops.asarray(dy), sx, sy, pad, d, groups)
    no_dx, dw_alone = ops.conv2d_backward(xd, wd, ops.asarray(dy), sx, sy, pad, d, groups, need_dx=False)
    assert no_dx is None
    np.testing.assert_array_equal(ops.to_numpy(dw_alone), ops.to_numpy(dw))
    return ops.to_numpy(out), ops.to_numpy(dx), ops.to_numpy(dw)


def check_conv(ops, path, batch, c, h, w, filters, size, geometry, seed=0):
    """conv2d and conv2d_backward of the CUDA engine against NumpyOps in float64, after checking the path."""
    sx, sy, pad, d, groups = geometry
    out_h, out_w = (h + 2 * pad - size) // sy + 1, (w + 2 * pad - size) // sx + 1
    assert ops.conv_path(c, filters, size, sx, sy, pad, d, groups, out_h, out_w, None, True) == path
    rng = np.random.default_rng(seed)
    x, wt, dy = rand(rng, batch, c, h, w), rand(rng, filters, c // groups, size, size), rand(rng, batch, filters,
                                                                                            out_h, out_w)
    out, dx, dw = run_conv(ops, x, wt, geometry, dy=dy)
    x64, w64 = x.astype(np.float64), wt.astype(np.float64)
    close(out, REF.conv2d(x64, w64, *geometry), what="output")
    want_dx, want_dw = REF.conv2d_backward(x64, w64, dy.astype(np.float64), *geometry)
    close(dx, want_dx, what="dx")
    close(dw, want_dw, 4e-6, what="dw")


# (batch, c, h, w, filters, size, (stride_x, stride_y, pad, dilation, groups))
DIRECT_CASES = {
    "depthwise": [
        (2, 4, 9, 7, 4, 3, (1, 1, 1, 1, 4)), (2, 3, 9, 7, 3, 5, (2, 2, 2, 1, 3)), (2, 2, 9, 7, 2, 7, (1, 2, 3, 1, 2)),
        (3, 2, 11, 9, 2, 3, (2, 1, 1, 2, 2)), (2, 3, 8, 10, 3, 3, (2, 2, 0, 1, 3)),   # even map: rows never reached
        (2, 2, 37, 70, 2, 3, (1, 1, 1, 1, 2)),                                        # several tiles, partial ones
        (1, 40, 1, 1, 40, 1, (1, 1, 0, 1, 40)),                                       # 1x1 depthwise, 1x1 map
        (2, 2, 6, 5, 2, 5, (1, 1, 1, 1, 2)),                                          # asymmetric padding
    ],
    "grouped": [
        (2, 4, 9, 7, 8, 3, (1, 1, 1, 1, 2)), (2, 6, 9, 7, 4, 3, (2, 1, 1, 2, 2)),    # channel groups (ResNeXt-like)
        (2, 3, 9, 7, 6, 5, (2, 2, 2, 1, 3)), (2, 2, 9, 7, 10, 3, (1, 1, 1, 1, 2)),   # channel multipliers 2 and 5
        (2, 20, 5, 6, 30, 1, (1, 1, 0, 1, 10)),                                       # 1x1, more groups than GEMMs
        (2, 4, 9, 7, 6, 1, (2, 1, 0, 1, 2)), (2, 9, 19, 41, 6, 3, (1, 2, 1, 1, 3)),  # strided 1x1; several tiles
    ],
}


@pytest.mark.parametrize("path, case", [(p, c) for p, cases in DIRECT_CASES.items() for c in cases],
                         ids=lambda v: v if isinstance(v, str) else "-".join(map(str, v[:6])))
def test_direct_kernels_forward_dgrad_wgrad(cuda_ops, path, case):
    batch, c, h, w, filters, size, geometry = case
    check_conv(cuda_ops, path, batch, c, h, w, filters, size, geometry)


@pytest.mark.parametrize("case", [
    (2, 3, 9, 7, 5, 3, (1, 1, 1, 1, 1)), (2, 4, 9, 7, 6, 3, (2, 1, 1, 1, 1)), (3, 2, 11, 9, 3, 3, (1, 2, 1, 2, 1)),
    (2, 3, 9, 7, 4, 5, (2, 2, 0, 1, 1)), (2, 4, 9, 7, 6, 1, (2, 2, 0, 1, 1)), (2, 2, 5, 6, 3, 1, (1, 1, 1, 1, 1)),
    (2, 2, 9, 7, 2, 7, (1, 1, 3, 2, 1)), (2, 4, 9, 7, 6, 1, (64, 1, 0, 1, 2)),   # grouped, too wide for the tiles
], ids=lambda v: "-".join(map(str, v[:6])) + "-" + "-".join(map(str, v[6])))
def test_im2col_path_forward_backward(cuda_ops, case):
    batch, c, h, w, filters, size, geometry = case
    check_conv(cuda_ops, "im2col", batch, c, h, w, filters, size, geometry)


@pytest.mark.parametrize("groups", [1, 2, 8])
def test_pointwise_path_forward_backward(cuda_ops, groups):
    check_conv(cuda_ops, "pointwise", 3, 8, 9, 7, 16, 1, (1, 1, 0, 1, groups))


@pytest.mark.parametrize("path, case", [
    ("im2col", (5, 3, 9, 7, 4, 3, (1, 2, 1, 1, 1))), ("im2col", (5, 4, 9, 7, 6, 1, (64, 1, 0, 1, 2))),
    ("pointwise", (5, 4, 9, 7, 6, 1, (1, 1, 0, 1, 2)))])
def test_gemm_paths_in_chunks_of_images(cuda_ops, path, case):
    """A workspace of about two images: chunks of 2, 2 and 1 images (weight gradients summed across chunks)."""
    batch, c, h, w, filters, size, (sx, sy, pad, d, groups) = case
    g = _Geometry(c, h, w, size, sx, sy, pad, d)
    cuda_ops.conv_workspace_bytes = 4 * 2 * cuda_ops._conv_workspace_floats(
        path, c // groups * size * size, filters, g.out_h * g.out_w, True)
    assert cuda_ops._conv_chunk(batch, cuda_ops._conv_workspace_floats(path, c // groups * size * size, filters,
                                                                        g.out_h * g.out_w, True)) == 2
    check_conv(cuda_ops, path, batch, c, h, w, filters, size, (sx, sy, pad, d, groups))


@pytest.mark.parametrize("path, case", [
    ("depthwise", (2, 3, 9, 7, 3, 3, (1, 2, 1, 1, 3))), ("grouped", (2, 4, 9, 7, 6, 3, (2, 1, 1, 1, 2))),
    ("im2col", (2, 3, 9, 7, 5, 3, (1, 1, 1, 2, 1))), ("pointwise", (2, 4, 9, 7, 6, 1, (1, 1, 0, 1, 2)))])
@pytest.mark.parametrize("activation, with_scale", [("leaky", True), ("mish", False), ("logistic", True),
                                                    ("normalize_channels_softmax", True)])
def test_affine_activation_epilogue(cuda_ops, path, case, activation, with_scale):
    batch, c, h, w, filters, size, geometry = case
    sx, sy, pad, d, groups = geometry
    assert cuda_ops.conv_path(c, filters, size, sx, sy, pad, d, groups, 0, 0, activation, False) == path
    rng = np.random.default_rng(5)
    x, wt = rand(rng, batch, c, h, w), rand(rng, filters, c // groups, size, size)
    scale = rng.uniform(0.5, 1.5, filters).astype(np.float32) if with_scale else None
    shift = rand(rng, filters)
    out, _, _ = run_conv(cuda_ops, x, wt, geometry, scale, shift, activation)
    z = REF.conv2d(x.astype(np.float64), wt.astype(np.float64), *geometry)
    z = z * (1 if scale is None else scale.reshape(1, -1, 1, 1)) + shift.reshape(1, -1, 1, 1)
    close(out, activate(z, activation, np), 4e-6)


def test_conv_path_dispatch(cuda_ops):
    path = cuda_ops.conv_path
    assert path(64, 128, 1, 1, 1, 0, 1, 1, 13, 13, "leaky", False) == "pointwise"
    assert path(240, 480, 1, 1, 1, 0, 1, 2, 7, 7, "linear", True) == "pointwise"   # MixNet's grouped pointwise
    assert path(64, 64, 3, 2, 2, 1, 1, 64, 8, 8, "swish", False) == "depthwise"
    assert path(64, 128, 5, 1, 1, 2, 1, 64, 8, 8, "swish", False) == "grouped"     # channel multiplier 2
    assert path(256, 256, 3, 1, 1, 1, 1, 32, 14, 14, "leaky", True) == "grouped"  # ResNeXt
    assert path(64, 128, 3, 1, 1, 1, 1, 1, 13, 13, "leaky", False) == "im2col"
    assert path(64, 128, 1, 2, 2, 0, 1, 1, 13, 13, "leaky", False) == "im2col"    # strided 1x1: subsampling columns
    assert path(32, 32, 47, 1, 1, 23, 1, 32, 13, 13, "leaky", False) == "im2col"  # tiles past shared memory


@pytest.mark.parametrize("case", [
    (3, 4, 9, 7, 6, 3, (1, 1, 1, 1, 2)), (3, 4, 9, 7, 4, 5, (2, 1, 2, 1, 4)), (3, 3, 9, 7, 5, 3, (1, 2, 1, 1, 1)),
    (3, 4, 9, 7, 6, 1, (1, 1, 0, 1, 2))])
@pytest.mark.parametrize("train", [False, True])
def test_conv_memory_counts_what_is_allocated(cuda_ops, monkeypatch, case, train):
    """conv_memory's scratch is the most that conv2d, or in training conv2d_backward, allocates besides its results
    (out; dx and dw)."""
    batch, c, h, w, filters, size, geometry = case
    sx, sy, pad, d, groups = geometry
    g = _Geometry(c, h, w, size, sx, sy, pad, d)
    layer = type("Layer", (), dict(c=c, h=h, w=w, filters=filters, size=size, stride_x=sx, stride_y=sy, padding=pad,
                                   dilation=d, groups=groups, out_h=g.out_h, out_w=g.out_w, activation="leaky"))
    sizes = []
    empty = cuda_ops.empty
    monkeypatch.setattr(cuda_ops, "empty", lambda shape: sizes.append(4 * int(np.prod(shape))) or empty(shape))
    rng = np.random.default_rng(1)
    x, wt = cuda_ops.asarray(rand(rng, batch, c, h, w)), cuda_ops.asarray(rand(rng, filters, c // groups, size, size))
    cuda_ops.conv2d(x, wt, *geometry)
    sizes.remove(4 * batch * filters * g.out_h * g.out_w)
    scratch = sum(sizes)
    if train:
        sizes.clear()
        cuda_ops.conv2d_backward(x, wt, cuda_ops.asarray(rand(rng, batch, filters, g.out_h, g.out_w)), *geometry)
        sizes.remove(4 * x.size)
        sizes.remove(4 * wt.size)
        scratch = max(scratch, sum(sizes))
    assert cuda_ops.conv_memory(layer, batch, train)[1:] == (0, scratch)


def test_conv_rejects_mismatched_shapes(cuda_ops):
    x = cuda_ops.zeros((2, 4, 9, 7))
    with pytest.raises(ValueError, match="groups"):
        cuda_ops.conv2d(x, cuda_ops.zeros((6, 3, 3, 3)), groups=2)
    with pytest.raises(ValueError, match="does not fit"):
        cuda_ops.conv2d(x, cuda_ops.zeros((6, 4, 11, 11)))
    with pytest.raises(ValueError, match="dy"):
        cuda_ops.conv2d_backward(x, cuda_ops.zeros((6, 4, 3, 3)), cuda_ops.zeros((2, 6, 9, 6)), pad=1)
    with pytest.raises(ValueError, match="shift"):
        cuda_ops.conv2d_affine_activation(x, cuda_ops.zeros((6, 4, 3, 3)), None, cuda_ops.zeros(5), "leaky", pad=1)


@pytest.mark.parametrize("batch, inputs, outputs", [(1, 1, 1), (3, 37, 5), (2, 300, 17)])
def test_linear_and_its_gradients(cuda_ops, batch, inputs, outputs):
    rng = np.random.default_rng(inputs)
    x, w, dz = rand(rng, batch, inputs), rand(rng, outputs, inputs), rand(rng, batch, outputs)
    xd, wd = cuda_ops.asarray(x), cuda_ops.asarray(w)
    x64, w64, dz64 = x.astype(np.float64), w.astype(np.float64), dz.astype(np.float64)
    close(cuda_ops.to_numpy(cuda_ops.linear(xd, wd)), x64 @ w64.T)
    dx, dw = cuda_ops.linear_backward(xd, wd, cuda_ops.asarray(dz))
    close(cuda_ops.to_numpy(dx), dz64 @ w64)
    close(cuda_ops.to_numpy(dw), dz64.T @ x64)
    assert cuda_ops.linear_backward(xd, wd, cuda_ops.asarray(dz), need_dx=False)[0] is None


# -- layers: the CUDA engine against the CPU engine ------------------------------------------------------------------
def conv(**options):
    base = {"filters": 5, "size": 3, "stride": 1, "pad": 1, "activation": "leaky"}
    base.update(options)
    return "convolutional", base


LAYER_CASES = {
    "3x3": [conv()],
    "1x1": [conv(size=1, pad=0, activation="linear")],
    "5x5-stride2": [conv(size=5, stride=2, activation="mish")],
    "7x7-padding1": [conv(size=7, pad=0, padding=1, activation="logistic")],
    "stride-x2-y1": [conv(stride_x=2, stride_y=1, activation="swish")],
    "stride-x1-y3-1x1": [conv(size=1, pad=0, stride_x=1, stride_y=3)],
    "dilation2": [conv(dilation=2, activation="relu")],
    "dilation2-stride2-pad0": [conv(dilation=2, stride=2, pad=0)],
    "groups2": [conv(filters=6, groups=2)],
    "groups2-1x1": [conv(filters=6, size=1, pad=0, groups=2)],
    "depthwise": [conv(filters=4, groups=4, activation="relu6")],
    "depthwise-5x5-stride2": [conv(filters=4, groups=4, size=5, stride=2, activation="hard_mish")],
    "channel-multiplier": [conv(filters=8, groups=4, size=3, activation="tanh")],
    "normalize-channels": [conv(activation="normalize_channels_softmax")],
    "share_index": [conv(filters=4), conv(filters=4, share_index=0)],
    "batchnorm": [conv(batch_normalize=1)],
    "batchnorm-depthwise-stride2": [conv(filters=4, groups=4, stride=2, batch_normalize=1, activation="swish")],
    "batchnorm-groups2-1x1": [conv(filters=6, size=1, pad=0, groups=2, batch_normalize=1, activation="mish")],
    "batchnorm-share_index": [conv(filters=4, batch_normalize=1), conv(filters=4, batch_normalize=1, share_index=0)],
    "stack": [conv(filters=6, size=3, stride=2), conv(filters=6, groups=6, size=5), conv(filters=3, size=1, pad=0)],
}


@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
@pytest.mark.parametrize("name", LAYER_CASES)
def test_conv_layer_matches_cpu_engine(tmp_path, cuda_device, name, train):
    cfg = net_cfg(9, 7, 4, *LAYER_CASES[name])
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    x = np.random.default_rng(3).normal(size=(2, 4, 7, 9)).astype(np.float32)
    compare_engines(cpu, gpu, x, train=train, backward=train)


@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
def test_connected_layer_matches_cpu_engine(tmp_path, cuda_device, train):
    cfg = net_cfg(5, 3, 2, conv(filters=3, stride=2), ("connected", {"output": 7, "activation": "leaky"}),
                  ("connected", {"output": 4, "activation": "logistic"}))
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    x = np.random.default_rng(4).normal(size=(3, 2, 3, 5)).astype(np.float32)
    compare_engines(cpu, gpu, x, train=train, backward=train)


def test_weight_gradients_accumulate_across_backward_calls(tmp_path, cuda_device):
    cfg = net_cfg(9, 7, 4, conv(filters=4, groups=4), conv(filters=3), ("connected", {"output": 3}))
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    rng = np.random.default_rng(6)
    for net in (cpu, gpu):
        for layer in net.layers:
            layer.grads = {}
    for _ in range(2):
        x = rng.normal(size=(2, 4, 7, 9)).astype(np.float32)
        delta = rng.normal(size=(2, 3)).astype(np.float32)
        for net in (cpu, gpu):
            net.forward(x, train=True)
            net.backward(delta)
    for mine, theirs in zip(gpu.layers, cpu.layers):
        for name, grad in theirs.grads.items():
            close(gpu.ops.to_numpy(mine.grads[name]), grad, 1e-5, f"layer {theirs.index} d{name}")
