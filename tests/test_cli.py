"""The command line: `darknet-py ops` formats, one-line errors with exit code 2, `python -m darknet_py`."""
import json
import subprocess
import sys

import pytest
import yaml

from conftest import REPO
from darknet_py.cli import main

DEMO = str(REPO / "cfg" / "shapes-yolo-tiny.cfg")


def run(capsys, *argv):
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_ops_table(capsys):
    code, out, err = run(capsys, "ops", DEMO)
    assert code == 0 and err == ""
    assert out.splitlines()[0].startswith("   layer   filters  size/strd(dil)      input                output")
    assert "Total BFLOPS" in out and "Total FMA" in out and "Memory, training at batch 32" in out


def test_ops_json_and_yaml_agree(capsys):
    code, out, _ = run(capsys, "ops", DEMO, "--format", "json", "--width", "320", "--height", "320")
    info = json.loads(out)
    assert code == 0 and info["input"] == [320, 320, 3]
    assert set(info) >= {"layers", "total_bflops", "total_fma_g", "params", "memory"}
    assert set(info["layers"][0]) >= {"index", "type", "input", "output", "bflops", "fma_g", "params", "output_mib"}
    assert info["layers"][0]["output"] == [160, 160, 16]
    # BFLOPS count 2 FLOPs per multiply-add: for convolutions the columns differ by exactly 2x
    conv = info["layers"][0]
    assert abs(conv["bflops"] - 2 * conv["fma_g"]) < 1e-6
    assert info["params"] == sum(layer["params"] for layer in info["layers"])
    code, out, _ = run(capsys, "ops", DEMO, "--format", "yaml", "--width", "320", "--height", "320")
    assert yaml.safe_load(out) == info


@pytest.mark.parametrize("argv, words", [
    (["ops", "missing.cfg"], "missing.cfg: cannot read cfg file"),
    (["ops"], "the following arguments are required: cfg"),
    (["ops", DEMO, "--width", "-5"], "argument --width: expected an integer in 1..2147483647; got '-5'"),
    (["ops", DEMO, "--format", "xml"], "invalid choice"),
    (["nonsense"], "invalid choice"),
])
def test_errors_are_one_line_with_exit_code_2(capsys, argv, words):
    code, out, err = run(capsys, *argv)
    assert code == 2 and out == ""
    assert err.startswith("error: ") and err.count("\n") == 1 and words in err, err


def test_bad_cfg_error_names_file_and_line(capsys, tmp_path):
    cfg = tmp_path / "bad.cfg"
    cfg.write_text("[net]\nwidth=8\nheight=8\nchannels=3\n[convolutional]\nsize=three\n")
    code, _, err = run(capsys, "ops", str(cfg))
    assert code == 2 and f"{cfg}:6: [convolutional] (layer 0) size: expected an integer; got 'three'" in err


def test_debug_shows_traceback(tmp_path):
    from darknet_py import DarknetConfigError
    with pytest.raises(DarknetConfigError):
        main(["--debug", "ops", str(tmp_path / "missing.cfg")])


def test_python_m_runs_the_same_cli():
    result = subprocess.run([sys.executable, "-m", "darknet_py", "ops", DEMO, "--format", "json"],
                            capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 0 and json.loads(result.stdout)["total_bflops"] > 0
