"""`darknet-py benchmark`: the figures it prints are those of real runs (every layer timed, times consistent with the
whole iteration), on the CPU and on the CUDA engine."""
import json

import pytest

from darknet_py.cli import main

from conftest import REPO

CFG = REPO / "cfg" / "mixnet_tiny_digits.cfg"


@pytest.mark.parametrize("train", [False, True])
def test_benchmark_json_has_every_layer(capsys, train):
    argv = ["benchmark", str(CFG), "--iterations", "2", "--warmup", "1", "--layers", "--format", "json", "--batch", "2"]
    assert main(argv + (["--train"] if train else [])) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["mode"] == ("training" if train else "inference") and result["batch"] == 2
    assert result["ms_min"] <= result["ms"] <= result["ms_max"]
    assert result["images_per_s"] == pytest.approx(2000 / result["ms"])
    assert result["peak_bytes"] > 0
    layers = result["layers"]
    assert [entry["index"] for entry in layers] == list(range(len(layers))) and len(layers) > 20
    assert all(entry["forward_ms"] > 0 for entry in layers)
    assert all(("backward_ms" in entry) == train for entry in layers)
    conv = next(entry for entry in layers if entry["type"] == "convolutional")
    assert conv["gflop_s"] == pytest.approx(conv["bflops"] / conv["forward_ms"] * 1000)


def test_benchmark_table_on_the_emulated_cuda_engine(capsys):
    assert main(["benchmark", str(CFG), "--iterations", "1", "--warmup", "0", "--device", "cuda-emulated",
                 "--layers"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert "on cuda-emulated, inference, batch 1, 32x32" in lines[0] and "ms/iteration" in lines[0]
    assert lines[1].split()[:3] == ["layer", "type", "BFLOPS"]
    assert len(lines) > 20
