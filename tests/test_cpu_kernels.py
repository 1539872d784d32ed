"""The C++ inference kernels of darknet_py._C (fused per-channel affine + activation, depthwise convolution, max
pooling, GEMM, im2col_gemm, Winograd weights and convolution, concatenation, byte comparison, the thread pool)
against independent NumPy references, mostly in float64, and their handling of bad or empty input."""
import os
import subprocess
import sys

import numpy as np
import pytest

from darknet_py import _ext
from darknet_py.activations import ACTIVATIONS, CHANNEL_ACTIVATIONS, activate
from darknet_py import backend
from darknet_py.backend import NumpyOps

_C = _ext._C
FUSED = _C.fused_activations()
TOL = dict(rtol=2e-5, atol=2e-6)


def test_every_elementwise_activation_has_a_kernel():
    assert set(FUSED) == set(ACTIVATIONS) - set(CHANNEL_ACTIVATIONS)


@pytest.mark.parametrize("activation", FUSED)
@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 5, 1, 1), (3, 4), (1, 2, 33, 1)])
def test_affine_activate_matches_numpy(activation, shape):
    rng = np.random.default_rng(len(shape) + len(activation))
    x = rng.normal(0, 4, shape).astype(np.float32)
    x.flat[:6] = [0, -2, 4, -4, 25, -90][:min(6, x.size)]          # kinks, thresholds, clamped exponents
    scale = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    shift = rng.normal(0, 1, shape[1]).astype(np.float32)
    per_channel = (1, -1) + (1,) * (len(shape) - 2)
    name = "leaky" if activation == "revleaky" else activation          # darknet's revleaky forward is leaky
    for s in (scale, None):
        z = x.astype(np.float64) * (1 if s is None else s.reshape(per_channel)) + shift.reshape(per_channel)
        if activation == "stair":   # stair jumps at integers: keep points where float32 rounding cannot cross one
            z = np.where(np.abs(z - np.round(z)) < 1e-4, np.round(z) + 0.5, z)
            y = z.astype(np.float32)
            _C.affine_activate(y, None, np.zeros(shape[1], np.float32), activation)
        else:
            y = x.copy()
            _C.affine_activate(y, s, shift, activation)
        np.testing.assert_allclose(y, activate(z, name, np), **TOL, err_msg=activation)


def test_affine_activate_refuses_bad_input():
    x = np.zeros((1, 3, 2, 2), np.float32)
    with pytest.raises(ValueError, match="no C\\+\\+ kernel"):
        _C.affine_activate(x, None, np.zeros(3, np.float32), "normalize_channels")
    with pytest.raises(ValueError, match="one value per channel"):
        _C.affine_activate(x, None, np.zeros(2, np.float32), "leaky")
    with pytest.raises(ValueError, match="float32"):
        _C.affine_activate(x.astype(np.float64), None, np.zeros(3, np.float32), "leaky")


# c, h, w, size, stride_x, stride_y, pad, dilation. Narrow outputs (the channel-interleaved kernel: one partial
# block of channels, or 21 channels: a whole block of 16 and a partial one), then wide ones (each plane's output
# grid over its stride phases)
DEPTHWISE = [(3, 7, 9, 3, 1, 1, 1, 1), (4, 8, 8, 3, 2, 2, 1, 1), (2, 9, 7, 5, 1, 1, 2, 1), (5, 11, 10, 5, 2, 2, 2, 1),
             (3, 10, 9, 3, 1, 1, 1, 2), (2, 12, 13, 3, 2, 1, 0, 1), (3, 6, 5, 3, 1, 2, 2, 2), (2, 5, 6, 1, 1, 1, 0, 1),
             (4, 3, 3, 5, 1, 1, 2, 1), (2, 13, 11, 4, 3, 2, 2, 1), (21, 9, 14, 9, 1, 1, 4, 1),
             (3, 20, 37, 3, 1, 1, 1, 1), (4, 21, 40, 5, 2, 2, 2, 1), (2, 19, 35, 3, 1, 1, 1, 2), (2, 17, 33, 3, 2, 1, 0, 1),
             (2, 18, 50, 3, 3, 2, 2, 1), (2, 9, 31, 7, 1, 2, 3, 1), (2, 6, 33, 1, 1, 1, 0, 1)]


@pytest.mark.parametrize("geometry", DEPTHWISE)
@pytest.mark.parametrize("activation", ["linear", "leaky", "swish", "mish", "logistic"])
def test_depthwise_conv2d_matches_numpy(geometry, activation):
    c, h, w, k, sx, sy, pad, dilation = geometry
    rng = np.random.default_rng(list(geometry))
    x = rng.normal(size=(2, c, h, w)).astype(np.float32)
    weights = rng.normal(size=(c, 1, k, k)).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, c).astype(np.float32)
    shift = rng.normal(0, 0.5, c).astype(np.float32)
    reference = NumpyOps(np.float64).conv2d(x.astype(np.float64), weights.astype(np.float64), sx, sy, pad, dilation, c)
    out_h, out_w = reference.shape[2:]
    plain = _C.depthwise_conv2d(x, weights, sy, sx, pad * dilation, dilation, out_h, out_w)
    np.testing.assert_allclose(plain, reference, **TOL)
    fused = _C.depthwise_conv2d(x, weights, sy, sx, pad * dilation, dilation, out_h, out_w, scale, shift, activation)
    expected = activate(reference * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1), activation, np)
    np.testing.assert_allclose(fused, expected, **TOL)


# size, stride_x, stride_y, pad, dilation: im2col_gemm on the input itself (strided: 2, the specialised gather, and
# 3; dilated), the strided 1x1 GEMM, and im2col_gemm on a padded and cropped copy (dilation 2 without padding:
# _Geometry.ext_matches_C false)
CONV_KERNELS = [(3, 2, 1, 1, 1), (3, 3, 2, 1, 1), (3, 1, 1, 1, 2), (1, 2, 2, 0, 1), (3, 1, 1, 0, 2)]


@pytest.mark.parametrize("kernel", CONV_KERNELS)
@pytest.mark.parametrize("groups", [1, 2, "depthwise"])
@pytest.mark.parametrize("activation", ["leaky", "mish", "normalize_channels"])
def test_conv2d_affine_activation_matches_the_unfused_path(kernel, groups, activation):
    size, stride_x, stride_y, pad, dilation = kernel
    rng = np.random.default_rng(7)
    c = 4
    groups = c if groups == "depthwise" else groups
    x = rng.normal(size=(2, c, 9, 8))
    w = rng.normal(size=(c, c // groups, size, size))
    scale, shift = rng.uniform(0.5, 1.5, c), rng.normal(0, 0.5, c)
    reference_ops = NumpyOps(np.float64)
    z = reference_ops.conv2d(x, w, stride_x, stride_y, pad, dilation, groups)
    expected = activate(z * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1), activation, np)
    ops = NumpyOps(np.float32)
    got = ops.conv2d_affine_activation(ops.asarray(x), ops.asarray(w), ops.asarray(scale), ops.asarray(shift),
                                       activation, stride_x, stride_y, pad, dilation, groups)
    assert got.dtype == np.float32
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
    # float32 images through float64 ops with float64 scale and shift: the kernels still get float32
    mixed = reference_ops.conv2d_affine_activation(ops.asarray(x), ops.asarray(w), scale, shift, activation,
                                                   stride_x, stride_y, pad, dilation, groups)
    np.testing.assert_allclose(mixed, expected, rtol=1e-4, atol=1e-5)


def reference_maxpool(x, size, sx, sy, offset, out_h, out_w):
    """Darknet's forward_maxpool_layer by explicit loops: -FLT_MAX start, strict >, positions outside skipped."""
    out = np.full(x.shape[:2] + (out_h, out_w), -np.finfo(np.float32).max, np.float64)
    for oy in range(out_h):
        for ox in range(out_w):
            for ky in range(size):
                for kx in range(size):
                    iy, ix = oy * sy - offset + ky, ox * sx - offset + kx
                    if 0 <= iy < x.shape[2] and 0 <= ix < x.shape[3]:
                        val = x[:, :, iy, ix]
                        out[:, :, oy, ox] = np.where(val > out[:, :, oy, ox], val, out[:, :, oy, ox])
    return out


# h, w, size, stride_x, stride_y, padding (darknet's: offset padding // 2, output (h + padding - size)/stride + 1)
MAXPOOL = [(8, 8, 2, 2, 2, 1), (13, 13, 2, 1, 1, 1), (9, 7, 3, 2, 2, 2), (10, 11, 5, 1, 1, 4), (7, 9, 3, 2, 1, 0),
           (6, 6, 3, 3, 3, 6), (5, 8, 4, 1, 2, 3)]


@pytest.mark.parametrize("geometry", MAXPOOL)
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_maxpool2d_matches_darknet_loops(geometry, dtype):
    h, w, size, sx, sy, padding = geometry
    out_h, out_w = (h + padding - size) // sy + 1, (w + padding - size) // sx + 1
    rng = np.random.default_rng(list(geometry))
    x = rng.normal(size=(2, 3, h, w)).astype(dtype)
    x[0, 0, 0, :2] = np.nan                         # never selected, as in darknet's scan
    got = NumpyOps(dtype).maxpool2d(x, size, sx, sy, padding // 2, out_h, out_w)
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, reference_maxpool(x, size, sx, sy, padding // 2, out_h, out_w).astype(dtype))


def _reference_conv_affine(x, w, scale, shift, activation, pad):
    z = NumpyOps(np.float64).conv2d(x.astype(np.float64), w.astype(np.float64), 1, 1, pad, 1, 1)
    return activate(z * scale.reshape(1, -1, 1, 1) + shift.reshape(1, -1, 1, 1), activation, np)


# batch, channels, filters, h, w, pad: output sizes that are and are not multiples of the 4x4 tiles
WINOGRAD = [(1, 16, 16, 8, 8, 1), (2, 17, 19, 13, 11, 1), (1, 32, 24, 9, 7, 0), (1, 16, 20, 5, 6, 2),
            (1, 16, 16, 3, 3, 1), (1, 20, 16, 3, 4, 0)]


@pytest.mark.parametrize("geometry", WINOGRAD)
@pytest.mark.parametrize("activation", ["linear", "leaky", "mish"])
@pytest.mark.parametrize("tile", [2, 4])
def test_winograd_convolution_matches_numpy(geometry, activation, tile):
    batch, c, filters, h, w, pad = geometry
    ops = NumpyOps(np.float32)
    ops.WINOGRAD_TILES = (tile,)      # F(4x4, 3x3) or F(2x2, 3x3) on any map
    rng = np.random.default_rng(list(geometry))
    x = rng.normal(size=(batch, c, h, w)).astype(np.float32)
    weights = (rng.normal(size=(filters, c, 3, 3)) / np.sqrt(9 * c)).astype(np.float32)
    scale = rng.uniform(0.5, 1.5, filters).astype(np.float32)
    shift = rng.normal(0, 0.5, filters).astype(np.float32)
    assert ops.conv_path(c, filters, 3, 1, 1, pad, 1, 1, h + 2 * pad - 2, w + 2 * pad - 2, activation,
                         False) == f"winograd{tile}"
    got = ops.conv2d_affine_activation(x, weights, scale, shift, activation, 1, 1, pad, 1, 1)
    expected = _reference_conv_affine(x, weights, scale, shift, activation, pad)
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=2e-5 * np.abs(expected).max())
    assert [key[-1] for key in ops._winograd_cache] == [tile]


def _winograd_case(seed):
    """float32 ops and a 16-channel 6x6 image, 3x3 weights and a zero shift: a convolution Winograd takes."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(1, 16, 6, 6)).astype(np.float32)
    weights = (rng.normal(size=(16, 16, 3, 3)) / 12).astype(np.float32)
    return NumpyOps(np.float32), x, weights, np.zeros(16, np.float32)


def test_convolution_dispatch_follows_the_winograd_settings():
    """conv2d_affine_activation keeps its dispatch per shapes: a setting changed between calls still counts."""
    ops, x, weights, shift = _winograd_case(4)
    expected = _reference_conv_affine(x, weights, np.ones(16), shift, "linear", 1)
    for winograd, tiles, transforms in (("cached", (4,), [4]), ("cached", (2,), [2]), ("off", (2,), [])):
        ops.winograd, ops.WINOGRAD_TILES = winograd, tiles
        ops.clear_caches()
        got = ops.conv2d_affine_activation(x, weights, None, shift, "linear", 1, 1, 1, 1, 1)
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-5)
        assert [key[-1] for key in ops._winograd_cache] == transforms


def test_winograd_weight_cache_follows_in_place_changes_and_new_arrays():
    ops, x, weights, shift = _winograd_case(3)

    def check():
        got = ops.conv2d_affine_activation(x, weights, None, shift, "linear", 1, 1, 1, 1, 1)
        np.testing.assert_allclose(got, _reference_conv_affine(x, weights, np.ones(16), shift, "linear", 1),
                                   rtol=1e-4, atol=1e-5)

    check()
    weights[3, 5, 1, 2] += 0.5          # an in-place update (training, tests): the cached transform is stale
    check()
    weights *= 0.9
    check()
    weights.reshape(-1)[-1] += 0.25     # the last element: the byte comparison reads every block
    check()
    assert len(ops._winograd_cache) == 1
    weights = _winograd_case(5)[2]      # a new array; the old one is freed
    check()
    assert len(ops._winograd_cache) == 1


def test_winograd_cache_of_frozen_weights_keeps_no_copy_and_resumes_checking_when_thawed(monkeypatch):
    """Read-only weights that own their memory (Network.freeze_weights) cannot change: the cache keeps no copy
    of them and compares nothing; once writeable again they are compared (and copied) as any others."""
    ops, x, weights, shift = _winograd_case(6)
    weights.flags.writeable = False
    compared = []
    monkeypatch.setattr(_C, "same_bytes", lambda a, b: compared.append(1) or np.array_equal(a, b))

    def check(w):
        got = ops.conv2d_affine_activation(x, w, None, shift, "linear", 1, 1, 1, 1, 1)
        np.testing.assert_allclose(got, _reference_conv_affine(x, w, np.ones(16), shift, "linear", 1),
                                   rtol=1e-4, atol=1e-5)

    check(weights)
    check(weights.reshape(16, 16, 3, 3))        # a view of it: the same cache entry
    assert [entry[0] for entry in ops._winograd_cache.values()] == [None] and not compared
    with pytest.raises(ValueError):
        weights[0, 0, 0, 0] = 1.0
    weights.flags.writeable = True
    weights[0, 0, 0, 0] += 0.5                  # thawed and changed: rebuilt, with a copy to compare from now on
    check(weights)
    check(weights)
    assert len(compared) == 1 and list(ops._winograd_cache.values())[0][0] is not None


def test_same_bytes_finds_any_differing_byte():
    rng = np.random.default_rng(4)
    a = rng.normal(size=(3, 70001)).astype(np.float32)     # several of the kernel's 64 KiB blocks, a partial last
    assert _C.same_bytes(a, a.copy())
    for index in [0, 16383, 16384, 70000, a.size - 1]:      # first, either side of a block boundary, last
        b = a.copy()
        b.reshape(-1)[index] = np.nextafter(b.reshape(-1)[index], np.float32(np.inf))
        assert not _C.same_bytes(a, b)
    nan = np.full(5, np.nan, np.float32)
    assert _C.same_bytes(nan, nan.copy()) and not np.array_equal(nan, nan.copy())    # bytes, not ==
    assert not _C.same_bytes(np.zeros(4, np.float32), -np.zeros(4, np.float32))
    assert not _C.same_bytes(a, a.reshape(70001, 3).copy())                          # same bytes, other shape
    assert not _C.same_bytes(np.zeros(4, np.float32), np.zeros(4, np.int32))
    assert _C.same_bytes(np.zeros(4, ">f4"), np.zeros(4, ">f4"))      # equal dtypes, not the same object
    with pytest.raises(ValueError, match="C-contiguous"):
        _C.same_bytes(a[:, ::2], a[:, ::2].copy())


def test_concat_matches_numpy_concatenate():
    rng = np.random.default_rng(5)
    whole = rng.normal(size=(3, 40000)).astype(np.float32)
    # column slices (rows not adjacent), pieces crossing the 64 KiB copy blocks, an empty and a one-column piece
    pieces = [whole[:, 5:30005], rng.normal(size=(3, 17)).astype(np.float32), whole[:, :0], whole[:, 7:8],
              whole[:, 20000:]]
    got = _C.concat(pieces)
    assert got.flags.c_contiguous and np.array_equal(got, np.concatenate(pieces, axis=1))
    # empty pieces last and alone (NumPy gives empty arrays zero strides), and an empty batch
    for pieces in ([whole[:, :4], np.zeros((3, 0), np.float32)], [np.zeros((3, 0), np.float32)],
                   [np.zeros((0, 3), np.float32), np.zeros((0, 2), np.float32)]):
        assert np.array_equal(_C.concat(pieces), np.concatenate(pieces, axis=1))
        assert _C.concat(pieces).shape == np.concatenate(pieces, axis=1).shape
    assert np.array_equal(_C.concat([whole[:, 9:]]), whole[:, 9:])
    ops = NumpyOps()
    mixed = [whole[:, :3].astype(np.float64), whole[:, 3:6]]
    assert ops.concat(mixed).dtype == np.float64 and np.array_equal(ops.concat(mixed), whole[:, :6])
    assert np.array_equal(ops.concat([whole[:, ::2], whole[:, 1:4]]), np.concatenate([whole[:, ::2], whole[:, 1:4]], 1))
    with pytest.raises(ValueError, match="float32"):
        _C.concat([whole, whole[:2]])
    with pytest.raises(ValueError, match="no pieces"):
        _C.concat([])


@pytest.mark.parametrize("shape", [(2, 3, 5, 7), (1, 40, 1, 1), (1, 2, 33, 17), (3, 1, 4, 4)])
def test_plane_kernels_match_numpy(shape):
    """global_avgpool (the mean of each plane), scale_planes (x * factor per plane, then an activation) and add (a
    sum of arrays in order) against NumPy in float64, on planes of whole vectors, a remainder, a single value."""
    rng = np.random.default_rng(list(shape))
    x = rng.normal(size=shape).astype(np.float32)
    means = _C.global_avgpool(x)
    assert means.shape == shape[:2] + (1, 1)
    np.testing.assert_allclose(means, x.astype(np.float64).mean(axis=(2, 3), keepdims=True), rtol=1e-5, atol=1e-6)
    factors = rng.normal(size=shape[:2] + (1, 1)).astype(np.float32)
    np.testing.assert_array_equal(_C.scale_planes(x, factors), x * factors)        # one product: exact
    np.testing.assert_allclose(_C.scale_planes(x, factors, "swish"), activate(x.astype(np.float64) * factors,
                                                                              "swish", np), **TOL)
    terms = [x] + [rng.normal(size=shape).astype(np.float32) for _ in range(2)]
    np.testing.assert_array_equal(_C.add(terms), terms[0] + terms[1] + terms[2])   # the same additions
    with pytest.raises(ValueError, match="one shape"):
        _C.add([x, np.zeros(shape[:-1] + (shape[-1] + 1,), np.float32)])
    with pytest.raises(ValueError, match="factors"):
        _C.scale_planes(x, np.ones(shape[0] * shape[1] + 1, np.float32))


@pytest.mark.parametrize("shapes", [((7, 5), (5, 9)), ((36, 6, 5), (36, 5, 4)), ((6, 5), (3, 5, 8)), ((1, 4), (4, 3))])
def test_matmul_matches_numpy(shapes):
    rng = np.random.default_rng(5)
    a, b = (rng.normal(size=s).astype(np.float32) for s in shapes)
    expected = np.matmul(a, b)
    # a strided view as out, as a grouped 1x1 convolution writes one group of a larger array
    wide = np.full(expected.shape[:-1] + (2 * expected.shape[-1],), np.nan, np.float32)
    backend.matmul(a, b, wide[..., :expected.shape[-1]])
    np.testing.assert_allclose(wide[..., :expected.shape[-1]], expected, rtol=1e-5, atol=1e-5)
    assert np.isnan(wide[..., expected.shape[-1]:]).all()          # nothing written outside out


# (m, k, n): rows not a multiple of the panel, columns in wide blocks, single vectors and a remainder
# fewer than 8 columns take the dot-product path: rows past a multiple of 4 and of 32, k past whole vectors
GEMM_SHAPES = [(1, 1, 1), (8, 3, 16), (13, 7, 33), (20, 64, 47), (64, 288, 100), (3, 5, 600), (9, 0, 5),
               (37, 70, 1), (70, 21, 7), (5, 16, 2)]


@pytest.mark.parametrize("shape", GEMM_SHAPES)
def test_gemm_matches_numpy(shape):
    m, k, n = shape
    rng = np.random.default_rng(list(shape))
    a = rng.normal(size=(m, k)).astype(np.float32)
    b = rng.normal(size=(k, n)).astype(np.float32)
    expected = a.astype(np.float64) @ b           # tolerances: float32 sums of up to 288 terms
    np.testing.assert_allclose(_C.gemm(a, b), expected, rtol=1e-5, atol=1e-4)
    # batched, with the fused epilogue leaky(y * scale + shift) per row
    scale, shift = rng.uniform(0.5, 2, m).astype(np.float32), rng.normal(size=m).astype(np.float32)
    got = _C.gemm(a, np.stack([b, -b]), scale, shift, "leaky")
    for sign, result in zip((1, -1), got):
        z = sign * expected * scale[:, None] + shift[:, None]
        np.testing.assert_allclose(result, np.where(z > 0, z, 0.1 * z), rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="gemm"):
        _C.gemm(a, np.zeros((k + 1, n), np.float32))


@pytest.mark.parametrize("groups, m, k, n", [(2, 16, 6, 40), (3, 9, 4, 17), (4, 12, 33, 300), (3, 99, 20, 1),
                                             (2, 14, 35, 6)])
def test_grouped_gemm_matches_numpy(groups, m, k, n):
    """groups in one call: row block g of a (m/groups rows, k columns) times rows [g*k, (g+1)*k) of b."""
    rng = np.random.default_rng([groups, m, k, n])
    a = rng.normal(size=(m, k)).astype(np.float32)
    b = rng.normal(size=(2, groups * k, n)).astype(np.float32)
    scale, shift = rng.uniform(0.5, 2, m).astype(np.float32), rng.normal(size=m).astype(np.float32)
    rows = m // groups
    z = np.stack([np.concatenate([a[g * rows:(g + 1) * rows].astype(np.float64) @ image[g * k:(g + 1) * k]
                                  for g in range(groups)]) for image in b])
    z = z * scale[:, None] + shift[:, None]
    np.testing.assert_allclose(_C.gemm(a, b, scale, shift, "leaky", groups), np.where(z > 0, z, 0.1 * z),
                               rtol=1e-5, atol=1e-4)
    with pytest.raises(ValueError, match="multiple of groups"):
        _C.gemm(a[:m - 1], b, groups=groups)


SIMD_ISAS = ["baseline", "avx2", "avx512f"]       # narrowest first
# the tests that run the explicitly vectorized kernels (simd.h): rerun with each narrower variant below
SIMD_TESTS = "affine_activate or plane_kernels or gemm or winograd or depthwise or conv2d_affine or fused_path or thread_count or im2col or empty_batch"


def test_simd_isa_follows_its_environment_cap():
    cap = os.environ.get("DARKNET_PY_SIMD_ISA")
    if cap not in SIMD_ISAS:
        pytest.skip("no DARKNET_PY_SIMD_ISA cap in this run")
    assert SIMD_ISAS.index(_C.simd_isa()) <= SIMD_ISAS.index(cap)


@pytest.mark.parametrize("isa", ["baseline", "avx2"])
def test_narrower_simd_variants_pass_the_kernel_tests(isa):
    """The kernels run the widest vector variant the CPU has, so the plain run checks only that one; the others
    (what a machine without AVX-512 runs) are checked here in a child pytest with the variant capped."""
    if os.environ.get("DARKNET_PY_SIMD_ISA"):
        pytest.skip("already inside a capped run")
    if SIMD_ISAS.index(_C.simd_isa()) <= SIMD_ISAS.index(isa):
        pytest.skip(f"this CPU's kernels run {_C.simd_isa()}: the plain run checks it")
    done = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", __file__,
                           os.path.join(os.path.dirname(__file__), "test_extension.py"), "-k",
                           f"({SIMD_TESTS}) and not narrower"],
                          env={**os.environ, "DARKNET_PY_SIMD_ISA": isa}, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-4000:]
    summary = done.stdout.strip().splitlines()[-1]
    assert " passed" in summary and "skipped" not in summary, summary    # the cap test ran and held


# Lavin & Gray's kernel transforms: F(4x4, 3x3) with points 0, +-1, +-2, infinity; F(2x2, 3x3) with 0, +-1, infinity
KERNEL_TRANSFORM = {
    4: np.array([[1 / 4, 0, 0], [-1 / 6, -1 / 6, -1 / 6], [-1 / 6, 1 / 6, -1 / 6], [1 / 24, 1 / 12, 1 / 6],
                 [1 / 24, -1 / 12, 1 / 6], [0, 0, 1]]),
    2: np.array([[1, 0, 0], [1 / 2, 1 / 2, 1 / 2], [1 / 2, -1 / 2, 1 / 2], [0, 0, 1]]),
}


@pytest.mark.parametrize("tile", [2, 4])
@pytest.mark.parametrize("filters, channels", [(1, 5), (8, 1), (11, 5), (20, 3), (9, 67)])
def test_winograd_weights_are_g_w_gt_packed_in_panels(tile, filters, channels):
    rng = np.random.default_rng([tile, filters, channels])
    w = rng.normal(size=(filters, channels, 3, 3)).astype(np.float32)
    g = KERNEL_TRANSFORM[tile]
    expected = np.einsum("ak,fckl,bl->abfc", g, w.astype(np.float64), g).reshape((tile + 2) ** 2, filters, channels)
    packed = _C.winograd_weights(w, tile)
    panels = -(-filters // _C.PACK_ROWS)
    assert packed.shape == ((tile + 2) ** 2, panels, channels, _C.PACK_ROWS)
    for panel in range(panels):
        rows = expected[:, panel * _C.PACK_ROWS:(panel + 1) * _C.PACK_ROWS]       # (P, filters of the panel, c)
        np.testing.assert_allclose(packed[:, panel, :, :rows.shape[1]], rows.transpose(0, 2, 1), rtol=1e-6,
                                   atol=1e-7)
        assert not packed[:, panel, :, rows.shape[1]:].any()                       # rows past the filters: zero
    with pytest.raises(ValueError, match="3, 3"):
        _C.winograd_weights(np.zeros((4, 2, 5, 5), np.float32), tile)
    with pytest.raises(ValueError, match="tile"):
        _C.winograd_weights(w, 3)
    with pytest.raises(ValueError, match="channels >= 1"):
        _C.winograd_weights(np.zeros((4, 0, 3, 3), np.float32), tile)


def test_kernels_give_the_same_result_with_any_thread_count():
    rng = np.random.default_rng(11)
    x = rng.normal(size=(2, 24, 17, 15)).astype(np.float32)
    w = rng.normal(size=(24, 1, 5, 5)).astype(np.float32)
    shift = rng.normal(size=24).astype(np.float32)
    w3 = rng.normal(size=(20, 24, 3, 3)).astype(np.float32)
    columns = rng.normal(size=(216, 700)).astype(np.float32)     # several 256-column slices per panel
    winograd_weights = _C.winograd_weights(w3, 4)
    saved = _C.num_threads()
    results = []
    try:
        for threads in (1, 2, 5):
            _C.set_num_threads(threads)
            assert _C.num_threads() == threads
            results.append((_C.depthwise_conv2d(x, w, 2, 1, 2, 1, 8, 11, None, shift, "mish"),
                            _C.winograd_conv(x, winograd_weights, 20, 1, 4, None, shift[:20].copy(), "mish"),
                            _C.maxpool2d(x, 3, 2, 2, 1, 9, 8),
                            _C.gemm(w3.reshape(20, -1), columns),
                            _C.im2col_gemm(x, w3, 1, 2, 1, 1, None, shift[:20].copy(), "leaky")))
    finally:
        _C.set_num_threads(saved)
    for other in results[1:]:
        for a, b in zip(results[0], other):
            np.testing.assert_array_equal(a, b)
    with pytest.raises(ValueError, match=">= 1"):
        _C.set_num_threads(0)
    assert _C.contended() in (True, False)


def test_kernels_accept_an_empty_batch():
    """A batch of no images gives no images (Winograd divided by zero here once), and no channels is refused."""
    x = np.zeros((0, 16, 9, 8), np.float32)
    w3 = np.ones((4, 16, 3, 3), np.float32)
    assert _C.winograd_conv(x, _C.winograd_weights(w3, 4), 4, 1, 4).shape == (0, 4, 9, 8)
    assert _C.im2col_gemm(x, w3, 2, 1, 1).shape == (0, 4, 5, 8)
    assert _C.depthwise_conv2d(x, np.ones((16, 1, 3, 3), np.float32), 1, 1, 1, 1, 9, 8).shape == (0, 16, 9, 8)
    assert _C.maxpool2d(x, 2, 2, 2, 0, 4, 4).shape == (0, 16, 4, 4)
    assert _C.gemm(np.ones((4, 16), np.float32), x.reshape(0, 16, 72)).shape == (0, 4, 72)
    ops = NumpyOps()
    assert ops.conv2d_affine_activation(x, w3, None, np.zeros(4, np.float32), "leaky", 1, 1, 1).shape == (0, 4, 9, 8)
    with pytest.raises(ValueError, match="channel"):
        _C.winograd_conv(np.zeros((1, 0, 9, 8), np.float32), _C.winograd_weights(w3, 4), 4, 1, 4)


@pytest.mark.parametrize("kernel", ["gemm", "im2col_gemm", "winograd_conv", "depthwise_conv2d"])
@pytest.mark.parametrize("scale, activation", [(np.full(4, 2, np.float32), "linear"), (None, "relu")])
def test_a_scale_or_activation_without_shift_is_refused(kernel, scale, activation):
    """The kernels apply no epilogue without a shift: a scale or an activation alone must not be dropped."""
    x = np.ones((1, 4, 6, 6), np.float32)
    w = np.ones((4, 4, 3, 3), np.float32)
    args = {"gemm": (w.reshape(4, -1), np.ones((36, 10), np.float32)),
            "im2col_gemm": (x, w, 1, 1, 1, 1),
            "winograd_conv": (x, _C.winograd_weights(w, 2), 4, 1, 2),
            "depthwise_conv2d": (x, w[:, :1].copy(), 1, 1, 1, 1, 6, 6)}[kernel]
    with pytest.raises(ValueError, match="needs a shift"):
        getattr(_C, kernel)(*args, scale=scale, shift=None, activation=activation)
    shift = np.zeros(4, np.float32)
    getattr(_C, kernel)(*args, scale=scale, shift=shift, activation=activation)     # with one: accepted


OUT_OF_MEMORY_ON_A_WORKER = """
import resource
import numpy as np
from darknet_py._ext import _C
_C.set_num_threads(2)
_C.gemm(np.ones((64, 64), np.float32), np.ones((64, 4096), np.float32))    # the pool's worker is running
# each thread's im2col column slice is 288 * 200000 floats (230 MB); x and the weights are already allocated
x, w = np.ones((1, 200000, 8, 8), np.float32), np.ones((1, 200000, 3, 3), np.float32)
status = dict(line.split(":", 1) for line in open("/proc/self/status"))
mapped = int(status["VmSize"].split()[0]) * 1024
resource.setrlimit(resource.RLIMIT_AS, (mapped + (150 << 20), resource.RLIM_INFINITY))
try:
    _C.im2col_gemm(x, w, 1, 1, 1)
except MemoryError:
    resource.setrlimit(resource.RLIMIT_AS, (resource.RLIM_INFINITY, resource.RLIM_INFINITY))
    assert _C.gemm(np.ones((8, 8), np.float32), np.ones((8, 4096), np.float32)).sum() == 8 * 8 * 4096
    print("MemoryError, and the pool still works")
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="RLIMIT_AS and /proc/self/status: Linux")
def test_an_allocation_failure_on_a_worker_is_a_memory_error():
    """A kernel's buffer allocated inside a parallel body (here on both threads) that cannot be had: the caller
    gets MemoryError and the pool keeps working. An exception escaping a worker thread aborted the process."""
    done = subprocess.run([sys.executable, "-c", OUT_OF_MEMORY_ON_A_WORKER], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0 and "MemoryError, and the pool still works" in done.stdout, done.stderr[-2000:]


CONV_NET = """[net]
width=9
height=10
channels=16

[convolutional]
batch_normalize=1
filters=16
size=3
pad=1
activation=mish

[convolutional]
filters=16
groups=16
size=5
stride=2
pad=1
batch_normalize=1
activation=swish

[maxpool]
size=2
stride=1
"""


def test_inference_forward_and_backward_of_the_fused_path_match_float64(tmp_path):
    """The float32 fused kernels (Winograd, depthwise, max pooling) against the unfused NumPy path in float64;
    a backward() after the inference forward recomputes what the forward did not keep."""
    import darknet_py
    path = tmp_path / "c.cfg"
    path.write_text(CONV_NET)
    nets = [darknet_py.load(path, quiet=True) for _ in range(2)]
    nets[1].ops = NumpyOps(np.float64)
    rng = np.random.default_rng(2)
    for i in (0, 1):
        for name, shape in nets[0].layers[i].weight_layout():
            value = rng.uniform(0.5, 1.5, shape) if name in ("scales", "rolling_variance") else \
                rng.normal(0, 0.3, shape)
            for net in nets:
                net.layers[i].weights[name] = value.astype(np.float32)
    x = rng.normal(size=(2, 16, 10, 9)).astype(np.float32)
    assert NumpyOps().conv_path(16, 16, 3, 1, 1, 1, 1, 1, 10, 9, "mish", False).startswith("winograd")
    out32, out64 = nets[0].forward(x), nets[1].forward(x.astype(np.float64))
    assert out32.dtype == np.float32 and nets[0].layers[0]._z is None         # nothing kept for backward
    np.testing.assert_allclose(out32, out64, rtol=1e-4, atol=1e-4 * np.abs(out64).max())
    dy = rng.normal(size=out32.shape)
    dx32, dx64 = nets[0].backward(dy.astype(np.float32)), nets[1].backward(dy)
    np.testing.assert_allclose(dx32, dx64, rtol=1e-3, atol=1e-4 * np.abs(dx64).max())
    np.testing.assert_allclose(nets[0].layers[0].grads["weights"], nets[1].layers[0].grads["weights"],
                               rtol=1e-3, atol=1e-4 * np.abs(nets[1].layers[0].grads["weights"]).max())
