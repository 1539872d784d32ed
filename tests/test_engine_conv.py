"""CPU engine: [convolutional], [connected], [batchnorm] and every activation. Forward against independent
references (explicit loops, darknet's formulas written out per element), backward against finite differences."""
import math

import numpy as np
import pytest

from gradcheck import check_network_gradients, float64_net
import darknet_py
from darknet_py import DarknetError
from darknet_py.activations import ACTIVATIONS, CHANNEL_ACTIVATIONS, activate, activate_backward
from darknet_py.backend import NumpyOps


def net_cfg(width, height, channels, *sections):
    text = f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\n"
    for name, options in sections:
        text += f"\n[{name}]\n" + "".join(f"{k}={v}\n" for k, v in options.items())
    return text


def conv(**options):
    base = {"filters": 4, "size": 3, "stride": 1, "pad": 1, "activation": "linear"}
    base.update(options)
    return "convolutional", base


# -- references --------------------------------------------------------------------------------------------
def reference_conv(x, w, stride_x, stride_y, padding, dilation, groups):
    """Explicit loops over every output and tap: darknet's output size, input offset padding*dilation."""
    batch, c, h, width = x.shape
    filters, cg, k, _ = w.shape
    out_h = (h + 2 * padding - k) // stride_y + 1
    out_w = (width + 2 * padding - k) // stride_x + 1
    fg = filters // groups
    out = np.zeros((batch, filters, out_h, out_w))
    for b in range(batch):
        for f in range(filters):
            g = f // fg
            for oy in range(out_h):
                for ox in range(out_w):
                    total = 0.0
                    for ci in range(cg):
                        for ky in range(k):
                            for kx in range(k):
                                iy = oy * stride_y - padding * dilation + ky * dilation
                                ix = ox * stride_x - padding * dilation + kx * dilation
                                if 0 <= iy < h and 0 <= ix < width:
                                    total += w[f, ci, ky, kx] * x[b, g * cg + ci, iy, ix]
                    out[b, f, oy, ox] = total
    return out


def darknet_im2col_cpu_ext(im, channels, height, width, k, pad, stride_h, stride_w, dilation):
    """A transcription of darknet's im2col_cpu_ext loop order (one image), returning (rows, its out_h*out_w)."""
    out_h = (height + 2 * pad - (dilation * (k - 1) + 1)) // stride_h + 1
    out_w = (width + 2 * pad - (dilation * (k - 1) + 1)) // stride_w + 1
    col = []
    for ch in range(channels):
        for kr in range(k):
            for kc in range(k):
                row = []
                for oy in range(out_h):
                    ir = -pad + kr * dilation + oy * stride_h
                    for ox in range(out_w):
                        ic = -pad + kc * dilation + ox * stride_w
                        row.append(im[ch, ir, ic] if 0 <= ir < height and 0 <= ic < width else 0.0)
                col.append(row)
    return np.array(col), out_h * out_w


def darknet_forward_conv(x, w, stride_x, stride_y, padding, dilation, groups):
    """forward_convolutional_layer's FP32 path: per image and group, im2col_cpu_ext with padding*dilation, then
    GEMM over the layer's out_h*out_w columns (only where im2col fills exactly those columns)."""
    batch, c, h, width = x.shape
    filters, cg, k, _ = w.shape
    out_h = (h + 2 * padding - k) // stride_y + 1
    out_w = (width + 2 * padding - k) // stride_x + 1
    fg = filters // groups
    out = np.zeros((batch, filters, out_h * out_w))
    for b in range(batch):
        for j in range(groups):
            im = x[b, j * cg:(j + 1) * cg]
            if k == 1 and stride_x == 1 and dilation == 1:
                cols = im.reshape(cg, -1)
            else:
                cols, n = darknet_im2col_cpu_ext(im, cg, h, width, k, padding * dilation, stride_y, stride_x, dilation)
                assert n == out_h * out_w, "darknet's result is ill-defined for this geometry"
            out[b, j * fg:(j + 1) * fg] = w[j * fg:(j + 1) * fg].reshape(fg, -1) @ cols
    return out.reshape(batch, filters, out_h, out_w)


# darknet's per-element formulas (src/activations.h, activations.c; relu6 as activation_kernels.cu computes it)
def _logistic(x): return 1 / (1 + math.exp(-x)) if x > -700 else 0.0
def _softplus(x): return x if x > 20 else (math.exp(x) if x < -20 else math.log(math.exp(x) + 1))
def _stair(x):
    n = math.floor(x)
    return math.floor(x / 2) if n % 2 == 0 else (x - n) + math.floor(x / 2)


DARKNET_FORMULAS = {
    "linear": lambda x: x,
    "logistic": _logistic,
    "loggy": lambda x: 2 * _logistic(x) - 1,
    "relu": lambda x: x * (x > 0),
    "relu6": lambda x: min(max(x, 0), 6),
    "elu": lambda x: (x >= 0) * x + (x < 0) * (math.exp(x) - 1),
    "selu": lambda x: (x >= 0) * 1.0507 * x + (x < 0) * 1.0507 * 1.6732 * (math.exp(x) - 1),
    "relie": lambda x: x if x > 0 else .01 * x,
    "ramp": lambda x: x * (x > 0) + .1 * x,
    "leaky": lambda x: x if x > 0 else .1 * x,
    "revleaky": lambda x: x if x > 0 else .1 * x,
    "tanh": lambda x: 2 / (1 + math.exp(-2 * x)) - 1,
    "gelu": lambda x: 0.5 * x * (1 + math.tanh(0.797885 * x + 0.035677 * x ** 3)),
    "plse": lambda x: .01 * (x + 4) if x < -4 else (.01 * (x - 4) + 1 if x > 4 else .125 * x + .5),
    "stair": _stair,
    "hardtan": lambda x: -1 if x < -1 else (1 if x > 1 else x),
    "lhtan": lambda x: .001 * x if x < 0 else (.001 * (x - 1) + 1 if x > 1 else x),
    "swish": lambda x: x * _logistic(x),
    "mish": lambda x: x * (2 / (1 + math.exp(-2 * _softplus(x))) - 1),
    "hard_mish": lambda x: x if x > 0 else (x * x / 2 + x if x > -2 else 0),
}


def darknet_channel_formula(x, name):
    """activate_array_normalize_channels(_softmax) with explicit loops over (batch, position, channel)."""
    out = np.zeros_like(x)
    batch, channels = x.shape[:2]
    flat_x, flat_out = x.reshape(batch, channels, -1), out.reshape(batch, channels, -1)
    for b in range(batch):
        for i in range(flat_x.shape[2]):
            v = flat_x[b, :, i]
            if name == "normalize_channels":
                s = 0.0001 + sum(t for t in v if t > 0)
                flat_out[b, :, i] = [t / s if t > 0 else 0 for t in v]
            else:
                m = max(v) if name.endswith("maxval") else 0.0
                s = 0.0001 + sum(math.exp(t - m) for t in v)
                flat_out[b, :, i] = [math.exp(t - m) / s for t in v]
    return out


# -- activations ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("name", [a for a in ACTIVATIONS if a not in CHANNEL_ACTIVATIONS])
def test_activation_forward_matches_darknet_formula(name):
    x = np.concatenate([np.linspace(-30, 30, 601), np.random.default_rng(0).normal(0, 4, 400), [0.0, -2.0, 6.0]])
    expected = np.array([DARKNET_FORMULAS[name](float(v)) for v in x])
    np.testing.assert_allclose(activate(x, name, np), expected, rtol=1e-12, atol=1e-12)
    got32 = activate(x.astype(np.float32), name, np)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=2e-6, atol=2e-6)


@pytest.mark.parametrize("name", CHANNEL_ACTIVATIONS)
def test_channel_activation_forward_matches_darknet_loops(name):
    x = np.random.default_rng(1).normal(0, 2, (2, 5, 3, 4))
    np.testing.assert_allclose(activate(x, name, np), darknet_channel_formula(x, name), rtol=1e-12, atol=1e-14)
    flat = x[:, :, 0, 0]          # a [connected] output: channels of 1 x 1
    np.testing.assert_allclose(activate(flat, name, np), darknet_channel_formula(flat, name)[..., ], rtol=1e-12)


def _away_from_kinks(x):
    kinks = np.array([-4.0, -2.0, -1.0, 0.0, 1.0, 4.0, 6.0, 20.0, -20.0])
    near = np.min(np.abs(x[..., None] - kinks), axis=-1) < 1e-3
    near |= np.abs(x - np.round(x)) < 1e-3          # stair's kinks
    return x[~near]


@pytest.mark.parametrize("name", [a for a in ACTIVATIONS if a not in CHANNEL_ACTIVATIONS])
def test_activation_derivative_is_exact(name):
    x = _away_from_kinks(np.concatenate([np.random.default_rng(2).normal(0, 5, 2000), np.linspace(-25, 25, 501)]))
    eps = 1e-6
    numeric = (activate(x + eps, name, np) - activate(x - eps, name, np)) / (2 * eps)
    analytic = activate_backward(x, np.ones_like(x), name, np)
    np.testing.assert_allclose(analytic, numeric, rtol=1e-6, atol=1e-7)
    assert activate_backward(x.astype(np.float32), np.ones(x.shape, np.float32), name, np).dtype == np.float32


def test_activation_derivative_at_kinks_follows_darknet():
    x = np.array([0.0, 6.0, -1.0, 1.0, -4.0, 4.0, 3.0, 2.0])
    ones = np.ones_like(x)
    g = {name: activate_backward(x, ones, name, np) for name in ("relu", "leaky", "relu6", "hardtan", "lhtan",
                                                                    "plse", "stair", "elu")}
    assert g["relu"][0] == 0 and g["leaky"][0] == np.float64(0.1)
    assert g["relu6"][0] == 0 and g["relu6"][1] == 0
    assert g["hardtan"][2] == 0 and g["hardtan"][3] == 0
    assert g["lhtan"][0] == 0.001 and g["lhtan"][3] == 0.001
    assert g["plse"][4] == 0.125 and g["plse"][5] == 0.125
    assert g["stair"][6] == 0 and g["stair"][7] == 0       # integers: darknet's floor(y) == y
    assert g["elu"][0] == 1


@pytest.mark.parametrize("name", CHANNEL_ACTIVATIONS)
@pytest.mark.parametrize("shape", [(2, 5, 3, 2), (3, 4)])
def test_channel_activation_backward_is_exact(name, shape):
    rng = np.random.default_rng(3)
    x = rng.normal(0, 1.5, shape)
    dy = rng.normal(size=shape)
    analytic = activate_backward(x, dy, name, np)
    eps = 1e-6
    for _ in range(10):
        direction = rng.normal(size=shape)
        numeric = np.sum((activate(x + eps * direction, name, np) - activate(x - eps * direction, name, np)) * dy) / (2 * eps)
        assert abs(numeric - np.sum(analytic * direction)) < 1e-7 * max(1, abs(numeric))


# -- convolution forward against explicit loops -----------------------------------------------------------
GEOMETRIES = [
    # (c, h, w, filters, size, stride_x, stride_y, padding, dilation, groups)
    (3, 7, 6, 4, 3, 1, 1, 1, 1, 1),
    (3, 7, 6, 4, 3, 2, 2, 1, 1, 1),
    (3, 8, 5, 4, 3, 1, 1, 0, 1, 1),
    (3, 7, 9, 2, 3, 2, 1, 1, 1, 1),
    (3, 7, 6, 4, 3, 1, 2, 0, 1, 1),
    (2, 9, 8, 3, 3, 1, 1, 1, 2, 1),     # dilation 2 with pad=1: darknet's well-defined case
    (2, 9, 8, 3, 3, 2, 2, 1, 2, 1),
    (2, 9, 8, 3, 3, 1, 1, 0, 2, 1),     # dilation 2 without padding: ill-defined in darknet, standard here
    (2, 11, 10, 3, 5, 1, 1, 2, 3, 1),
    (4, 6, 7, 6, 3, 1, 1, 1, 1, 2),
    (4, 6, 7, 4, 3, 1, 1, 1, 1, 4),     # depthwise
    (4, 7, 6, 4, 3, 2, 2, 1, 1, 4),
    (4, 9, 9, 4, 3, 1, 1, 1, 2, 4),     # depthwise dilated
    (4, 6, 7, 8, 3, 1, 1, 1, 1, 4),     # channel multiplier 2 (not depthwise in darknet's sense)
    (4, 5, 6, 3, 1, 1, 1, 0, 1, 1),     # pointwise
    (4, 5, 6, 6, 1, 1, 1, 0, 1, 2),
    (4, 7, 6, 3, 1, 2, 2, 0, 1, 1),
    (4, 7, 6, 3, 1, 2, 1, 0, 1, 1),
    (4, 5, 6, 3, 1, 1, 1, 1, 1, 1),     # size 1 with explicit padding=1
    (3, 6, 6, 2, 5, 1, 1, 2, 1, 1),
    (3, 6, 6, 2, 4, 2, 2, 1, 1, 1),     # even kernel
    (3, 4, 4, 2, 3, 3, 3, 0, 1, 1),
]


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv2d_matches_explicit_loops(geometry):
    c, h, w, filters, size, sx, sy, padding, dilation, groups = geometry
    rng = np.random.default_rng(4)
    x = rng.normal(size=(2, c, h, w))
    weights = rng.normal(size=(filters, c // groups, size, size))
    expected = reference_conv(x, weights, sx, sy, padding, dilation, groups)
    got = NumpyOps(np.float64).conv2d(x, weights, sx, sy, padding, dilation, groups)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)
    got32 = NumpyOps().conv2d(x.astype(np.float32), weights.astype(np.float32), sx, sy, padding, dilation, groups)
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, expected, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("geometry", [g for g in GEOMETRIES if g[8] == 1 or 2 * g[7] == g[4] - 1])
def test_conv2d_matches_darknet_im2col_gemm(geometry):
    c, h, w, filters, size, sx, sy, padding, dilation, groups = geometry
    if size == 1 and padding:       # darknet reads the unpadded image there: ill-defined
        pytest.skip("darknet's 1x1 path ignores padding")
    if size == 1 and sx != sy:      # darknet tests l.stride (= stride_x) alone for its 1x1 shortcut
        pytest.skip("darknet's 1x1 shortcut ignores stride_y")
    rng = np.random.default_rng(5)
    x = rng.normal(size=(2, c, h, w))
    weights = rng.normal(size=(filters, c // groups, size, size))
    expected = darknet_forward_conv(x, weights, sx, sy, padding, dilation, groups)
    got = NumpyOps(np.float64).conv2d(x, weights, sx, sy, padding, dilation, groups)
    np.testing.assert_allclose(got, expected, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("geometry", GEOMETRIES)
def test_conv2d_backward_is_the_adjoint(geometry):
    """<conv(x, w), dy> is bilinear: its gradients are exactly the backward's (dx, dw)."""
    c, h, w, filters, size, sx, sy, padding, dilation, groups = geometry
    rng = np.random.default_rng(6)
    ops = NumpyOps(np.float64)
    x = rng.normal(size=(2, c, h, w))
    weights = rng.normal(size=(filters, c // groups, size, size))
    dy = rng.normal(size=ops.conv2d(x, weights, sx, sy, padding, dilation, groups).shape)
    dx, dw = ops.conv2d_backward(x, weights, dy, sx, sy, padding, dilation, groups)
    vx, vw = rng.normal(size=x.shape), rng.normal(size=weights.shape)
    np.testing.assert_allclose(np.sum(ops.conv2d(vx, weights, sx, sy, padding, dilation, groups) * dy), np.sum(dx * vx))
    np.testing.assert_allclose(np.sum(ops.conv2d(x, vw, sx, sy, padding, dilation, groups) * dy), np.sum(dw * vw))


# -- layers: forward ------------------------------------------------------------------------------------------
def test_conv_layer_forward_bias_and_activation(tmp_path):
    net = float64_net(tmp_path, net_cfg(6, 5, 3, conv(filters=4, stride_x=2, stride_y=1, activation="leaky")))
    layer = net.layers[0]
    x = np.random.default_rng(8).normal(size=(2, 3, 5, 6))
    z = reference_conv(x, layer.weights["weights"], 2, 1, 1, 1, 1) + layer.weights["biases"][None, :, None, None]
    np.testing.assert_allclose(net.forward(x), np.where(z > 0, z, 0.1 * z), rtol=1e-12)
    assert net.forward(x).shape == (2, 4, 5, 3) and layer.output_shape == (3, 5, 4)


def _bn_reference(z, w, train):
    axes = (0, 2, 3) if z.ndim == 4 else (0,)
    shape = (1, -1, 1, 1) if z.ndim == 4 else (1, -1)
    if train:
        mean = z.mean(axis=axes)
        var = ((z - mean.reshape(shape)) ** 2).sum(axis=axes) / (z.size // z.shape[1] - 1)
    else:
        mean, var = w["rolling_mean"], w["rolling_variance"]
    out = (z - mean.reshape(shape)) / np.sqrt(var.reshape(shape) + .00001)
    return out * w["scales"].reshape(shape) + w["biases"].reshape(shape), mean, var


@pytest.mark.parametrize("train", [True, False])
def test_conv_batchnorm_forward_and_rolling_statistics(tmp_path, train):
    net = float64_net(tmp_path, net_cfg(5, 4, 3, conv(filters=3, batch_normalize=1)))
    layer = net.layers[0]
    w = {k: v.copy() for k, v in layer.weights.items()}
    x = np.random.default_rng(9).normal(size=(3, 3, 4, 5))
    z = reference_conv(x, w["weights"], 1, 1, 1, 1, 1)
    expected, mean, var = _bn_reference(z, w, train)
    np.testing.assert_allclose(net.forward(x, train=train), expected, rtol=1e-10, atol=1e-12)
    if train:
        np.testing.assert_allclose(layer.weights["rolling_mean"], .99 * w["rolling_mean"] + .01 * mean)
        np.testing.assert_allclose(layer.weights["rolling_variance"], .99 * w["rolling_variance"] + .01 * var)
        # the rolling statistics changed, a training output does not depend on them
        np.testing.assert_allclose(net.forward(x, train=True), expected, rtol=1e-10, atol=1e-12)
    else:
        for key in ("rolling_mean", "rolling_variance"):
            np.testing.assert_array_equal(layer.weights[key], w[key])


@pytest.mark.parametrize("train", [True, False])
def test_connected_forward(tmp_path, train):
    cfg = net_cfg(3, 2, 2, ("connected", {"output": 5, "activation": "linear", "batch_normalize": 1}),
                  ("connected", {"output": 3, "activation": "linear"}))
    net = float64_net(tmp_path, cfg)
    first, second = net.layers
    x = np.random.default_rng(10).normal(size=(4, 2, 2, 3))
    z = x.reshape(4, -1) @ first.weights["weights"].T
    h, _, _ = _bn_reference(z, first.weights, train)
    expected = h @ second.weights["weights"].T + second.weights["biases"]
    np.testing.assert_allclose(net.forward(x, train=train), expected, rtol=1e-10, atol=1e-12)
    assert net.forward(x).shape == (4, 3)


@pytest.mark.parametrize("batch", [1, 7, 20])
def test_float32_linear_on_the_kernels_matches_float64(batch):
    """[connected]'s float32 product runs on the C++ GEMM (a batch under 8 as dot products along the inputs, a
    larger one in panels), the float64 one on NumPy: the same values within float32 rounding of 300 terms."""
    rng = np.random.default_rng(batch)
    x, w = rng.normal(size=(batch, 300)), rng.normal(size=(37, 300))
    got = NumpyOps().linear(x.astype(np.float32), w.astype(np.float32))
    assert got.shape == (batch, 37) and got.dtype == np.float32 and got.flags.c_contiguous
    np.testing.assert_allclose(got, x @ w.T, rtol=1e-4, atol=1e-4)


@pytest.mark.parametrize("train", [True, False])
def test_batchnorm_layer_forward(tmp_path, train):
    net = float64_net(tmp_path, net_cfg(4, 3, 2, ("batchnorm", {})))
    w = {k: v.copy() for k, v in net.layers[0].weights.items()}
    x = np.random.default_rng(11).normal(size=(2, 2, 3, 4))
    np.testing.assert_allclose(net.forward(x, train=train), _bn_reference(x, w, train)[0], rtol=1e-10)


def test_float32_stays_float32(tmp_path):
    path = tmp_path / "f.cfg"
    path.write_text(net_cfg(8, 8, 3, conv(batch_normalize=1, activation="mish"), conv(size=1, activation="leaky"),
                            conv(groups=4, activation="swish"), ("connected", {"output": 3})))
    from darknet_py.weights import init_weights
    net = init_weights(darknet_py.load(path, quiet=True))
    out = net.forward(np.random.default_rng(12).normal(size=(2, 3, 8, 8)).astype(np.float32), train=True)
    assert out.dtype == np.float32
    dx = net.backward(np.ones_like(out))
    assert dx.dtype == np.float32 and all(g.dtype == np.float32 for l in net.layers for g in l.grads.values())


def test_share_index_uses_the_shared_weights(tmp_path):
    cfg = net_cfg(5, 5, 3, conv(filters=3), conv(filters=3, share_index=0))
    net = float64_net(tmp_path, cfg)
    x = np.random.default_rng(13).normal(size=(1, 3, 5, 5))
    w = net.layers[0].weights
    h = reference_conv(x, w["weights"], 1, 1, 1, 1, 1) + w["biases"][None, :, None, None]
    expected = reference_conv(h, w["weights"], 1, 1, 1, 1, 1) + w["biases"][None, :, None, None]
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-12)
    assert net.layers[1].weights == {}


# -- errors -----------------------------------------------------------------------------------------------------
def test_wrong_input_shape_raises(tmp_path):
    net = float64_net(tmp_path, net_cfg(6, 5, 3, conv(), ("connected", {"output": 2})))
    with pytest.raises(DarknetError, match="expected"):
        net.forward(np.zeros((1, 3, 6, 5)))
    with pytest.raises(DarknetError, match="layer 0 convolutional: input of shape"):
        net.layers[0].forward(np.zeros((1, 4, 5, 6)), net)
    with pytest.raises(DarknetError, match=r"layer 0 convolutional: input of shape \(1, 3, 6, 5\)"):
        net.layers[0].forward(np.zeros((1, 3, 6, 5)), net)       # same size, transposed: refused
    with pytest.raises(DarknetError, match="layer 1 connected: input of shape"):
        net.layers[1].forward(np.zeros((1, 7)), net)


def test_missing_weights_raise(tmp_path):
    path = tmp_path / "m.cfg"
    path.write_text(net_cfg(4, 4, 1, conv(), ("connected", {"output": 2})))
    net = darknet_py.load(path, quiet=True)
    with pytest.raises(DarknetError, match="layer 0 convolutional has no weights: load a .weights file or call "
                                           "init_weights"):
        net.forward(np.zeros((1, 1, 4, 4)))
    net.layers[0].weights = {"biases": np.zeros(4), "weights": np.zeros((4, 1, 3, 3))}
    with pytest.raises(DarknetError, match="layer 1 connected has no weights"):
        net.forward(np.zeros((1, 1, 4, 4)))


def test_weight_checks_follow_replaced_reshaped_and_edited_arrays(tmp_path):
    """layer_params keeps its checked arrays between forwards: a replaced or reshaped array is checked again, and
    an edit in place is used by the next forward (no value computed from the weights is kept)."""
    path = tmp_path / "c.cfg"
    path.write_text(net_cfg(4, 4, 2, conv(filters=3, batch_normalize=1)))
    net = darknet_py.load(path, quiet=True, init=True)
    layer = net.layers[0]
    x = np.random.default_rng(0).random((1, 2, 4, 4), dtype=np.float32)
    net.forward(x)
    layer.weights["weights"] *= 2
    layer.weights["rolling_variance"][...] = 4
    edited = net.forward(x).copy()
    fresh = darknet_py.load(path, quiet=True)
    fresh.layers[0].weights = {name: value.copy() for name, value in layer.weights.items()}
    np.testing.assert_array_equal(edited, fresh.forward(x))
    layer.weights["weights"] = np.zeros((3, 2, 3, 2), np.float32)
    with pytest.raises(DarknetError, match=r"layer 0 convolutional weights: expected \(3, 2, 3, 3\) values, got an "
                                           r"array of shape \(3, 2, 3, 2\)"):
        net.forward(x)
    layer.weights["weights"] = np.ones((3, 2, 3, 3), np.float32)
    ones = net.forward(x).copy()
    assert not np.array_equal(ones, edited)
    layer.weights["weights"].shape = (3, 18)      # the same values, as darknet's flat layout: still accepted
    np.testing.assert_array_equal(net.forward(x), ones)
    del layer.weights["scales"]
    with pytest.raises(DarknetError, match="layer 0 convolutional needs 'scales'"):
        net.forward(x)


def test_shared_layer_without_bn_arrays_raises(tmp_path):
    net = float64_net(tmp_path, net_cfg(4, 4, 2, conv(filters=2), conv(filters=2, batch_normalize=1, share_index=0)))
    with pytest.raises(DarknetError, match="layer 1 convolutional needs 'scales' but layer 0"):
        net.forward(np.zeros((1, 2, 4, 4)))


def test_batchnorm_training_needs_two_values(tmp_path):
    net = float64_net(tmp_path, net_cfg(2, 2, 1, ("connected", {"output": 2, "batch_normalize": 1})))
    with pytest.raises(DarknetError, match="at least 2 values per channel"):
        net.forward(np.zeros((1, 1, 2, 2)), train=True)
    net.forward(np.zeros((1, 1, 2, 2)), train=False)


# -- gradients ---------------------------------------------------------------------------------------------------
def _check(tmp_path, cfg, x_shape, train=True, seed=0, scale=1.0):
    net = float64_net(tmp_path, cfg, seed=seed)
    rng = np.random.default_rng(seed + 100)
    x = rng.normal(0, scale, x_shape)
    check_network_gradients(net, x, rng, train=train)
    return net


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("bn", [0, 1])
def test_gradients_conv(tmp_path, train, bn):
    _check(tmp_path, net_cfg(6, 5, 3, conv(batch_normalize=bn, activation="leaky"), conv(filters=3, batch_normalize=bn)),
           (2, 3, 5, 6), train=train)


CONV_VARIANTS = {
    "stride2": dict(stride=2),
    "pad0": dict(pad=0),
    "stride_x2_y1": dict(stride_x=2, stride_y=1),
    "stride_x1_y3": dict(stride_x=1, stride_y=3, pad=0),
    "dilation2": dict(dilation=2),
    "dilation2_pad0": dict(dilation=2, pad=0),
    "groups2": dict(groups=2),
    "depthwise": dict(groups=4, filters=4),
    "depthwise_stride2": dict(groups=4, filters=4, stride=2),
    "pointwise": dict(size=1, pad=0),
    "pointwise_stride2": dict(size=1, stride=2),
    "pointwise_groups2": dict(size=1, groups=2),
    "size5": dict(size=5),
    "even_size": dict(size=2, pad=0),
}


@pytest.mark.parametrize("variant", list(CONV_VARIANTS))
@pytest.mark.parametrize("bn", [0, 1])
def test_gradients_conv_geometry(tmp_path, variant, bn):
    cfg = net_cfg(9, 7, 4, conv(activation="leaky", batch_normalize=bn, **CONV_VARIANTS[variant]),
                  conv(filters=3, size=1, batch_normalize=bn))
    _check(tmp_path, cfg, (2, 4, 7, 9))


@pytest.mark.parametrize("name", ACTIVATIONS)
def test_gradients_every_activation(tmp_path, name):
    cfg = net_cfg(4, 3, 3, conv(filters=5, activation=name), conv(filters=4, size=1, activation=name))
    # inputs of spread 3 reach the plse, hardtan, relu6 and stair pieces; samples at a kink are improbable
    _check(tmp_path, cfg, (2, 3, 3, 4), scale=3.0, seed=ACTIVATIONS.index(name))


@pytest.mark.parametrize("name", ["leaky", "mish", "normalize_channels_softmax"])
def test_gradients_activation_after_batchnorm(tmp_path, name):
    _check(tmp_path, net_cfg(4, 4, 2, conv(filters=3, batch_normalize=1, activation=name)), (3, 2, 4, 4))


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("bn", [0, 1])
def test_gradients_connected(tmp_path, train, bn):
    cfg = net_cfg(4, 3, 2, conv(filters=3, activation="leaky"),
                  ("connected", {"output": 5, "activation": "tanh", "batch_normalize": bn}),
                  ("connected", {"output": 3, "activation": "linear"}),
                  conv(filters=2, size=1, activation="logistic"))        # image layer after a flat one: 3 x 1 x 1
    _check(tmp_path, cfg, (4, 2, 3, 4), train=train)


@pytest.mark.parametrize("train", [True, False])
def test_gradients_batchnorm_layer(tmp_path, train):
    cfg = net_cfg(5, 4, 2, conv(filters=3, activation="leaky"), ("batchnorm", {}), conv(filters=2, size=1))
    _check(tmp_path, cfg, (2, 2, 4, 5), train=train)


@pytest.mark.parametrize("bn", [0, 1])
def test_gradients_share_index(tmp_path, bn):
    cfg = net_cfg(5, 5, 3, conv(filters=3, batch_normalize=bn, activation="leaky"),
                  conv(filters=3, batch_normalize=bn, share_index=0, activation="mish"))
    net = _check(tmp_path, cfg, (2, 3, 5, 5))
    assert net.layers[1].grads == {} and set(net.layers[0].grads) >= {"weights", "biases"}


def test_gradients_accumulate_across_backward_calls(tmp_path):
    net = float64_net(tmp_path, net_cfg(4, 4, 2, conv(filters=2, batch_normalize=1)))
    x = np.random.default_rng(14).normal(size=(2, 2, 4, 4))
    out = net.forward(x, train=True)
    net.backward(np.ones_like(out))
    once = {k: v.copy() for k, v in net.layers[0].grads.items()}
    net.backward(np.ones_like(out))
    for key, value in net.layers[0].grads.items():
        np.testing.assert_allclose(value, 2 * once[key])
