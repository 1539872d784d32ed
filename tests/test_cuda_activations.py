"""Activation kernels (csrc/cuda/activations.cu) and the GEMM (cuBLAS, or the emulation's host GEMM) against NumPy
float64 references, on odd shapes (partial blocks), under emulation and on a GPU where there is one."""
import numpy as np
import pytest

from darknet_py.activations import ACTIVATIONS, activate, activate_backward

SHAPES = [(2, 5, 3, 7), (1, 1, 1, 1), (3, 17, 1, 1), (1, 3, 16, 17), (2, 40)]


def sample(shape, seed):
    """Values around every kink of every activation (0, +-1, +-2, 4, 6, +-20) and a wide spread."""
    rng = np.random.default_rng(seed)
    x = rng.normal(0, 4, size=shape)
    kinks = np.array([0, 1, -1, -2, 4, -4, 6, 20, -20, 25, -25, 0.5, -0.5, 3.5])
    flat = x.reshape(-1)
    flat[: min(flat.size, kinks.size)] = kinks[: flat.size]
    return x.astype(np.float32)


def near_kink(x):
    """Values where float32 rounding of x may flip a derivative's branch against the float64 reference."""
    return np.isin(x, np.float32([0, 1, -1, -2, 4, -4, 6, 20, -20]))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_activation_forward_backward(cuda_ops, activation, shape):
    x = sample(shape, len(activation))
    dy = np.random.default_rng(1).normal(size=shape).astype(np.float32)
    got = np.asarray(cuda_ops.to_numpy(cuda_ops.activate(cuda_ops.asarray(x), activation)))
    want = activate(x.astype(np.float64), activation, np)
    np.testing.assert_allclose(got, want, rtol=2e-6, atol=2e-6 * max(1.0, np.abs(want).max()))
    grad = np.asarray(cuda_ops.to_numpy(cuda_ops.activate_backward(cuda_ops.asarray(x), cuda_ops.asarray(dy),
                                                                    activation)))
    want_grad = activate_backward(x.astype(np.float64), dy.astype(np.float64), activation, np)
    np.testing.assert_allclose(grad, want_grad, rtol=2e-5, atol=2e-6 * max(1.0, np.abs(want_grad).max()))


@pytest.mark.parametrize("activation", ["leaky", "mish", "logistic", "normalize_channels_softmax"])
@pytest.mark.parametrize("with_scale", [True, False])
def test_affine_activation_in_place(cuda_ops, activation, with_scale):
    rng = np.random.default_rng(3)
    z = rng.normal(size=(2, 6, 5, 3)).astype(np.float32)
    scale = rng.uniform(0.5, 2, 6).astype(np.float32) if with_scale else None
    shift = rng.normal(size=6).astype(np.float32)
    arr = cuda_ops.asarray(z)
    out = cuda_ops.affine_activation(arr, None if scale is None else cuda_ops.asarray(scale), cuda_ops.asarray(shift),
                                     activation)
    pre = z.astype(np.float64) * (1 if scale is None else scale.reshape(1, -1, 1, 1)) + shift.reshape(1, -1, 1, 1)
    np.testing.assert_allclose(cuda_ops.to_numpy(out), activate(pre, activation, np), rtol=2e-6, atol=2e-6)


def test_activate_in_place_on_a_contiguous_slice(cuda_ops):
    z = np.random.default_rng(4).normal(size=(3, 4, 5)).astype(np.float32)
    arr = cuda_ops.asarray(z)
    cuda_ops.activate_(arr[1], "logistic")
    want = z.astype(np.float64)
    want[1] = activate(want[1], "logistic", np)
    np.testing.assert_allclose(cuda_ops.to_numpy(arr), want, rtol=2e-6, atol=1e-7)


@pytest.mark.parametrize("m, n, k, batch_a, batch_b", [
    (1, 1, 1, 1, 1), (7, 5, 3, 2, 2), (33, 17, 65, 1, 3), (4, 300, 9, 3, 1), (64, 1, 128, 2, 2), (5, 6, 0, 1, 1)])
@pytest.mark.parametrize("trans_a, trans_b", [(False, False), (True, False), (False, True), (True, True)])
def test_gemm_against_numpy(cuda_ops, m, n, k, batch_a, batch_b, trans_a, trans_b):
    rng = np.random.default_rng(m * n + k)
    batch = max(batch_a, batch_b)
    a = rng.normal(size=(batch_a,) + ((k, m) if trans_a else (m, k))).astype(np.float32)
    b = rng.normal(size=(batch_b,) + ((n, k) if trans_b else (k, n))).astype(np.float32)
    c = rng.normal(size=(batch, m, n)).astype(np.float32)
    opa = a.transpose(0, 2, 1) if trans_a else a
    opb = b.transpose(0, 2, 1) if trans_b else b
    want = 0.5 * (opa.astype(np.float64) @ opb) + 2.0 * c
    out = cuda_ops.asarray(c)
    cuda_ops.gemm(cuda_ops.asarray(a), cuda_ops.asarray(b), out, trans_a, trans_b, alpha=0.5, beta=2.0)
    np.testing.assert_allclose(cuda_ops.to_numpy(out), want, rtol=1e-5, atol=1e-5 * max(1, np.abs(want).max()))


def test_gemm_beta_zero_ignores_nan_in_the_output(cuda_ops):
    a, b = np.ones((2, 3), np.float32), np.ones((3, 4), np.float32)
    out = cuda_ops.asarray(np.full((2, 4), np.nan, np.float32))
    cuda_ops.gemm(cuda_ops.asarray(a), cuda_ops.asarray(b), out)
    np.testing.assert_array_equal(cuda_ops.to_numpy(out), np.full((2, 4), 3, np.float32))


def test_gemm_rejects_mismatched_shapes(cuda_ops):
    with pytest.raises(ValueError, match="do not match"):
        cuda_ops.gemm(cuda_ops.zeros((2, 3)), cuda_ops.zeros((4, 5)), cuda_ops.zeros((2, 5)))
    with pytest.raises(ValueError, match="contiguous float32"):
        cuda_ops.gemm(cuda_ops.zeros((3, 2)).T, cuda_ops.zeros((3, 5)), cuda_ops.zeros((2, 5)))
