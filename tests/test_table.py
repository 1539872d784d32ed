"""The layer table against darknet's own printout for 12 cfgs (../shared/darknet/tables), and every other
shared cfg that darknet loads."""
import re

import pytest

from conftest import SHARED, load_quiet
from darknet_py.table import darknet_row, darknet_total_bflops, table_dict

TABLES = sorted(p.stem for p in (SHARED / "tables").glob("*.txt")) if SHARED.is_dir() else []
ROW = re.compile(r"^ {0,3}(\d+) (.*)$")
# recurrent and contrastive sections come later; these cfgs must fail with a clear "not supported" error
RECURRENT = {"rnn.cfg", "rnn.train.cfg", "gru.cfg", "lstm.train.cfg", "crnn.train.cfg", "yolov4-tiny_contrastive.cfg",
             "yolov3-tiny_occlusion_track.cfg"}
# darknet stops on `assert(params.w == net.layers[index].out_w ...)` in parse_shortcut for these: a shortcut
# adds a 64x64 map to a 32x32 one (resnet152_trident.cfg does load)
DARKNET_REJECTS = {"resnet50.cfg", "resnet101.cfg", "resnet152.cfg", "resnext152-32x4d.cfg"}


def darknet_table(name):
    rows, total = {}, None
    for line in (SHARED / "tables" / f"{name}.txt").read_text().splitlines():
        m = ROW.match(line)
        if m:
            rows[int(m.group(1))] = line.expandtabs().rstrip()
        elif line.startswith("Total BFLOPS"):
            total = float(line.split()[2])
    return rows, total


@pytest.mark.parametrize("name", TABLES)
def test_rows_match_darknet(shared, name):
    net = load_quiet(shared / "cfg" / f"{name}.cfg")
    rows, total = darknet_table(name)
    assert len(rows) == len(net.layers), "darknet printed a different number of layers"
    for layer in net.layers:
        assert darknet_row(layer).rstrip() == rows[layer.index], f"layer {layer.index}"
    assert f"{darknet_total_bflops(net.layers):5.3f}" == f"{total:5.3f}"


@pytest.mark.parametrize("name", TABLES)
def test_json_shapes_and_bflops_match_darknet(shared, name):
    info = table_dict(load_quiet(shared / "cfg" / f"{name}.cfg"))
    rows, total = darknet_table(name)
    for entry in info["layers"]:
        row = rows[entry["index"]]
        out = re.search(r"(?:->|outputs:)\s*(\d+) x\s*(\d+) x\s*(\d+)", row)
        if out:   # rows that print an output shape w x h x c
            assert [int(v) for v in out.groups()] == entry["output"], row
        bf = re.search(r"(\d+\.\d+) BF", row)
        if bf:
            assert f"{entry['bflops']:.3f}" == bf.group(1), row
    assert round(info["total_bflops"], 3) == total


def shared_cfgs():
    if not SHARED.is_dir():
        return []
    return sorted(p.name for p in (SHARED / "cfg").glob("*.cfg") if p.name not in RECURRENT | DARKNET_REJECTS)


@pytest.mark.parametrize("name", shared_cfgs())
def test_every_shared_cfg_loads(shared, name):
    net = load_quiet(shared / "cfg" / name)
    info = table_dict(net)
    assert info["layers"] and info["total_bflops"] > 0
    for layer in net.layers:   # every layer has a concrete positive output and the row renders
        assert layer.outputs > 0
        assert darknet_row(layer)


@pytest.mark.parametrize("name", sorted(DARKNET_REJECTS))
def test_shortcut_between_different_shapes_is_a_clear_error(shared, name):
    from darknet_py import DarknetConfigError
    with pytest.raises(DarknetConfigError) as e:
        load_quiet(shared / "cfg" / name)
    message = str(e.value)
    assert re.search(rf"{re.escape(name)}:\d+: \[shortcut\] \(layer 17\) from:", message)
    assert "64 x 64" in message and "32 x 32" in message and "\n" not in message


@pytest.mark.parametrize("name", sorted(RECURRENT))
def test_recurrent_cfgs_are_refused_clearly(shared, name):
    from darknet_py import DarknetConfigError
    with pytest.raises(DarknetConfigError, match=r"\.cfg:\d+: \[(rnn|crnn|gru|lstm|contrastive)\] .*not supported"):
        load_quiet(shared / "cfg" / name)
