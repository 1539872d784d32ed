"""Seeded weights fuzzing: truncated files, flipped header bytes, extra bytes and NaN/Inf values over real
cfgs. Each load either succeeds, warns DarknetWeightsWarning naming the file (and the layer for NaN/Inf), or
raises DarknetWeightsError naming the file and the layer — never another exception, and a failed load leaves
the network exactly as it was (no layer half filled, header fields untouched)."""
import random
import re
import warnings

import numpy as np
import pytest

from conftest import SHARED, load_quiet
from darknet_py import DarknetWeightsError
from darknet_py.weights import DarknetWeightsWarning, _stored_layout, init_weights, load_weights, save_weights
from test_weights import TINY

HEADER = 20                       # int32 major, minor, revision + uint64 seen (version 0.2.x)
LABEL = re.compile(r"layer (\d+) \[(\w+)\] \((.+):(\d+)\)")


def layer_spans(net):
    """[(first byte, end byte, layer, array name)] of each stored array, for a version-0.2 file."""
    spans, offset = [], HEADER
    for layer in net.layers:
        for name, shape in _stored_layout(layer):
            end = offset + 4 * int(np.prod(shape))
            spans.append((offset, end, layer, name))
            offset = end
    return spans


def sources(tmp_path_factory):
    """(cfg, weights) pairs: darknet-written random weights of two real cfgs, and a small cfg with every
    weighted layer type (connected, batchnorm, weighted shortcut) saved once plain and once transposed."""
    pairs = [(SHARED / "cfg" / f"{name}.cfg", SHARED / "weights" / f"{name}.rand.weights")
             for name in ("yolov4-tiny", "efficientnet_b0")]
    folder = tmp_path_factory.mktemp("fuzz-src")
    cfg = folder / "tiny.cfg"
    cfg.write_text(TINY)
    for version in ((0, 2, 5), (0, 1001, 0)):
        net = init_weights(load_quiet(cfg), seed=1)
        net.version = version
        path = folder / f"tiny-{version[1]}.weights"
        save_weights(net, path)
        pairs.append((cfg, path))
    return pairs


def snapshot(net):
    return net.version, net.seen, [dict(layer.weights) for layer in net.layers]


def assert_untouched(net, before):
    version, seen, weights = before
    assert (net.version, net.seen) == (version, seen), "a failed load changed the header fields"
    for layer, old in zip(net.layers, weights):
        assert layer.weights.keys() == old.keys(), f"a failed load filled layer {layer.index}"


def load_checked(cfg, path, net=None):
    """Load `path` into a fresh network; return (outcome, message(s)) after checking the contract."""
    net = net or load_quiet(cfg)
    before = snapshot(net)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        try:
            load_weights(net, path)
        except DarknetWeightsError as e:
            message = str(e)
            assert message.startswith(f"{path}: ") and "\n" not in message, message
            assert_untouched(net, before)
            return "error", message, net
    messages = [str(w.message) for w in caught]
    for w in caught:
        assert issubclass(w.category, DarknetWeightsWarning), w
        assert str(w.message).startswith(f"{path}: ") and "\n" not in str(w.message)
    for layer in net.layers:
        assert set(layer.weights) == {name for name, _ in _stored_layout(layer)}, f"layer {layer.index} not filled"
    return ("warned" if messages else "loaded"), messages, net


@pytest.fixture(scope="module")
def pairs(tmp_path_factory):
    if not SHARED.is_dir():
        pytest.skip(f"reference material not found at {SHARED}")
    return sources(tmp_path_factory)


def test_truncated_anywhere_names_file_and_layer(pairs, tmp_path):
    rng = random.Random(8)
    for cfg, source in pairs:
        data = source.read_bytes()
        spans = layer_spans(load_quiet(cfg))
        for cut in [rng.randrange(len(data)) for _ in range(12)] + [0, 15, 19, HEADER, len(data) - 1]:
            path = tmp_path / "cut.weights"
            path.write_bytes(data[:cut])
            outcome, message, net = load_checked(cfg, path)
            assert outcome == "error", (cut, message)
            if cut < HEADER:
                assert "header" in message, message
                continue
            # the array the cut falls in (or the next one when it falls on a boundary)
            start, end, layer, name = next(s for s in spans if s[1] > cut)
            label = LABEL.search(message)
            assert label and int(label.group(1)) == layer.index and label.group(2) == layer.section.name, message
            assert f"{label.group(3)}:{label.group(4)}" == f"{cfg}:{layer.section.line}"
            assert f" {name}: expected {end - start} bytes, {cut - start} left" in message, message


def test_extra_bytes_warn_and_load_everything(pairs, tmp_path):
    rng = random.Random(9)
    for cfg, source in pairs:
        data = source.read_bytes()
        reference = load_checked(cfg, source)[2]
        for extra in (1, 4, rng.randrange(2, 4000)):
            path = tmp_path / "padded.weights"
            path.write_bytes(data + rng.randbytes(extra))
            outcome, messages, net = load_checked(cfg, path)
            assert outcome == "warned" and len(messages) == 1, messages
            assert f"{extra} bytes ({extra // 4} floats) left over" in messages[0]
            for a, b in zip(reference.layers, net.layers):   # the padding changes nothing that was read
                for name in a.weights:
                    np.testing.assert_array_equal(a.weights[name], b.weights[name])


def test_nan_and_inf_warn_naming_the_layer(pairs, tmp_path):
    rng = random.Random(10)
    for cfg, source in pairs:
        data = bytearray(source.read_bytes())
        spans = layer_spans(load_quiet(cfg))
        if "1001" in source.name:      # transposed connected arrays: same bytes, other element order
            spans = [s for s in spans if s[2].kind != "connected"]
        for _ in range(6):
            hits = {}
            mutant = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                start, end, layer, name = rng.choice(spans)
                at = start + 4 * rng.randrange((end - start) // 4)
                mutant[at:at + 4] = np.array([rng.choice([np.nan, np.inf, -np.inf])], np.float32).tobytes()
                hits.setdefault((layer.index, name), set()).add(at)
            path = tmp_path / "nan.weights"
            path.write_bytes(bytes(mutant))
            outcome, messages, net = load_checked(cfg, path)
            assert outcome == "warned" and len(messages) == len(hits), (messages, hits)
            for (index, name), offsets in hits.items():
                layer = net.layers[index]
                expected = (f"layer {index} [{layer.section.name}] ({cfg}:{layer.section.line}) {name} has "
                            f"{len(offsets)} NaN/Inf values")
                assert any(expected in m for m in messages), (expected, messages)


def test_flipped_header_bytes_load_warn_or_fail_cleanly(pairs, tmp_path):
    """A flipped header byte changes the version (maybe the width of `seen`, maybe connected transposition)
    or `seen`: whatever it does, the load ends in one of the three clean outcomes, and a file whose `seen`
    width changed can never load silently (4 bytes are then missing or left over)."""
    rng = random.Random(11)
    outcomes = set()
    for cfg, source in pairs:
        data = source.read_bytes()
        for _ in range(25):
            mutant = bytearray(data)
            for _ in range(rng.randint(1, 3)):
                mutant[rng.randrange(HEADER)] ^= 1 << rng.randrange(8)
            path = tmp_path / "header.weights"
            path.write_bytes(bytes(mutant))
            major, minor = (int(v) for v in np.frombuffer(bytes(mutant[:8]), np.int32))
            outcome, messages, net = load_checked(cfg, path)
            outcomes.add(outcome)
            if major * 10 + minor < 2:           # `seen` read as 32 bits: every array shifted by 4 bytes
                assert outcome in ("error", "warned"), (major, minor, outcome)
                if outcome == "warned":
                    assert any("4 bytes (1 floats) left over" in m for m in messages), messages
            elif outcome == "loaded":
                assert net.version == (major, minor, int(np.frombuffer(bytes(mutant[8:12]), np.int32)[0]))
                assert net.seen == int(np.frombuffer(bytes(mutant[12:20]), np.uint64)[0])
    assert "loaded" in outcomes and len(outcomes) >= 2, outcomes


def test_failed_load_into_a_loaded_network_keeps_its_weights(pairs, tmp_path):
    cfg, source = pairs[0]
    net = load_checked(cfg, source)[2]
    net.version, net.seen = (0, 2, 4), 99     # differ from the file's header
    before = {(l.index, n): a.copy() for l in net.layers for n, a in l.weights.items()}
    path = tmp_path / "cut.weights"
    path.write_bytes(source.read_bytes()[:len(source.read_bytes()) // 2])
    outcome, _, net = load_checked(cfg, path, net=net)
    assert outcome == "error" and (net.version, net.seen) == ((0, 2, 4), 99)
    for (index, name), array in before.items():
        np.testing.assert_array_equal(net.layers[index].weights[name], array)
