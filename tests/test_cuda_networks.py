"""Whole networks on the CUDA engine against the CPU engine, at a reduced input size so that the emulation stays
quick: yolov4-tiny (96x96), efficientnet_b0 and our MixNet-M (128x128), batch 2, darknet's initial weights with
non-trivial BN statistics. Inference outputs of every layer within 1e-4 (relative to each output's largest value;
the engines use different algorithms: Winograd and fused C++ kernels on the CPU, im2col + GEMM and direct kernels on
CUDA); one training step: every layer's output, delta and weight gradient within 1e-4, then the weights after
darknet's SGD update."""
import numpy as np
import pytest

from conftest import REPO, SHARED
from engines import assert_close, compare_engines, engine_pair, host

NETWORKS = [
    pytest.param((SHARED / "cfg" / "yolov4-tiny.cfg", 96), id="yolov4-tiny"),
    pytest.param((SHARED / "cfg" / "efficientnet_b0.cfg", 128), id="efficientnet_b0"),
    pytest.param((REPO / "cfg" / "mixnet_m.cfg", 128), id="mixnet_m"),
]


@pytest.fixture
def pair(tmp_path, cuda_device, request):
    cfg, size = request.param
    if not cfg.exists():
        pytest.skip(f"{cfg} not found")
    return engine_pair(tmp_path, cfg, cuda_device, batch=2, width=size, height=size)


def image_batch(net, seed=0):
    return np.random.default_rng(seed).uniform(0, 1, (2, net.channels, net.height, net.width)).astype(np.float32)


@pytest.mark.parametrize("pair", NETWORKS, indirect=True)
def test_inference_matches_the_cpu_engine(pair):
    cpu, gpu = pair
    out = compare_engines(cpu, gpu, image_batch(cpu), train=False, backward=False, rtol=1e-4)
    assert np.isfinite(out).all()


@pytest.mark.parametrize("pair", NETWORKS, indirect=True)
def test_training_step_matches_the_cpu_engine(pair):
    cpu, gpu = pair
    compare_engines(cpu, gpu, image_batch(cpu, 1), train=True, backward=True, rtol=1e-4)
    before = {(layer.index, name): array.copy() for layer in cpu.layers for name, array in layer.weights.items()}
    for net in (cpu, gpu):
        # a rate that moves the weights well past the tolerance: constant 0.1 from the first iteration on
        net.options.burn_in, net.options.policy, net.options.learning_rate = 0, "constant", 0.1
        net.seen = net.options.mini_batch * net.options.subdivisions
        net.update()
    for mine, theirs in zip(gpu.layers, cpu.layers):
        for name, array in theirs.weights.items():
            assert_close(host(gpu.ops, mine.weights[name]), array, 1e-4, f"layer {theirs.index} {name} after update")
    moved = max(float(np.abs(layer.weights["weights"] - before[layer.index, "weights"]).max() /
                      np.abs(before[layer.index, "weights"]).max())
                for layer in cpu.layers if "weights" in layer.weights)
    assert moved > 1e-3, "the update left the weights (almost) unchanged: the comparison above proves nothing"


@pytest.fixture(scope="module")
def digits(tmp_path_factory):
    from darknet_py.datasets import make_digits
    return make_digits(tmp_path_factory.mktemp("digits"))


def test_classifier_training_gives_the_cpu_loss_curve(digits, tmp_path, cuda_device):
    """`classifier train` on the digits for a few iterations: the same loss at every iteration on both engines
    (same initial weights, same augmented batches, same dropout masks)."""
    import io
    from test_classifier import DIGITS_CFG, LINE, data_file
    from darknet_py.classifier import train_classifier
    curves = {}
    for device in ("cpu", cuda_device):
        folder = tmp_path / device
        folder.mkdir()
        out = io.StringIO()
        train_classifier(data_file(digits, folder), DIGITS_CFG, max_batches=4, device=device, seed=4, progress=False,
                         out=out, chart=None)
        curves[device] = [float(m[2]) for m in LINE.findall(out.getvalue())]
    assert len(curves["cpu"]) == 4
    np.testing.assert_allclose(curves[cuda_device], curves["cpu"], rtol=1e-4)
