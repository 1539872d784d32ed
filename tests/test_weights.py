"""Darknet .weights reading and writing: byte-identical round trips of files darknet wrote, clear errors."""
import os
import stat
import warnings

import numpy as np
import pytest

from conftest import load_quiet, one_error_line
from darknet_py import DarknetWeightsError
from darknet_py.cli import main
from darknet_py.weights import DarknetWeightsWarning, init_weights, load_weights, partial, save_weights

TINY = """[net]
width=8
height=8
channels=3
[convolutional]
batch_normalize=1
filters=4
size=3
pad=1
activation=leaky
[convolutional]
filters=4
size=3
groups=2
pad=1
activation=linear
[shortcut]
from=-2
weights_type=per_channel
weights_normalization=softmax
[batchnorm]
[connected]
output=5
batch_normalize=1
activation=relu
[connected]
output=3
activation=linear
"""


@pytest.mark.parametrize("name", ["efficientnet_b0", "yolov4-tiny"])
def test_darknet_files_round_trip_byte_identical(shared, tmp_path, name):
    source = shared / "weights" / f"{name}.rand.weights"
    net = load_quiet(shared / "cfg" / f"{name}.cfg", weights=source)
    assert net.version == (0, 2, 5)
    out = tmp_path / "out.weights"
    save_weights(net, out)
    assert out.read_bytes() == source.read_bytes()
    # darknet's own random init: BN scales 1, rolling mean 0, rolling variance 0
    conv = net.layers[0]
    assert (conv.weights["scales"] == 1).all() and (conv.weights["rolling_variance"] == 0).all()


def tiny_net(tmp_path):
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY)
    return load_quiet(cfg)


def test_every_layer_type_round_trips(tmp_path):
    net = init_weights(tiny_net(tmp_path), seed=3)
    for layer in net.layers:   # make every array distinct so that a swapped order would show
        for name in layer.weights:
            layer.weights[name] = np.random.default_rng(layer.index).normal(size=layer.weights[name].shape).astype(np.float32)
    path = tmp_path / "t.weights"
    save_weights(net, path)
    floats = sum(layer.weight_floats for layer in net.layers)
    assert path.stat().st_size == 20 + 4 * floats
    other = load_quiet(tmp_path / "tiny.cfg", weights=path)
    for a, b in zip(net.layers, other.layers):
        assert a.weights.keys() == b.weights.keys()
        for name in a.weights:
            np.testing.assert_array_equal(a.weights[name], b.weights[name])
    assert [len(l.weight_layout()) for l in net.layers] == [5, 2, 1, 4, 5, 2]


def test_truncated_file_names_the_layer_and_bytes(tmp_path):
    net = init_weights(tiny_net(tmp_path))
    path = tmp_path / "t.weights"
    save_weights(net, path)
    data = path.read_bytes()
    cut = 20 + 4 * (net.layers[0].weight_floats + 3)   # inside layer 1
    path.write_bytes(data[:cut])
    fresh = tiny_net(tmp_path)
    with pytest.raises(DarknetWeightsError) as e:
        load_weights(fresh, path)
    message = str(e.value)
    assert "layer 1 [convolutional]" in message and "tiny.cfg:11" in message and "expected 16 bytes, 12 left" in message
    assert all(not layer.weights for layer in fresh.layers), "nothing may be loaded from a truncated file"


def test_padded_file_and_nan_warn(tmp_path):
    net = init_weights(tiny_net(tmp_path))
    path = tmp_path / "t.weights"
    save_weights(net, path)
    path.write_bytes(path.read_bytes() + b"\0" * 8)
    with pytest.warns(DarknetWeightsWarning, match="8 bytes .2 floats. left over"):
        load_weights(tiny_net(tmp_path), path)
    strict = tiny_net(tmp_path)
    with pytest.raises(DarknetWeightsError, match=r"8 bytes .2 floats. left over .*the weights do not fit .*tiny"):
        load_weights(strict, path, strict=True)
    assert all(not layer.weights for layer in strict.layers), "a refused file loads nothing"
    net.layers[4].weights["weights"][0, 0] = np.nan
    save_weights(net, path)
    with pytest.warns(DarknetWeightsWarning, match=r"layer 4 \[connected\].* weights has 1 NaN/Inf"):
        load_weights(tiny_net(tmp_path), path)


@pytest.mark.parametrize("content, words", [(b"", "expected a header of at least 16 bytes; got 0"),
                                            (b"\0" * 10, "got 10 bytes"),
                                            (np.array([0, 2, 5], np.int32).tobytes() + b"\0" * 6, "needs 20 bytes")])
def test_bad_headers(tmp_path, content, words):
    path = tmp_path / "bad.weights"
    path.write_bytes(content)
    with pytest.raises(DarknetWeightsError, match=words):
        load_weights(tiny_net(tmp_path), path)


def test_old_header_with_32_bit_seen(tmp_path):
    net = init_weights(tiny_net(tmp_path))
    net.version, net.seen = (0, 1, 0), 12345
    path = tmp_path / "old.weights"
    save_weights(net, path)
    assert path.stat().st_size == 16 + 4 * sum(l.weight_floats for l in net.layers)
    other = load_weights(tiny_net(tmp_path), path)
    assert other.seen == 12345 and other.version == (0, 1, 0)


def test_transposed_connected_weights_for_version_over_1000(tmp_path):
    net = init_weights(tiny_net(tmp_path))
    net.version = (0, 1001, 0)
    path = tmp_path / "tr.weights"
    save_weights(net, path)
    raw = np.fromfile(path, np.float32, offset=20)
    fc = net.layers[4]
    start = sum(l.weight_floats for l in net.layers[:4]) + 5
    stored = raw[start:start + fc.units * fc.inputs].reshape(fc.inputs, fc.units)
    np.testing.assert_array_equal(stored, fc.weights["weights"].T)
    np.testing.assert_array_equal(load_weights(tiny_net(tmp_path), path).layers[4].weights["weights"], fc.weights["weights"])


def test_partial_keeps_first_layers_and_resets_seen(tmp_path, capsys):
    net = init_weights(tiny_net(tmp_path))
    net.seen = 640
    full = tmp_path / "full.weights"
    save_weights(net, full)
    out = tmp_path / "part.weights"
    assert main(["partial", str(tmp_path / "tiny.cfg"), str(full), str(out), "2"]) == 0
    floats = net.layers[0].weight_floats + net.layers[1].weight_floats
    assert out.stat().st_size == 20 + 4 * floats
    assert out.read_bytes()[20:] == full.read_bytes()[20:20 + 4 * floats]
    reread = load_weights(tiny_net(tmp_path), out, cutoff=2)
    assert reread.seen == 0


def test_missing_weights_file_is_one_line_cli_error(tmp_path, capsys):
    tiny_net(tmp_path)
    code = main(["partial", str(tmp_path / "tiny.cfg"), str(tmp_path / "none.weights"), str(tmp_path / "o"), "1"])
    err = capsys.readouterr().err
    assert code == 2 and "none.weights: cannot read weights file" in one_error_line(err)
    assert not (tmp_path / "o").exists()


def test_save_without_weights_is_an_error(tmp_path):
    with pytest.raises(DarknetWeightsError, match="layer 0 .* no 'biases' to save"):
        save_weights(tiny_net(tmp_path), tmp_path / "x.weights")
    assert not (tmp_path / "x.weights").exists()


@pytest.mark.skipif(not hasattr(os, "fchmod"), reason="POSIX permission bits")
@pytest.mark.parametrize("umask", [0o022, 0o077, 0o002, 0o000])
@pytest.mark.parametrize("umask_source", ["proc", "os.umask"])
def test_saved_file_mode_is_what_open_gives(tmp_path, monkeypatch, umask, umask_source):
    """mkstemp makes 0600 files; the renamed .weights must have the mode a plain open() would give it."""
    import darknet_py.atomic as atomic_module
    if umask_source == "os.umask":       # the fallback where /proc/self/status cannot be read
        monkeypatch.setattr(atomic_module, "open", lambda *a, **k: (_ for _ in ()).throw(OSError("no /proc")),
                            raising=False)
    net = init_weights(tiny_net(tmp_path))
    previous = os.umask(umask)
    try:
        reference = tmp_path / "reference"
        reference.open("wb").close()
        save_weights(net, tmp_path / "new.weights")
        save_weights(net, tmp_path / "new.weights")      # replacing an existing file: the same mode
        assert os.umask(umask) == umask                  # the fallback put the umask back
    finally:
        os.umask(previous)
    expected = stat.S_IMODE(reference.stat().st_mode)
    assert expected == 0o666 & ~umask
    assert stat.S_IMODE((tmp_path / "new.weights").stat().st_mode) == expected
