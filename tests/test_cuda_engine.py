"""The CUDA engine through the Python API: device names, arrays staying on the device, weights moving there and
back, DLPack in and out, memory figures, and the errors of devices that cannot be used."""
import numpy as np
import pytest

import darknet_py
from darknet_py import DarknetError
from darknet_py.backend import get_ops
from darknet_py.weights import save_weights
from engines import engine_pair, host, net_cfg
from test_onnx_export import ForeignArray

CFG = net_cfg(12, 10, 3, ("convolutional", {"filters": 4, "size": 3, "stride": 1, "pad": 1, "batch_normalize": 1,
                                             "activation": "leaky"}),
              ("maxpool", {"size": 2, "stride": 2}),
              ("convolutional", {"filters": 5, "size": 1, "activation": "linear"}),
              ("avgpool", {}), ("softmax", {}))


def test_outputs_stay_on_the_device_and_match_the_cpu(tmp_path, cuda_device):
    cpu, gpu = engine_pair(tmp_path, CFG, cuda_device, batch=2)
    x = np.random.default_rng(0).uniform(size=(2, 3, 10, 12)).astype(np.float32)
    out = gpu.forward(x)
    # device arrays: CuPy on a GPU (under emulation NumPy arrays stand in for them)
    assert all(isinstance(layer.output, gpu.ops.xp.ndarray) for layer in gpu.layers)
    np.testing.assert_allclose(host(gpu.ops, out), cpu.forward(x), rtol=1e-5, atol=1e-7)


def test_dlpack_in_and_out(tmp_path, cuda_device):
    cpu, gpu = engine_pair(tmp_path, CFG, cuda_device, batch=1)
    x = np.random.default_rng(1).uniform(size=(1, 3, 10, 12)).astype(np.float32)
    out = gpu.forward(ForeignArray(gpu.ops.asarray(x)))
    back = gpu.ops.xp.from_dlpack(ForeignArray(out))            # the output exported without a copy
    np.testing.assert_allclose(host(gpu.ops, back), cpu.forward(x), rtol=1e-5, atol=1e-7)


def test_weights_move_to_the_device_and_save_back(tmp_path, cuda_device):
    cpu, gpu = engine_pair(tmp_path, CFG, cuda_device, batch=1)
    gpu.forward(np.zeros((1, 3, 10, 12), np.float32))
    device_type = type(gpu.ops.asarray(np.zeros(1, np.float32)))   # CuPy, or the emulation's DeviceArray
    assert all(type(a) is device_type for layer in gpu.layers for a in layer.weights.values())
    save_weights(gpu, tmp_path / "gpu.weights")
    save_weights(cpu, tmp_path / "cpu.weights")
    assert (tmp_path / "gpu.weights").read_bytes() == (tmp_path / "cpu.weights").read_bytes()


def test_available_memory_is_reported(cuda_ops):
    free = cuda_ops.available_memory()
    assert isinstance(free, int) and free > 0


@pytest.mark.parametrize("device, message", [
    ("cuda:x", "expected cuda, cuda:N"), ("gpu", "expected cpu, cuda, cuda:N or cuda-emulated"),
    ("cuda:99", None),
])
def test_unusable_devices_are_one_line_errors(device, message):
    with pytest.raises(DarknetError) as error:
        get_ops(device)
    text = str(error.value)
    assert "\n" not in text and device in text
    if message:
        assert message in text


def test_load_with_the_emulated_device(tmp_path):
    path = tmp_path / "t.cfg"
    path.write_text(CFG)
    net = darknet_py.load(path, quiet=True, device="cuda-emulated")
    assert net.ops.name == "cuda-emulated"


def test_layer_table_counts_the_cuda_engines_memory(capsys, shared):
    """`ops --device cuda`: the CUDA engine's plan (its im2col/partial-sum scratch, cuBLAS's workspace, no Winograd
    cache), each memory line the sum of its terms; the JSON has the same figures."""
    import json
    import re
    from darknet_py.cli import main
    from darknet_py.cuda_backend import CUBLAS_WORKSPACE_BYTES
    cfg = str(shared / "cfg" / "yolov4-tiny.cfg")
    assert main(["ops", cfg, "--device", "cuda"]) == 0
    out = capsys.readouterr().out
    lines = [line for line in out.splitlines() if line.startswith("Memory, ")]
    assert len(lines) == 2 and "Winograd" not in out and "GPU memory: arrays come from CuPy's pool" in out
    for line in lines:
        total, terms = re.match(r"Memory, .*?: ([\d.]+) MiB = (.*)$", line).groups()
        values = [float(v) for v in re.findall(r" ([\d.]+)(?: \+|$)", terms)]
        assert "cuBLAS workspace 32.0" in terms and sum(values) == pytest.approx(float(total), abs=0.2)
    assert main(["ops", cfg, "--device", "cuda", "--format", "json"]) == 0
    memory = json.loads(capsys.readouterr().out)["memory"]
    assert memory["device"] == "cuda-emulated"
    assert memory["reserved_mib"] == {"cuBLAS workspace": CUBLAS_WORKSPACE_BYTES / 2 ** 20}
    assert memory["inference"]["weight_cache_mib"] == 0


def test_detect_gives_the_cpu_engines_detections(cuda_device):
    """The shipped demo detector on its sample image: darknet's post-processing reads the heads' outputs back from
    the device and finds the same boxes."""
    from conftest import REPO
    weights, image = REPO / "weights" / "shapes-yolo-tiny.weights", REPO / "data" / "shapes" / "shapes_0001.jpg"
    found = {}
    for device in ("cpu", cuda_device):
        net = darknet_py.load(REPO / "cfg" / "shapes-yolo-tiny.cfg", weights=weights, quiet=True, device=device)
        found[device] = net.detect(image, names=["circle", "square", "triangle"])
    assert len(found["cpu"]) == 4
    for (name, prob, box), (want_name, want_prob, want_box) in zip(found[cuda_device], found["cpu"]):
        assert name == want_name and prob == pytest.approx(want_prob, abs=1e-5)
        np.testing.assert_allclose(box, want_box, atol=1e-3)
