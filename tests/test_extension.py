"""The native extensions against NumPy references: _C's im2col/col2im, _cuda's activation kernel."""
import subprocess
import sys

import numpy as np
import pytest

from darknet_py import _ext


def reference_im2col(image, kh, kw, sh, sw, ph, pw, dh, dw):
    """Darknet's im2col_cpu_ext by explicit loops: row (channel, ky, kx), column (oy, ox), zero outside."""
    c, h, w = image.shape
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    cols = np.zeros((c * kh * kw, oh * ow), image.dtype)
    for ch in range(c):
        for ky in range(kh):
            for kx in range(kw):
                row = (ch * kh + ky) * kw + kx
                for oy in range(oh):
                    iy = oy * sh - ph + ky * dh
                    if not 0 <= iy < h:
                        continue
                    for ox in range(ow):
                        ix = ox * sw - pw + kx * dw
                        if 0 <= ix < w:
                            cols[row, oy * ow + ox] = image[ch, iy, ix]
    return cols


GEOMETRIES = [  # c, h, w, kh, kw, sh, sw, ph, pw, dh, dw
    (3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1), (4, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1), (2, 9, 7, 3, 3, 1, 1, 2, 2, 2, 2),
    (5, 6, 10, 1, 3, 1, 2, 0, 1, 1, 1), (1, 5, 5, 5, 5, 1, 1, 2, 2, 1, 1), (3, 11, 6, 2, 4, 3, 1, 0, 2, 1, 2),
    (2, 1, 1, 1, 1, 1, 1, 0, 0, 1, 1), (1, 4, 4, 3, 3, 2, 2, 3, 3, 1, 1),
]


def random_geometry(rng):
    """A random geometry whose (dilated) kernel fits the padded image."""
    while True:
        c, h, w = rng.integers(1, 5), rng.integers(1, 13), rng.integers(1, 13)
        kh, kw, sh, sw, dh, dw = rng.integers(1, 5), rng.integers(1, 5), *rng.integers(1, 4, 2), *rng.integers(1, 3, 2)
        ph, pw = rng.integers(0, 4, 2)
        if h + 2 * ph >= dh * (kh - 1) + 1 and w + 2 * pw >= dw * (kw - 1) + 1:
            return tuple(int(v) for v in (c, h, w, kh, kw, sh, sw, ph, pw, dh, dw))


RANDOM_GEOMETRIES = [random_geometry(np.random.default_rng(seed)) for seed in range(40)]


@pytest.mark.parametrize("g", GEOMETRIES + RANDOM_GEOMETRIES)
def test_im2col_matches_numpy_and_col2im_is_its_adjoint(g):
    rng = np.random.default_rng(list(g))
    c, h, w, *k = g
    image = rng.normal(size=(c, h, w)).astype(np.float32)
    cols = _ext._C.im2col(image, *k)
    np.testing.assert_array_equal(cols, reference_im2col(image, *k))
    # col2im is the adjoint of im2col: <im2col(x), y> == <x, col2im(y)>
    other = rng.normal(size=cols.shape).astype(np.float32)
    back = _ext._C.col2im(other, c, h, w, *k)
    assert back.shape == image.shape and back.dtype == np.float32
    lhs = float(np.sum(cols.astype(np.float64) * other))
    rhs = float(np.sum(image.astype(np.float64) * back))
    assert lhs == pytest.approx(rhs, rel=1e-5, abs=1e-4)


def test_col2im_accumulates_overlapping_patches():
    # 3x3, stride 1, pad 1 over a 3x3 image: the centre pixel is read by all 9 output positions
    ones = np.ones((9, 9), np.float32)
    image = _ext._C.col2im(ones, 1, 3, 3, 3, 3, 1, 1, 1, 1, 1, 1)
    np.testing.assert_array_equal(image[0], [[4, 6, 4], [6, 9, 6], [4, 6, 4]])


def test_num_threads_is_a_positive_int():
    assert isinstance(_ext._C.num_threads(), int) and _ext._C.num_threads() >= 1


@pytest.mark.parametrize("call, message", [
    (lambda: _ext._C.im2col(np.zeros((1, 4, 4), np.float64), 3, 3, 1, 1, 1, 1, 1, 1), "float32"),
    (lambda: _ext._C.im2col(np.zeros((1, 4, 8), np.float32)[:, :, ::2], 3, 3, 1, 1, 1, 1, 1, 1), "C-contiguous"),
    (lambda: _ext._C.im2col(np.zeros((4, 4), np.float32), 3, 3, 1, 1, 1, 1, 1, 1), "shape"),
    (lambda: _ext._C.im2col(np.zeros((1, 2, 2), np.float32), 5, 5, 1, 1, 0, 0, 1, 1), "does not fit"),
    (lambda: _ext._C.im2col(np.zeros((1, 4, 4), np.float32), 3, 3, 0, 1, 1, 1, 1, 1), ">= 1"),
    (lambda: _ext._C.im2col(np.zeros((1, 4, 4), np.float32), 3, 3, 1, 1, -1, 1, 1, 1), "padding"),
    (lambda: _ext._C.im2col(np.zeros((0, 4, 4), np.float32), 3, 3, 1, 1, 1, 1, 1, 1), ">= 1"),
    (lambda: _ext._C.col2im(np.zeros((3, 3), np.float32), 1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1), "columns must have shape"),
    (lambda: _ext._C.col2im(np.zeros((9, 16), np.int32), 1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1), "float32"),
])
def test_bad_input_is_a_value_error(call, message):
    with pytest.raises(ValueError, match=message):
        call()


def test_missing_kernels_are_one_cli_line():
    """Without darknet_py._C (a checkout never built), the CLI prints one line saying how to rebuild, no
    traceback: DarknetBuildError is a DarknetError (and an ImportError)."""
    code = ("import sys; sys.modules['darknet_py._C'] = None; from darknet_py.cli import main; "
            "sys.exit(main(['info']))")
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 2, run.stderr
    lines = run.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: darknet_py._C") and "pip install -e ." in lines[0]


def _gpu_available():
    if not _ext.cuda_compiled:
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:   # no CuPy, no driver or no device
        return False


@pytest.mark.skipif(not _gpu_available(), reason="needs the CUDA extension (nvcc at install), CuPy and a GPU")
@pytest.mark.parametrize("name", ["linear", "logistic", "relu", "leaky", "mish", "swish"])
def test_cuda_activation_matches_numpy(name):
    import cupy
    x = np.random.default_rng(0).normal(0, 8, 100003).astype(np.float32)
    x[:4] = [0.0, 25.0, -25.0, -100.0]   # softplus thresholds and exp overflow
    device = cupy.asarray(x)
    _ext.cuda_ext.activate(device.data.ptr, device.size, name, cupy.cuda.get_current_stream().ptr)
    x64 = x.astype(np.float64)
    softplus = np.where(x64 > 20, x64, np.where(x64 < -20, np.exp(x64), np.log1p(np.exp(np.minimum(x64, 20)))))
    expected = {"linear": x64, "logistic": 1 / (1 + np.exp(-x64)), "relu": np.maximum(x64, 0),
                "leaky": np.where(x64 > 0, x64, 0.1 * x64), "mish": x64 * np.tanh(softplus),
                "swish": x64 / (1 + np.exp(-x64))}[name]
    np.testing.assert_allclose(device.get(), expected, rtol=1e-5, atol=1e-6)


@pytest.mark.skipif(not _gpu_available(), reason="needs the CUDA extension (nvcc at install), CuPy and a GPU")
def test_cuda_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="unsupported activation"):
        _ext.cuda_ext.activate(0, 0, "gelu_nonexistent", 0)
    with pytest.raises(ValueError, match="null"):
        _ext.cuda_ext.activate(0, 10, "relu", 0)
    assert _ext.cuda_ext.device_count() >= 1 and isinstance(_ext.cuda_ext.device_name(0), str)
