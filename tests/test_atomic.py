"""atomic.write_atomic, behind every file we save (weights, ONNX, predictions.jpg, -out JSON)."""
import os
import stat

import pytest

from darknet_py.atomic import write_atomic


def test_a_failed_write_keeps_the_old_file_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "out.bin"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError("disk full")
    with pytest.raises(OSError, match="disk full"):
        write_atomic(target, fail)
    assert target.read_bytes() == b"old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.bin"]


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permission bits")
def test_new_file_has_the_content_and_the_mode_open_gives(tmp_path):
    previous = os.umask(0o027)
    try:
        (tmp_path / "reference").open("wb").close()
        write_atomic(tmp_path / "out.bin", lambda f: f.write(b"new"))
    finally:
        os.umask(previous)
    assert (tmp_path / "out.bin").read_bytes() == b"new"
    assert stat.S_IMODE((tmp_path / "out.bin").stat().st_mode) == stat.S_IMODE((tmp_path / "reference").stat().st_mode)


def test_an_error_class_turns_oserror_into_its_one_line_message(tmp_path):
    from darknet_py.errors import DarknetWeightsError
    target = tmp_path / "missing" / "out.weights"
    with pytest.raises(DarknetWeightsError, match=r"^.*out\.weights: cannot write weights file: No such file"):
        write_atomic(target, b"new", what="weights file", error=DarknetWeightsError)
    assert not (tmp_path / "missing").exists()
