"""Batch normalization kernels (csrc/cuda/batchnorm.cu) and the layers that use them in the CUDA engine.

Kernels against float64 NumPy references on shapes that cut the two-stage reductions every way: odd channel counts,
spatial sizes that are no multiple of a block, several chunks per channel with a partial last one, batch 1 with
spatial > 1, spatial 1 with batch > 1 ([connected]), many short channels (several reduction groups per block), and a
large mean over a small variance. Layers: the CUDA engine against the CPU engine (compare_engines)."""
import numpy as np
import pytest

from darknet_py.activations import activate, activate_backward
from darknet_py.backend import BN_EPSILON, BN_MOMENTUM, NumpyOps
from engines import assert_close, compare_engines, engine_pair, host, net_cfg

# (batch, channels, spatial...) — chunks of a channel hold 256 to 2048 values (csrc/cuda/batchnorm.cu)
SHAPES = [
    (2, 5, 3, 7),       # odd everything, one chunk, one warp per channel
    (1, 3, 37, 41),     # batch 1, 1517 values per channel: one 256-thread group
    (3, 3, 29, 31),     # 2697 values per channel: two chunks, the last one partial
    (2, 4, 13, 13),     # 338 values: groups of 64 threads, four per block
    (64, 7),            # [connected]: spatial 1, batch 64
    (2, 300),           # 300 channels of 2 values: eight groups per block, a partial last block
    (2, 1, 1, 1),       # the smallest training batch
]
ACTIVATIONS = ["linear", "leaky", "mish", "logistic", "normalize_channels_softmax"]


def sample(shape, seed, loc=0.0, spread=1.0):
    rng = np.random.default_rng(seed)
    channels = shape[1]
    per_channel = (1, channels) + (1,) * (len(shape) - 2)
    centre = loc + rng.normal(0, 2, channels).reshape(per_channel)
    return (centre + spread * rng.uniform(0.2, 3, channels).reshape(per_channel) * rng.normal(size=shape)).astype(
        np.float32)


def params(channels, seed):
    rng = np.random.default_rng(seed)
    return (rng.uniform(0.5, 1.5, channels).astype(np.float32), rng.normal(0, 0.3, channels).astype(np.float32),
            rng.normal(0, 0.5, channels).astype(np.float32), rng.uniform(0.5, 2, channels).astype(np.float32))


def axes_of(x):
    return (0,) + tuple(range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2)


def reference_forward(x, scales, biases, mean, variance, activation):
    """float64: activation((x - mean)/sqrt(variance + eps) * scales + biases) per channel, and x_hat."""
    _, per_channel = axes_of(x)
    x_hat = (x.astype(np.float64) - mean.reshape(per_channel)) / np.sqrt(variance.reshape(per_channel) + BN_EPSILON)
    z = x_hat * scales.reshape(per_channel).astype(np.float64) + biases.reshape(per_channel)
    return activate(z, activation, np), x_hat


def run_forward(ops, x, scales, biases, rolling_mean, rolling_variance, train, activation):
    """batchnorm_forward on `ops` arrays: (output, cache, rolling mean and variance after it) on the host."""
    mean, variance = ops.asarray(rolling_mean), ops.asarray(rolling_variance)
    out, cache = ops.batchnorm_forward(ops.asarray(x), ops.asarray(scales), ops.asarray(biases), mean, variance, train,
                                       activation)
    return host(ops, out), cache, host(ops, mean), host(ops, variance)


@pytest.mark.parametrize("shape", SHAPES, ids=str)
def test_training_statistics_normalize_and_rolling_update(cuda_ops, shape):
    x = sample(shape, 1)
    scales, biases, rolling_mean, rolling_variance = params(shape[1], 2)
    out, cache, new_mean, new_variance = run_forward(cuda_ops, x, scales, biases, rolling_mean, rolling_variance,
                                                     True, "leaky")
    axes, _ = axes_of(x)
    mean = x.astype(np.float64).mean(axis=axes)
    variance = x.astype(np.float64).var(axis=axes, ddof=1)      # darknet's 1/(M - 1)
    np.testing.assert_allclose(host(cuda_ops, cache.mean), mean, rtol=1e-6, atol=1e-6 * np.abs(x).max())
    np.testing.assert_allclose(host(cuda_ops, cache.inv_std), 1 / np.sqrt(variance + BN_EPSILON), rtol=2e-6)
    want, _ = reference_forward(x, scales, biases, mean, variance, "leaky")
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-5 * np.abs(want).max())
    np.testing.assert_allclose(new_mean, (1 - BN_MOMENTUM) * rolling_mean + BN_MOMENTUM * mean, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(new_variance, (1 - BN_MOMENTUM) * rolling_variance + BN_MOMENTUM * variance, rtol=1e-6)


@pytest.mark.parametrize("shape", [(2, 3, 30, 40), (1000, 2)], ids=str)
def test_large_mean_small_variance(cuda_ops, shape):
    """mean^2 / variance ~ 1e10: sums of squares would cancel; the chunks' own means as shifts keep the variance."""
    x = sample(shape, 3, loc=1000.0, spread=0.01)
    scales, biases, _, _ = params(shape[1], 4)
    zeros = np.zeros(shape[1], np.float32)     # rolling statistics from 0: after the update, .01 * the batch's
    out, cache, new_mean, new_variance = run_forward(cuda_ops, x, scales, biases, zeros, zeros, True, "linear")
    axes, _ = axes_of(x)
    mean = x.astype(np.float64).mean(axis=axes)
    variance = x.astype(np.float64).var(axis=axes, ddof=1)
    np.testing.assert_allclose(host(cuda_ops, cache.mean), mean, rtol=1e-7)
    np.testing.assert_allclose(new_mean, BN_MOMENTUM * mean, rtol=2e-7)
    np.testing.assert_allclose(new_variance, BN_MOMENTUM * variance, rtol=1e-5)
    np.testing.assert_allclose(1 / host(cuda_ops, cache.inv_std) ** 2 - BN_EPSILON, variance, rtol=1e-4)
    want, _ = reference_forward(x, scales, biases, host(cuda_ops, cache.mean), variance, "linear")
    # x - mean in float32 is exact here, so the output keeps float32 accuracy relative to the spread
    np.testing.assert_allclose(out, want, rtol=0, atol=1e-4 * np.abs(want).max())


@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(2, 5, 3, 7), (3, 9)], ids=str)
def test_inference_normalize(cuda_ops, shape, activation):
    x = sample(shape, 5)
    scales, biases, rolling_mean, rolling_variance = params(shape[1], 6)
    out, _, after_mean, after_variance = run_forward(cuda_ops, x, scales, biases, rolling_mean, rolling_variance,
                                                     False, activation)
    want, _ = reference_forward(x, scales, biases, rolling_mean, rolling_variance, activation)
    np.testing.assert_allclose(out, want, rtol=1e-5, atol=1e-6 * np.abs(want).max())
    np.testing.assert_array_equal(after_mean, rolling_mean)       # inference leaves them alone
    np.testing.assert_array_equal(after_variance, rolling_variance)


def reference_backward(x, delta, scales, biases, rolling_mean, rolling_variance, train, activation):
    """float64 gradients of batchnorm_forward (NumpyOps in float64; its backward is checked against finite
    differences below)."""
    ops = NumpyOps(np.float64)
    _, cache = ops.batchnorm_forward(ops.asarray(x), ops.asarray(scales), ops.asarray(biases),
                                     rolling_mean.astype(np.float64), rolling_variance.astype(np.float64), train,
                                     activation)
    return ops.batchnorm_backward(ops.asarray(delta), cache)


@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
@pytest.mark.parametrize("activation", ACTIVATIONS)
@pytest.mark.parametrize("shape", [(2, 5, 3, 7), (3, 3, 29, 31), (2, 4, 13, 13), (64, 7), (2, 300)], ids=str)
def test_backward(cuda_ops, shape, activation, train):
    x = sample(shape, 7)
    delta = np.random.default_rng(8).normal(size=shape).astype(np.float32)
    scales, biases, rolling_mean, rolling_variance = params(shape[1], 9)
    _, cache, _, _ = run_forward(cuda_ops, x, scales, biases, rolling_mean, rolling_variance, train, activation)
    dx, dscales, dbiases = cuda_ops.batchnorm_backward(cuda_ops.asarray(delta), cache)
    want = reference_backward(x, delta, scales, biases, rolling_mean, rolling_variance, train, activation)
    for got, ref, name in zip((dx, dscales, dbiases), want, ("dx", "dscales", "dbiases")):
        assert_close(host(cuda_ops, got), ref, 2e-5, name)


@pytest.mark.parametrize("activation", ["linear", "mish", "normalize_channels"])
@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
def test_numpy_backward_against_finite_differences(activation, train):
    """The float64 reference the kernels are checked against is the derivative of the forward (in training through
    the batch mean and the M - 1 variance)."""
    ops = NumpyOps(np.float64)
    shape = (3, 2, 2, 2)
    x = sample(shape, 10).astype(np.float64)
    delta = np.random.default_rng(11).normal(size=shape)
    scales, biases, rolling_mean, rolling_variance = (a.astype(np.float64) for a in params(2, 12))

    def loss(x, scales, biases):
        out, _ = ops.batchnorm_forward(x, scales, biases, rolling_mean.copy(), rolling_variance.copy(), train,
                                       activation)
        return float(np.sum(out * delta))

    _, cache = ops.batchnorm_forward(x, scales, biases, rolling_mean.copy(), rolling_variance.copy(), train, activation)
    grads = ops.batchnorm_backward(delta, cache)
    values = [x, scales, biases]
    for which, grad in enumerate(grads):
        numeric = np.empty_like(values[which])
        for i in np.ndindex(numeric.shape):
            args = [v.copy() for v in values]
            args[which][i] += 1e-6
            up = loss(*args)
            args[which][i] -= 2e-6
            numeric[i] = (up - loss(*args)) / 2e-6
        np.testing.assert_allclose(grad, numeric, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("shape", [(2, 5, 3, 7), (3, 3, 29, 31), (64, 7), (2, 300), (0, 3, 2, 2)], ids=str)
def test_channel_sum(cuda_ops, shape):
    x = sample(shape, 13) if shape[0] else np.zeros(shape, np.float32)
    got = host(cuda_ops, cuda_ops.channel_sum(cuda_ops.asarray(x)))
    want = x.astype(np.float64).sum(axis=axes_of(x)[0])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6 * max(1.0, np.abs(x).sum(axis=axes_of(x)[0]).max()))


def test_reductions_are_deterministic(cuda_ops):
    """Two stages, no atomics: the same input gives the same bits (a CUDA graph replay must too)."""
    x = sample((3, 3, 29, 31), 14)
    delta = np.random.default_rng(15).normal(size=x.shape).astype(np.float32)
    scales, biases, rolling_mean, rolling_variance = params(3, 16)
    runs = []
    for _ in range(2):
        out, cache, _, _ = run_forward(cuda_ops, x, scales, biases, rolling_mean, rolling_variance, True, "mish")
        grads = cuda_ops.batchnorm_backward(cuda_ops.asarray(delta), cache)
        runs.append([out] + [host(cuda_ops, a) for a in grads] + [host(cuda_ops, cuda_ops.channel_sum(cache.x))])
    for first, second in zip(*runs):
        np.testing.assert_array_equal(first, second)


def test_checks(cuda_ops):
    scales, biases, mean, variance = (cuda_ops.asarray(a) for a in params(3, 17))
    with pytest.raises(ValueError, match="at least 2 values per channel"):
        cuda_ops.batchnorm_forward(cuda_ops.zeros((1, 3)), scales, biases, mean, variance, True)
    with pytest.raises(ValueError, match="expected 4 values"):
        cuda_ops.batchnorm_forward(cuda_ops.zeros((2, 4, 2, 2)), scales, biases, mean, variance, True)
    _, cache = cuda_ops.batchnorm_forward(cuda_ops.zeros((2, 3, 2, 2)), scales, biases, mean, variance, True)
    with pytest.raises(ValueError, match="does not match"):
        cuda_ops.batchnorm_backward(cuda_ops.zeros((2, 3, 2, 3)), cache)


# -- layers: the CUDA engine against the CPU engine --------------------------------------------------------------------
def assert_rolling_statistics_equal(cpu, gpu):
    for mine, theirs in zip(gpu.layers, cpu.layers):
        for name in ("rolling_mean", "rolling_variance"):
            if name in theirs.weights:
                assert_close(host(gpu.ops, mine.weights[name]), theirs.weights[name], 1e-6,
                             f"layer {theirs.index} {name}")


@pytest.mark.parametrize("train", [True, False], ids=["train", "inference"])
def test_batchnorm_layer(tmp_path, cuda_device, train):
    # a [connected] after it: BN's dx sums to zero per channel, so a BN layer right before another would get a
    # delta whose sums are rounding noise
    cfg = net_cfg(7, 5, 3, ("batchnorm", {}), ("connected", dict(output=6, activation="leaky")))
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    x = np.random.default_rng(0).normal(size=(2, 3, 5, 7)).astype(np.float32)
    compare_engines(cpu, gpu, x, train=train)
    assert_rolling_statistics_equal(cpu, gpu)


@pytest.mark.parametrize("activation", ["leaky", "mish", "logistic", "linear", "normalize_channels"])
def test_connected_batch_normalize(tmp_path, cuda_device, activation):
    cfg = net_cfg(4, 3, 2, ("connected", dict(output=9, batch_normalize=1, activation=activation)),
                  ("connected", dict(output=5, activation="logistic")))
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    x = np.random.default_rng(1).normal(size=(5, 2, 3, 4)).astype(np.float32)
    compare_engines(cpu, gpu, x, train=True)
    assert_rolling_statistics_equal(cpu, gpu)
    compare_engines(cpu, gpu, x, train=False)


@pytest.mark.parametrize("activation", ["leaky", "mish", "logistic", "linear", "normalize_channels_softmax"])
def test_convolutional_batch_normalize(tmp_path, cuda_device, activation):
    """Training (forward, backward, rolling statistics), then inference with a backward (which recomputes the
    forward with the rolling statistics)."""
    cfg = net_cfg(11, 9, 3, ("convolutional", dict(filters=5, size=3, pad=1, batch_normalize=1, activation=activation)),
                  ("convolutional", dict(filters=4, size=3, stride=2, pad=1, batch_normalize=1, activation="swish")))
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    x = np.random.default_rng(2).normal(size=(3, 3, 9, 11)).astype(np.float32)
    compare_engines(cpu, gpu, x, train=True)
    assert_rolling_statistics_equal(cpu, gpu)
    compare_engines(cpu, gpu, x, train=False)


def test_convolutional_batch_normalize_several_chunks(tmp_path, cuda_device):
    """2697 values per channel: two chunks per channel in the statistics and the gradient sums."""
    cfg = net_cfg(31, 29, 2, ("convolutional", dict(filters=3, size=1, batch_normalize=1, activation="mish")))
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    x = np.random.default_rng(3).normal(size=(3, 2, 29, 31)).astype(np.float32)
    compare_engines(cpu, gpu, x, train=True)
    assert_rolling_statistics_equal(cpu, gpu)
