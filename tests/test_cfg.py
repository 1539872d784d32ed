"""cfg parsing: darknet's syntax, defaults, and one-line errors with file:line for bad input."""
import warnings

import pytest

import darknet_py
from darknet_py import DarknetConfigError, DarknetConfigWarning
from darknet_py.cfg import parse_cfg_text

NET = "[net]\nwidth=32\nheight=32\nchannels=3\n"


def build(tmp_path, body, name="t.cfg", **kwargs):
    path = tmp_path / name
    path.write_bytes(body.encode())
    return darknet_py.load(path, quiet=True, **kwargs)


def error_of(tmp_path, body):
    with pytest.raises(DarknetConfigError) as e:
        build(tmp_path, body)
    message = str(e.value)
    assert "\n" not in message
    return message


def test_syntax_whitespace_crlf_comments(tmp_path):
    body = ("# comment\r\n[network]\r\n width = 32 \r\nheight=32\r\n\tchannels\t=3\r\n; other comment\r\n\r\n"
            "[convolutional]\r\nfilters = 8 # trailing comment\r\nsize=3\r\npad=1\r\nstride=2\r\nactivation=leaky\r\n")
    net = build(tmp_path, body)
    conv = net.layers[0]
    assert (conv.filters, conv.size, conv.padding, conv.stride_x, conv.activation) == (8, 3, 1, 2, "leaky")
    assert conv.output_shape == (16, 16, 8)


def test_darknet_defaults(tmp_path):
    net = build(tmp_path, NET + "[convolutional]\n[maxpool]\n[route]\nlayers=-2\n[shortcut]\nfrom=-3\n")
    conv, pool, route, short = net.layers
    assert (conv.filters, conv.size, conv.stride_x, conv.padding, conv.activation, conv.batch_normalize) == \
        (1, 1, 1, 0, "logistic", 0)
    assert (pool.size, pool.stride_x, pool.padding) == (1, 1, 0)
    assert short.activation == "linear"
    assert net.options.learning_rate == 0.001 and net.options.momentum == 0.9 and net.options.decay == 0.0001


def test_duplicate_and_unknown_options_warn_with_line(tmp_path, capsys):
    """Warnings name the cfg line, and Python attributes them to the user's load() call (this file); quiet=True
    silences them."""
    path = tmp_path / "t.cfg"
    path.write_text(NET + "[convolutional]\nfilters=4\nfliters=5\nfilters=6\n")
    with pytest.warns(DarknetConfigWarning) as record:
        darknet_py.load(path)
    assert "Total BFLOPS" in capsys.readouterr().err
    texts = [str(w.message) for w in record]
    assert any("t.cfg:7: unused field 'fliters = 5'" in t for t in texts)
    assert any("t.cfg:8: unused field 'filters = 6'" in t for t in texts)
    assert {w.filename for w in record} == {__file__}
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        darknet_py.load(path, quiet=True)
    assert capsys.readouterr() == ("", "")


@pytest.mark.parametrize("body, where, words", [
    ("[convolutional]\n", "t.cfg:1", "expected [net] or [network]"),
    (NET + "[convolutional]\nfilters=abc\n", "t.cfg:6", "expected an integer; got 'abc'"),
    (NET + "[convolutional]\nsize=0\n", "t.cfg:6", "expected >= 1; got 0"),
    (NET + "[convolutional]\nfilters=8\ngroups=5\n", "t.cfg:7", "groups to divide the 3 input channels"),
    (NET + "[route]\nlayers=-3\n", "t.cfg:6", "expected a layer before this one"),
    (NET + "[convolutional]\n[shortcut]\nfrom=4\n", "t.cfg:7", "got 4"),
    (NET + "[convolutional]\nactivation=leakyy\n", "t.cfg:6", "expected one of logistic"),
    (NET + "[convolutional]\nsize=64\n", "t.cfg:6", "expected size <= input"),
    (NET + "[unknown_layer]\n", "t.cfg:5", "unknown section [unknown_layer]"),
    (NET + "[lstm]\noutput=4\n", "t.cfg:5", "not supported"),
    (NET + "[convolutional]\nfilters 8\n", "t.cfg:6", "expected key=value"),
    (NET + "[convolutional\n", "t.cfg:5", "expected a section header"),
    ("[net]\nbatch=1\n", "t.cfg:1", "no input size"),
    (NET + "batch=0\n", "t.cfg:5", "expected batch >= 1"),
    (NET + "[convolutional]\nfilters=255\n[yolo]\nclasses=80\nmask=0,1\nnum=3\n", "t.cfg:7",
     "expected filters=(classes+5)*anchors=(80+5)*2=170"),
    (NET + "[maxpool]\nstride=0\n", "t.cfg:6", "expected >= 1; got 0"),
    (NET + "[upsample]\nstride=-3\n", "t.cfg:6", "divisible by 3"),
    (NET + "[net]\n", "t.cfg:5", "unknown section [net]"),
    (NET + "learning_rate=nan\n", "t.cfg:5", "finite number"),
])
def test_errors_name_file_line_and_expected(tmp_path, body, where, words):
    message = error_of(tmp_path, body)
    assert where in message and words in message, message


def test_missing_file_and_binary_file(tmp_path):
    with pytest.raises(DarknetConfigError, match="cannot read cfg file"):
        darknet_py.load(tmp_path / "missing.cfg", quiet=True)
    (tmp_path / "bin.cfg").write_bytes(b"\x00\x01[net]")
    with pytest.raises(DarknetConfigError, match="not a text cfg file"):
        darknet_py.load(tmp_path / "bin.cfg", quiet=True)


def test_options_keep_their_lines():
    sections = parse_cfg_text(NET + "\n\n[convolutional]\nfilters=3\n", "x.cfg")
    assert sections[1].line == 7 and sections[1].options["filters"].line == 8


def test_stride_xy_and_dilation(tmp_path):
    net = build(tmp_path, NET + "[convolutional]\nsize=3\nstride_x=2\nstride_y=1\npad=1\n"
                               "[convolutional]\nsize=3\ndilation=2\npad=1\n")
    a, b = net.layers
    assert a.output_shape == (16, 32, 1) and "3x 3/ 2x 1" in a.row()
    assert b.dilation == 2 and "3 x 3/ 1(2)" in b.row()


def test_route_groups_and_upsample_negative(tmp_path):
    net = build(tmp_path, NET + "[convolutional]\nfilters=8\n[route]\nlayers=-1\ngroups=2\ngroup_id=1\n"
                               "[upsample]\nstride=-2\n[route]\nlayers=-2,0\n")
    assert net.layers[1].output_shape == (32, 32, 4)
    assert net.layers[2].output_shape == (16, 16, 4) and net.layers[2].row().startswith("downsample")
    assert net.layers[3].output_shape == (32, 32, 12)
    with pytest.raises(DarknetConfigError, match="same width and height"):
        build(tmp_path, NET + "[convolutional]\nfilters=8\n[upsample]\n[route]\nlayers=-1,-2\n")


def test_width_height_override(tmp_path):
    net = build(tmp_path, NET + "[convolutional]\nsize=3\nstride=2\npad=1\n", width=64, height=48)
    assert net.layers[0].output_shape == (32, 24, 1)


def test_warnings_are_not_errors_for_shared_cfgs(shared):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DarknetConfigWarning)
        darknet_py.Network(shared / "cfg" / "yolov4-tiny.cfg")   # a clean cfg: no warning at all
