"""The CUDA engine against the CPU engine on the same network: same cfg, same weights, same input; every layer's
output, and after backward every layer's delta and weight gradients, compared within a relative tolerance (relative
to the largest magnitude of the CPU array, so that sums which cancel do not make a tolerance meaningless)."""
import numpy as np

from conftest import load_quiet
from darknet_py.weights import init_weights


def net_cfg(width, height, channels, *sections, **net_options):
    """cfg text: [net] with the size (and net_options), then (section name, {option: value}) in order."""
    text = f"[net]\nwidth={width}\nheight={height}\nchannels={channels}\n"
    text += "".join(f"{k}={v}\n" for k, v in net_options.items())
    for name, options in sections:
        text += f"\n[{name}]\n" + "".join(f"{k}={v}\n" for k, v in options.items())
    return text


def randomize_weights(net, seed=0):
    """Darknet's initial weights (init_weights), then biases, BN scales and running statistics away from their
    trivial 0/1 values, so that every term of a layer's forward and backward shows."""
    init_weights(net, seed)
    rng = np.random.default_rng(seed + 1)
    for layer in net.layers:
        for name, array in layer.weights.items():
            if name in ("biases", "rolling_mean"):
                array[...] = rng.normal(0, 0.2, array.shape)
            elif name in ("scales", "rolling_variance"):
                array[...] = rng.uniform(0.5, 1.5, array.shape)
            elif layer.kind == "shortcut":
                array[...] = rng.uniform(0.2, 1.5, array.shape)
    return net


def engine_pair(tmp_path, cfg, device, seed=0, **load_options):
    """(CPU network, CUDA-engine network on `device`) of the cfg text or path `cfg`, with the same random weights
    and random generators."""
    path = cfg
    if isinstance(cfg, str) and "\n" in cfg:
        path = tmp_path / "net.cfg"
        path.write_text(cfg)
    cpu = randomize_weights(load_quiet(path, **load_options), seed)
    gpu = load_quiet(path, device=device, **load_options)
    for mine, theirs in zip(gpu.layers, cpu.layers):
        mine.weights = {name: array.copy() for name, array in theirs.weights.items()}
        if hasattr(theirs, "rng"):   # layers that draw random numbers (dropout mask seeds, crop offsets): same draws
            theirs.rng, mine.rng = (np.random.default_rng([seed, theirs.index]) for _ in range(2))
    return cpu, gpu


def host(ops, a):
    return None if a is None else np.asarray(ops.to_numpy(a))


def assert_close(got, want, rtol, what, scale=None):
    """max |got - want| <= rtol * max |want|, or rtol * `scale` when given (and the same shape, and NaN where want
    has NaN)."""
    got, want = np.asarray(got, dtype=np.float64), np.asarray(want, dtype=np.float64)
    assert got.shape == want.shape, f"{what}: shape {got.shape}, expected {want.shape}"
    nan = np.isnan(want)
    assert np.array_equal(np.isnan(got), nan), f"{what}: NaN at different places"
    if nan.all():
        return
    got, want = got[~nan], want[~nan]
    if scale is None:
        scale = float(np.abs(want).max()) if want.size else 0.0
    error = float(np.abs(got - want).max()) if want.size else 0.0
    assert error <= rtol * scale or error == 0.0, f"{what}: max error {error:.3g} over max |value| {scale:.3g} (rtol {rtol})"


def compare_engines(cpu, gpu, x, train=True, truth=None, rtol=1e-5, backward=True, seed=0):
    """Forward (and with `backward`, backward) of both networks on x; asserts every layer output, delta and weight
    gradient agree, and the loss when `truth` is given. Returns the CPU network's output."""
    out = cpu.forward(x, train=train, truth=truth)
    gpu.forward(x, train=train, truth=truth)
    ops = gpu.ops
    for mine, theirs in zip(gpu.layers, cpu.layers):
        assert_close(host(ops, mine.output), theirs.output, rtol, f"layer {theirs.index} {theirs.kind} output")
    if truth is not None:
        assert_close(float(gpu.cost), float(cpu.cost), rtol, "cost")
    if not backward:
        return out
    delta = None if truth is not None else np.random.default_rng(seed + 7).normal(size=out.shape).astype(np.float32)
    for net in (cpu, gpu):
        for layer in net.layers:
            layer.grads = {}
    dx_cpu = cpu.backward(delta)
    dx_gpu = gpu.backward(delta)
    for mine, theirs in zip(gpu.layers, cpu.layers):
        label = f"layer {theirs.index} {theirs.kind}"
        if theirs.delta is not None:
            assert_close(host(ops, mine.delta), theirs.delta, rtol, f"{label} delta")
        assert sorted(mine.grads) == sorted(theirs.grads), f"{label}: gradients {sorted(mine.grads)}, expected {sorted(theirs.grads)}"
        # A gradient that is a sum of many terms cancelling to ~0 (the biases of a convolution whose output a batch
        # normalization re-centres) carries the rounding of its terms: each weight gradient is compared on the scale
        # of the layer's largest weight gradient.
        scale = max((float(np.abs(grad).max()) for grad in theirs.grads.values() if grad.size), default=0.0)
        for name, grad in theirs.grads.items():
            assert_close(host(ops, mine.grads[name]), grad, rtol, f"{label} d{name}", scale=scale)
    if dx_cpu is not None:
        assert_close(host(ops, dx_gpu), dx_cpu, rtol, "input delta")
    return out
