"""The README's main job runs as written: its command (after `pip install . &&`) from the repository root; its
sample layer table is what `darknet-py ops` prints today; its Python API example runs; its ImageNet .data is
darknet's and its MixNet-M memory table is what `ops --batch` prints."""
import json
import os
import re
import shlex
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, gpu_available


def main_job_command():
    text = (REPO / "README.md").read_text()
    section = text[text.index("Install and run the main job"):]
    block = re.search(r"```\n(.*?)\n```", section, re.S).group(1).strip()
    install, _, command = block.partition(" && ")
    assert install == "pip install ."
    return shlex.split(command)


def test_readme_main_job_detects_the_shapes_of_its_sample_image():
    argv = main_job_command()
    assert argv[:3] == ["darknet-py", "detector", "test"]
    done = subprocess.run([sys.executable, "-m", "darknet_py"] + argv[1:], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Total BFLOPS" in done.stderr                   # darknet's table, printed at load to stderr as darknet does
    lines = done.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if "Predicted in" in line)
    detections = [line.split(":")[0] for line in lines[start + 1:] if re.fullmatch(r"\w+: \d+%", line)]
    # data/shapes/shapes_0001.jpg shows two triangles (one cut by the border) and two squares
    assert sorted(detections) == ["square", "square", "triangle", "triangle"]
    assert (REPO / "predictions.jpg").stat().st_size > 0


@pytest.mark.skipif(gpu_available(), reason="this machine has a GPU: -gpus 0 runs there")
def test_gpus_flag_without_a_gpu_engine_warns_and_runs_on_the_cpu():
    """`-gpus 0` (darknet's flag) must neither fail nor be silently ignored where no GPU can run it."""
    argv = main_job_command()[1:] + ["-gpus", "0"]
    done = subprocess.run([sys.executable, "-m", "darknet_py"] + argv, cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    assert "warning: -gpus 0:" in done.stderr and "running on the CPU" in done.stderr
    assert "Predicted in" in done.stdout


def test_readme_sample_table_is_what_ops_prints(shared):
    """Every line of the README's yolov4-tiny table sample (its '...' aside) appears in today's output: the
    memory figures follow the engine (Winograd cache, scratch), so a stale sample fails here."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("Output for Darknet's `yolov4-tiny.cfg`"):]
    sample = [line for line in re.search(r"```\n(.*?)\n```", section, re.S).group(1).splitlines() if line != "..."]
    cpus = sorted(os.sched_getaffinity(0))
    if len(cpus) < 2:
        pytest.skip("the sample was printed with 2 kernel threads (per-thread scratch); this machine has 1 CPU")
    done = subprocess.run([sys.executable, "-m", "darknet_py", "ops", str(shared / "cfg" / "yolov4-tiny.cfg")],
                          capture_output=True, text=True, timeout=120,
                          preexec_fn=lambda: os.sched_setaffinity(0, cpus[:2]))
    assert done.returncode == 0, done.stderr
    printed = set((done.stdout + done.stderr).splitlines())
    missing = [line for line in sample if line not in printed]
    assert not missing, f"README sample lines not printed by `darknet-py ops`: {missing}"


def readme_block(heading, language=""):
    """The first fenced block (```language) after `heading` in the README."""
    text = (REPO / "README.md").read_text()
    return re.search(rf"```{language}\n(.*?)\n```", text[text.index(heading):], re.S).group(1)


def test_readme_python_api_example_runs(capsys, monkeypatch):
    """The Python API block, run from the repository root: the shipped detector finds the sample's shapes, and a
    network with darknet's initialisation runs a forward."""
    monkeypatch.chdir(REPO)
    scope = {}
    exec(readme_block("## Python API", "python"), scope)
    out = capsys.readouterr().out
    assert "Total BFLOPS" in out and "0 convolutional (128, 128, 3) -> (64, 64, 16) " in out
    assert sorted(name for name, _, _ in scope["net"].detect("data/shapes/shapes_0001.jpg",
                                                             names=["circle", "square", "triangle"])) == \
        ["square", "square", "triangle", "triangle"]
    assert scope["out"].shape[0] == 1 and bool(np.isfinite(scope["out"]).all())


def test_readme_imagenet_data_is_darknets(shared):
    """The README's imagenet1k.data is darknet's, `backup` aside."""
    def options(text):
        pairs = (line.split("=", 1) for line in text.splitlines() if "=" in line)
        return {key.strip(): value.strip() for key, value in pairs}
    ours = options(readme_block("## MixNet-M on ImageNet"))
    theirs = options((shared / "cfg" / "imagenet1k.data").read_text())
    assert ours.pop("backup") == "backup/" and theirs.pop("backup") == "/home/pjreddie/backup/"
    assert ours == theirs


MIXNET_MEMORY = """
import json, os, sys
os.sched_setaffinity(0, sorted(os.sched_getaffinity(0))[:2])
import darknet_py
net = darknet_py.Network(sys.argv[1])
print(json.dumps({b: [net.table(batch=b)["memory"][m]["total_mib"] for m in ("inference", "training")]
                  for b in map(int, sys.argv[2:])}))
"""


def test_readme_mixnet_memory_table_is_what_ops_prints():
    """The README's memory per mini-batch for MixNet-M, against `ops --batch B`'s figures (2 kernel threads, as
    printed there: the inference scratch is per thread)."""
    text = (REPO / "README.md").read_text()
    section = text[text.index("## MixNet-M on ImageNet"):text.index("## Compatibility notes")]
    rows = {int(b): (float(i), float(t)) for b, i, t in re.findall(r"^\| (\d+) \| ([\d.]+) \| ([\d.]+) \|$", section,
                                                                     re.M)}
    assert sorted(rows) == [1, 8, 16, 32, 64, 128]
    if len(os.sched_getaffinity(0)) < 2:
        pytest.skip("the table was printed with 2 kernel threads; this machine has 1 CPU")
    done = subprocess.run([sys.executable, "-c", MIXNET_MEMORY, str(REPO / "cfg" / "mixnet_m.cfg"), *map(str, rows)],
                          capture_output=True, text=True, timeout=300, cwd=REPO)
    assert done.returncode == 0, done.stderr
    printed = {int(b): tuple(round(v, 1) for v in figures) for b, figures in json.loads(done.stdout).items()}
    assert printed == rows
