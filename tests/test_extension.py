"""The native extensions against NumPy references: _C's im2col columns (inside im2col_gemm), _cuda's activation
kernel."""
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


GEOMETRIES = [  # c, h, w, k, stride_h, stride_w, pad, dilation
    (3, 7, 9, 3, 1, 1, 1, 1), (4, 8, 8, 3, 2, 2, 1, 1), (2, 9, 7, 3, 1, 1, 2, 2), (5, 6, 10, 1, 1, 2, 1, 1),
    (1, 5, 5, 5, 1, 1, 2, 1), (3, 11, 6, 4, 3, 1, 2, 2), (2, 1, 1, 1, 1, 1, 0, 1), (1, 4, 4, 3, 2, 2, 3, 1),
    # more than one 256-column slice, slices starting mid-row (460 = 20 rows of 23; 600 = 20 rows of 30)
    (2, 40, 45, 3, 2, 2, 1, 1), (1, 20, 30, 3, 1, 1, 1, 1),
]


def random_geometry(rng):
    """A random geometry whose (dilated) kernel fits the padded image."""
    while True:
        c, h, w = rng.integers(1, 5), rng.integers(1, 13), rng.integers(1, 13)
        k, sh, sw, pad, d = rng.integers(1, 5), *rng.integers(1, 4, 2), rng.integers(0, 4), rng.integers(1, 3)
        if min(h, w) + 2 * pad >= d * (k - 1) + 1:
            return tuple(int(v) for v in (c, h, w, k, sh, sw, pad, d))


RANDOM_GEOMETRIES = [random_geometry(np.random.default_rng(seed)) for seed in range(40)]


@pytest.mark.parametrize("g", GEOMETRIES + RANDOM_GEOMETRIES)
def test_im2col_columns_match_explicit_loops(g):
    """im2col_gemm with the identity as weights returns its im2col columns, exactly (each output is one input
    times 1 plus zeros): every row (channel, ky, kx) and every column, padding and both images of a batch."""
    rng = np.random.default_rng(list(g))
    c, h, w, k, sh, sw, pad, d = g
    images = rng.normal(size=(2, c, h, w)).astype(np.float32)
    rows = c * k * k
    identity = np.eye(rows, dtype=np.float32).reshape(rows, c, k, k)
    got = _ext._C.im2col_gemm(images, identity, sh, sw, pad, d)
    for image, columns in zip(images, got):
        np.testing.assert_array_equal(columns.reshape(rows, -1), reference_im2col(image, k, k, sh, sw, pad, pad, d, d))


def test_num_threads_is_a_positive_int():
    assert isinstance(_ext._C.num_threads(), int) and _ext._C.num_threads() >= 1


def _im2col_gemm(x, weights=None, stride=1, pad=1, dilation=1):
    weights = np.ones((2, x.shape[1] if x.ndim == 4 else 1, 3, 3), np.float32) if weights is None else weights
    return _ext._C.im2col_gemm(x, weights, stride, stride, pad, dilation)


@pytest.mark.parametrize("call, message", [
    (lambda: _im2col_gemm(np.zeros((1, 1, 4, 4), np.float64)), "float32"),
    (lambda: _im2col_gemm(np.zeros((1, 1, 4, 8), np.float32)[..., ::2]), "C-contiguous"),
    (lambda: _im2col_gemm(np.zeros((4, 4), np.float32)), "shape"),
    (lambda: _im2col_gemm(np.zeros((1, 1, 2, 2), np.float32), np.ones((2, 1, 5, 5), np.float32), pad=0),
     "does not fit"),
    (lambda: _im2col_gemm(np.zeros((1, 1, 4, 4), np.float32), stride=0), ">= 1"),
    (lambda: _im2col_gemm(np.zeros((1, 1, 4, 4), np.float32), pad=-1), "padding"),
    (lambda: _im2col_gemm(np.zeros((1, 0, 4, 4), np.float32)), ">= 1"),
    (lambda: _im2col_gemm(np.zeros((1, 2, 4, 4), np.float32), np.ones((2, 3, 3, 3), np.float32)), "weights"),
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
