"""Every `darknet-py` verb, including those other modules register (COMMAND_MODULES), fed bad inputs: a missing
file, a directory instead of a file, an empty file, binary garbage, a bad number. Each ends with exactly one
line on stderr and exit code 2, never a traceback; `--debug` shows the traceback."""
import argparse
import os
import subprocess
import sys

import numpy as np
import pytest

from conftest import REPO, one_error_line
from darknet_py.cli import Number, build_parser, main


def leaf_commands(parser=None, path=()):
    """[(argv prefix, parser)] for every runnable command, walking nested verbs (`classifier train`)."""
    parser = parser or build_parser()
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [(list(path), parser)]
    return [leaf for name, sub in subs[0].choices.items() for leaf in leaf_commands(sub, path + (name,))]


def numeric(action):
    return action.type in (int, float) or isinstance(action.type, Number)


def command_argv(prefix, parser, path_value, number="3"):
    """argv for one command: every file-like positional (and required option) set to `path_value`, numbers
    to `number`. Optional positionals are given too (`detector test` would otherwise prompt on stdin)."""
    argv = list(prefix)
    for action in parser._actions:
        if action.dest == "help" or action.option_strings and not action.required:
            continue
        value = number if numeric(action) else path_value
        argv += [action.option_strings[0], value] if action.option_strings else [value]
    return argv


@pytest.fixture(scope="module")
def bad_paths(tmp_path_factory):
    folder = tmp_path_factory.mktemp("bad-inputs")
    (folder / "empty").write_bytes(b"")
    rng = np.random.default_rng(8)
    (folder / "garbage").write_bytes(b"[net]\x00\xff\xfe" + rng.integers(0, 256, 3000, dtype=np.uint8).tobytes())
    (folder / "dir").mkdir()
    return {"missing": str(folder / "missing.file"), "directory": str(folder / "dir"),
            "empty": str(folder / "empty"), "garbage": str(folder / "garbage")}


def assert_one_line_error(capsys, argv):
    code = main(argv)
    out, err = capsys.readouterr()
    assert code == 2, f"{argv}: exit code {code}; stderr {err!r}"
    assert "Traceback" not in out
    return one_error_line(err)


COMMANDS = [" ".join(prefix) for prefix, _ in leaf_commands()]


def test_every_registered_verb_is_covered():
    """The walk finds the verbs cli.py and the feature modules register (so new verbs are tested too)."""
    assert {"ops", "partial", "info"} <= set(COMMANDS)


@pytest.mark.parametrize("command", COMMANDS)
@pytest.mark.parametrize("kind", ["missing", "directory", "empty", "garbage"])
def test_bad_files_are_one_line_errors(capsys, bad_paths, command, kind):
    prefix, parser = next((p, q) for p, q in leaf_commands() if " ".join(p) == command)
    argv = command_argv(prefix, parser, bad_paths[kind])
    if argv == prefix:
        argv += ["--format", kind]          # a verb without files (info): a bad choice instead
    message = assert_one_line_error(capsys, argv)
    if kind == "missing" and len(argv) > len(prefix) + 2:
        assert "missing.file" in message, message


@pytest.mark.parametrize("command", COMMANDS)
def test_bad_numbers_are_one_line_errors(capsys, bad_paths, command):
    prefix, parser = next((p, q) for p, q in leaf_commands() if " ".join(p) == command)
    numbers = [a for a in parser._actions if numeric(a)]
    if not numbers:
        pytest.skip(f"{command} takes no numbers")
    for action in numbers:
        argv = command_argv(prefix, parser, bad_paths["missing"])
        bad = "abc" if action.type is int else "x1"
        if action.option_strings and not action.required:
            argv += [action.option_strings[0], bad]
        else:
            argv[argv.index("3", len(prefix))] = bad
        message = assert_one_line_error(capsys, argv)
        assert bad in message, message


def test_output_path_that_is_a_directory(capsys, tmp_path):
    """partial with good inputs but a directory as the output: one line, and nothing left behind."""
    from darknet_py.weights import init_weights, save_weights
    from conftest import load_quiet
    cfg = REPO / "cfg" / "shapes-yolo-tiny.cfg"
    weights = tmp_path / "w.weights"
    save_weights(init_weights(load_quiet(cfg)), weights)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    message = assert_one_line_error(capsys, ["partial", str(cfg), str(weights), str(out_dir), "2"])
    assert str(out_dir) in message
    assert list(out_dir.iterdir()) == [] and sorted(p.name for p in tmp_path.iterdir()) == ["out", "w.weights"]


def test_process_level_no_traceback_and_debug_shows_it(bad_paths):
    argv = [sys.executable, "-m", "darknet_py", "ops", bad_paths["garbage"]]
    result = subprocess.run(argv, capture_output=True, text=True, cwd=REPO)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and "Traceback" not in result.stderr, result.stderr
    debug = subprocess.run(argv[:3] + ["--debug"] + argv[3:], capture_output=True, text=True, cwd=REPO)
    assert debug.returncode != 0 and "Traceback" in debug.stderr


def test_memory_refusal_through_the_cli_and_override(capsys, monkeypatch):
    argv = ["classifier", "predict", str(REPO / "cfg" / "digits.data"), str(REPO / "cfg" / "mixnet_tiny_digits.cfg"),
            str(REPO / "weights" / "mixnet_tiny_digits.weights"), str(REPO / "data" / "digits" / "samples" / "digit-3.png")]
    if not all(os.path.exists(p) for p in argv[2:]):
        pytest.skip("the shipped digits classifier is not in this checkout")
    monkeypatch.setenv("DARKNET_PY_MEMORY_LIMIT", "1K")
    message = assert_one_line_error(capsys, argv)
    assert "inference forward of 1" in message and "MiB available (DARKNET_PY_MEMORY_LIMIT=1K)" in message
    monkeypatch.delenv("DARKNET_PY_MEMORY_CHECK", raising=False)
    try:
        assert main(["--no-memory-check"] + argv) == 0
        assert "DARKNET_PY_MEMORY_CHECK" not in os.environ   # only for that run
    finally:
        os.environ.pop("DARKNET_PY_MEMORY_CHECK", None)
    assert capsys.readouterr().out
