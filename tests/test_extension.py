"""The native extensions against NumPy references: _C's im2col/col2im, _cuda's activation kernel."""
import numpy as np
import pytest

from darknet_py import _ext

needs_c = pytest.mark.skipif(_ext._C is None, reason="the C++ extension is not built (pip install -e .)")


def reference_im2col(image, kh, kw, sh, sw, ph, pw, dh, dw):
    c, h, w = image.shape
    oh = (h + 2 * ph - (dh * (kh - 1) + 1)) // sh + 1
    ow = (w + 2 * pw - (dw * (kw - 1) + 1)) // sw + 1
    padded = np.zeros((c, h + 2 * ph, w + 2 * pw), image.dtype)
    padded[:, ph:ph + h, pw:pw + w] = image
    cols = np.empty((c * kh * kw, oh * ow), image.dtype)
    for ch in range(c):
        for ky in range(kh):
            for kx in range(kw):
                patch = padded[ch, ky * dh: ky * dh + sh * (oh - 1) + 1: sh, kx * dw: kx * dw + sw * (ow - 1) + 1: sw]
                cols[(ch * kh + ky) * kw + kx] = patch.reshape(-1)
    return cols


GEOMETRIES = [  # c, h, w, kh, kw, sh, sw, ph, pw, dh, dw
    (3, 7, 9, 3, 3, 1, 1, 1, 1, 1, 1), (4, 8, 8, 3, 3, 2, 2, 1, 1, 1, 1), (2, 9, 7, 3, 3, 1, 1, 2, 2, 2, 2),
    (5, 6, 10, 1, 3, 1, 2, 0, 1, 1, 1), (1, 5, 5, 5, 5, 1, 1, 2, 2, 1, 1), (3, 11, 6, 2, 4, 3, 1, 0, 2, 1, 2),
]


@needs_c
@pytest.mark.parametrize("g", GEOMETRIES)
def test_im2col_matches_numpy_and_col2im_is_its_adjoint(g):
    rng = np.random.default_rng()
    c, h, w, *k = g
    image = rng.normal(size=(c, h, w)).astype(np.float32)
    cols = _ext._C.im2col(image, *k)
    np.testing.assert_array_equal(cols, reference_im2col(image, *k))
    other = rng.normal(size=cols.shape).astype(np.float32)
    back = _ext._C.col2im(other, c, h, w, *k)
    assert np.isclose(float(np.sum(cols.astype(np.float64) * other)), float(np.sum(image.astype(np.float64) * back)),
                      rtol=1e-5)


@needs_c
def test_bad_input_is_a_value_error():
    with pytest.raises(ValueError, match="float32"):
        _ext._C.im2col(np.zeros((1, 4, 4), np.float64), 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="shape"):
        _ext._C.im2col(np.zeros((4, 4), np.float32), 3, 3, 1, 1, 1, 1, 1, 1)
    with pytest.raises(ValueError, match="does not fit"):
        _ext._C.im2col(np.zeros((1, 2, 2), np.float32), 5, 5, 1, 1, 0, 0, 1, 1)
    with pytest.raises(ValueError, match="columns must have shape"):
        _ext._C.col2im(np.zeros((3, 3), np.float32), 1, 4, 4, 3, 3, 1, 1, 1, 1, 1, 1)


def _gpu_available():
    if not _ext.cuda_compiled:
        return False
    try:
        import cupy
        return cupy.cuda.runtime.getDeviceCount() > 0
    except Exception:
        return False


@pytest.mark.skipif(not _gpu_available(), reason="needs the CUDA extension, CuPy and a GPU")
@pytest.mark.parametrize("name", ["linear", "logistic", "relu", "leaky", "mish", "swish"])
def test_cuda_activation_matches_numpy(name):
    import cupy
    x = np.random.default_rng().normal(0, 4, 100003).astype(np.float32)
    device = cupy.asarray(x)
    _ext._cuda.activate(device.data.ptr, device.size, name, cupy.cuda.get_current_stream().ptr)
    softplus = np.where(x > 20, x, np.where(x < -20, np.exp(x), np.log1p(np.exp(x))))
    expected = {"linear": x, "logistic": 1 / (1 + np.exp(-x)), "relu": np.maximum(x, 0),
                "leaky": np.where(x > 0, x, 0.1 * x), "mish": x * np.tanh(softplus), "swish": x / (1 + np.exp(-x))}[name]
    np.testing.assert_allclose(device.get(), expected, rtol=1e-5, atol=1e-6)
