"""Reliability: the memory precheck before a forward, huge inputs (VGG at 2816x2816) that either run correctly
or are refused before anything is allocated, and 64-bit index arithmetic.

Darknet's silent failure at 2432-2816 px (issue 8: the loss stopped changing, no error) comes from 32-bit
int arithmetic (AlexeyAB/darknet src/im2col.c, src/convolutional_layer.c):
- im2col_cpu / im2col_gpu_kernel index the column buffer with `int`: col_index = (c*height_col + h)*width_col
  + w runs up to channels*size*size * out_h*out_w, which passes 2^31 - 1 once (c/groups)*size^2*out_h*out_w
  > 2,147,483,647: a 3x3 convolution with 32 input channels at 2816x2816 (288 * 7,929,856 = 2.28e9), or 41
  channels at 2432x2432 (369 * 5,914,624 = 2.18e9). The GPU kernel's `index` (n = channels*height_col*
  width_col work items, an int) overflows the same way, so the columns are written at wrapped (negative or
  wrong) offsets and the GEMM reads garbage or stale columns without any error.
- get_workspace_size32 multiplies l.out_h*l.out_w*l.size*l.size*(l.c/l.groups) in int before the
  (size_t) cast of sizeof(float), so the workspace itself is sized from a wrapped product.
Here every shape and index is a Python int or NumPy intp (64-bit): `test_index_arithmetic_is_64_bit` checks
the sizes that overflow darknet, and the 2816x2816 tests check the result itself where memory allows."""
import json
import os
import platform
import subprocess
import sys
import tracemalloc
import warnings

import numpy as np
import pytest

from conftest import SHARED, load_quiet
from darknet_py.memory import LIMIT_ENV, DarknetMemoryError, available_bytes, parse_size
from darknet_py.table import cache_bytes, forward_bytes, scratch_bytes
from darknet_py.weights import init_weights

INT32_MAX = 2 ** 31 - 1
SHALLOW_VGG = """[net]
width=2816
height=2816
channels=3
[convolutional]
filters=8
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
batch_normalize=1
filters=16
size=3
stride=1
pad=1
activation=leaky
[maxpool]
size=2
stride=2
[convolutional]
filters=16
size=3
stride=1
pad=1
activation=linear
"""


def randomized(net, seed=0):
    """Weights with random BN statistics too, so that batch normalization is not an identity."""
    init_weights(net, seed=seed)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for name, array in layer.weights.items():
            if name in ("biases", "rolling_mean", "scales"):
                array[...] = rng.normal(0, 0.5, array.shape)
            elif name == "rolling_variance":
                array[...] = rng.uniform(0.5, 2, array.shape)
    return net


# -- the memory estimate against what a forward really allocates ---------------------------------------------
def traced_forward(net, x, train=False):
    """Bytes a forward allocates at its peak beyond what was allocated before it (NumPy reports its buffers
    to tracemalloc)."""
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        net.forward(x, train=train)
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


# The Winograd path keeps (P + 9)/9 times the weights of every 3x3 stride-1 convolution from the first forward on
# (P = 36 or 16); the backend reports it (ops.conv_memory), so forward_bytes counts it, and the test drops the
# caches before each forward, as a first forward starts without them.
@pytest.mark.parametrize("name, size", [("yolov4-tiny", 256), ("efficientnet_b0", 224), ("yolov3-tiny", 320),
                                        ("enet-coco", 256), ("darknet19", 224)])
def test_forward_estimate_bounds_what_a_forward_allocates(shared, name, size):
    net = randomized(load_quiet(shared / "cfg" / f"{name}.cfg", width=size, height=size))
    net.memory_check = False
    for batch in (1, 2):
        x = np.random.default_rng(batch).random((batch, 3, size, size), dtype=np.float32)
        for layer in net.layers:      # start from nothing held, as a first forward does
            layer.output = None
        net.ops.clear_caches()
        peak = traced_forward(net, x)
        estimate = forward_bytes(net, batch, train=False)
        assert peak <= estimate, f"{name} batch {batch}: forward allocated {peak} bytes, the table said {estimate}"
        assert estimate <= 3 * peak, f"{name} batch {batch}: estimate {estimate} is far above the {peak} allocated"


# tracemalloc sees NumPy's buffers but not the C++ kernels' own (the Winograd workspace, per-thread im2col slices
# and padded planes): the peak resident memory sees both. It is read in a child process with glibc's mmap
# threshold fixed at 64 KiB, so that every large block is mapped when allocated and unmapped when freed (with the
# default, freed memory stays resident and is reused: the peak reads near zero), after a first run that maps
# code, starts the threads and BLAS's buffers, and whose results and caches are then dropped.
RESIDENT_PEAK = """
import ctypes, gc, json, sys
ctypes.CDLL(None).prctl(41, 1, 0, 0, 0)   # PR_SET_THP_DISABLE: 4 KiB pages, none rounded up to a huge page
import numpy as np
sys.path.insert(0, sys.argv[1])
from darknet_py._ext import _C
_C.set_num_threads(2)      # per-thread buffers: the same count on any machine

def resident():
    status = dict(line.split(":", 1) for line in open("/proc/self/status"))
    return int(status["VmRSS"].split()[0]) * 1024, int(status["VmHWM"].split()[0]) * 1024

def resident_peak(run):
    # bytes the resident size grew by at most while run() ran, and what it returned
    gc.collect()
    before = resident()[0]
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")             # the peak (VmHWM) restarts from the current resident size
    result = run()
    return resident()[1] - before, result
"""

NETWORK_PEAK = RESIDENT_PEAK + """
from conftest import load_quiet
from test_reliability import randomized
cfg, size = sys.argv[2], int(sys.argv[3])
net = randomized(load_quiet(cfg, width=size, height=size))
net.memory_check = False
for batch in (1, 2):
    x = np.random.default_rng(batch).random((batch, 3, size, size), dtype=np.float32)
    net.forward(x)
    for layer in net.layers:
        layer.output = None
    net.ops.clear_caches()
    print(batch, resident_peak(lambda: net.forward(x))[0])
"""

CONVOLUTION_PEAK = RESIDENT_PEAK + """
from types import SimpleNamespace
from darknet_py.backend import NumpyOps, conv_output_size
for batch, c, h, w, filters, size, stride, pad, dilation, groups, activation, mode in json.loads(sys.argv[2]):
    ops = NumpyOps(np.float32)
    ops.winograd = mode
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch, c, h, w)).astype(np.float32)
    weights = rng.normal(size=(filters, c // groups, size, size)).astype(np.float32)
    shift = np.zeros(filters, np.float32)
    run = lambda: ops.conv2d_affine_activation(x, weights, None, shift, activation, stride, stride, pad, dilation,
                                                groups)
    run()
    ops.clear_caches()
    peak, y = resident_peak(run)
    out_h, out_w = conv_output_size(h, w, size, stride, stride, pad)
    layer = SimpleNamespace(c=c, h=h, w=w, filters=filters, size=size, stride_x=stride, stride_y=stride,
                            padding=pad, dilation=dilation, groups=groups, out_h=out_h, out_w=out_w,
                            activation=activation)
    path, cache, scratch = ops.conv_memory(layer, batch, False)
    print(path, peak, cache + scratch + y.nbytes)
"""


def _peak_can_be_reset():
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


needs_resident_peak = pytest.mark.skipif(
    not sys.platform.startswith("linux") or platform.libc_ver()[0] != "glibc" or not _peak_can_be_reset(),
    reason="needs Linux's /proc/self/clear_refs to reset the peak resident size, and glibc's MALLOC_MMAP_THRESHOLD_")


def resident_peaks(script, *args):
    """The lines the child script printed, split into words."""
    done = subprocess.run([sys.executable, "-c", script, os.path.dirname(__file__), *map(str, args)],
                          capture_output=True, text=True, env={**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"},
                          timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    return [line.split() for line in done.stdout.splitlines()]


@needs_resident_peak
@pytest.mark.parametrize("name, size", [("yolov4-tiny", 256), ("efficientnet_b0", 224), ("enet-coco", 256)])
def test_forward_estimate_bounds_the_resident_peak_with_the_kernels_buffers(shared, name, size):
    cfg = shared / "cfg" / f"{name}.cfg"
    peaks = {int(batch): int(peak) for batch, peak in resident_peaks(NETWORK_PEAK, cfg, size)}
    assert sorted(peaks) == [1, 2], peaks
    net = load_quiet(cfg, width=size, height=size)
    for batch, peak in peaks.items():
        estimate = forward_bytes(net, batch, train=False)
        assert peak <= estimate + PEAK_SLACK, f"{name} batch {batch}: resident grew {peak} bytes, table said {estimate}"
        assert estimate <= 3 * peak, f"{name} batch {batch}: estimate {estimate} is far above the {peak} resident"


# batch, c, h, w, filters, size, stride, pad, dilation, groups, activation: every inference path of the C++ kernels
CONVOLUTIONS = [
    ((1, 64, 104, 104, 64, 3, 1, 1, 1, 1, "leaky"), "winograd4"),
    ((2, 128, 52, 52, 128, 3, 1, 1, 1, 1, "leaky"), "winograd4"),
    ((1, 256, 7, 7, 256, 3, 1, 1, 1, 1, "mish"), "winograd2"),
    ((1, 32, 208, 208, 64, 3, 2, 1, 1, 1, "leaky"), "im2col"),          # on the input itself
    ((2, 64, 60, 60, 32, 3, 1, 0, 2, 1, "leaky"), "im2col"),            # on a padded copy of the batch
    ((1, 64, 104, 104, 128, 1, 2, 0, 1, 1, "linear"), "pointwise"),
    ((1, 96, 112, 112, 96, 3, 1, 1, 1, 96, "swish"), "depthwise"),
]
PEAK_SLACK = 512 << 10     # pages of small allocations, thread stacks touched deeper


@needs_resident_peak
@pytest.mark.parametrize("mode", ["cached", "uncached"])
def test_conv_memory_is_what_the_kernels_make_resident(mode):
    """ops.conv_memory (the layer table's cache and scratch columns) against the resident memory a first
    inference convolution really adds, output included: the Winograd workspace and cache, im2col slices,
    padded and strided copies."""
    cases = [list(case) + [mode] for case, _ in CONVOLUTIONS]
    results = resident_peaks(CONVOLUTION_PEAK, json.dumps(cases))
    assert [path for path, _, _ in results] == [path for _, path in CONVOLUTIONS]
    for (case, path), (_, peak, estimate) in zip(CONVOLUTIONS, results):
        peak, estimate = int(peak), int(estimate)
        assert peak <= estimate + PEAK_SLACK, f"{path} {case}: resident grew {peak} bytes, conv_memory said {estimate}"
        assert estimate <= 2 * peak, f"{path} {case}: conv_memory said {estimate}, far above the {peak} resident"


def test_convolution_workspace_is_one_image_im2col():
    """The table's workspace of a 3x3 convolution is one image's im2col matrix, (c/groups)*9*out_h*out_w
    floats (darknet's get_workspace_size32 formula); a training forward at batch 3 (NumPy) allocates that once
    (the engine loops over images and groups), not per image; inference (the C++ GEMM, every group at once)
    builds the columns a slice at a time, never the whole matrix."""
    import tempfile
    with tempfile.TemporaryDirectory() as folder:
        cfg = os.path.join(folder, "conv.cfg")
        with open(cfg, "w") as f:
            f.write("[net]\nwidth=96\nheight=64\nchannels=12\n[convolutional]\nfilters=4\ngroups=2\nsize=3\n"
                    "pad=1\nactivation=linear\n")
        net = randomized(load_quiet(cfg))
    conv = net.layers[0]
    assert conv.workspace_bytes == (12 // 2) * 9 * 64 * 96 * 4
    x = np.ones((3, 12, 64, 96), np.float32)
    output = 3 * 4 * 64 * 96 * 4
    peak = traced_forward(net, x, train=True)
    assert conv.workspace_bytes + output <= peak < 2 * conv.workspace_bytes + output
    assert output <= traced_forward(net, x) < conv.workspace_bytes + output


# -- the precheck ------------------------------------------------------------------------------------------
def test_parse_size():
    assert parse_size("2G") == 2 << 30 and parse_size("512m") == 512 << 20 and parse_size("1.5GiB") == 3 << 29
    assert parse_size("1000") == 1000 and parse_size(" 64 KB ") == 64 << 10
    for bad in ("", "lots", "-1G", "1X"):
        with pytest.raises(DarknetMemoryError, match=f"{LIMIT_ENV}: expected a size"):
            parse_size(bad)


def test_host_memory_is_reported():
    from darknet_py.backend import NumpyOps
    available = NumpyOps().available_memory()
    assert available is not None and 0 < available
    with open("/proc/meminfo") as f:
        total = int(next(line for line in f if line.startswith("MemTotal:")).split()[1]) * 1024
    assert available <= total


@pytest.fixture
def vgg16_2816(shared):
    """darknet's VGG-16 convolutional part (vgg-conv.cfg) at 2816x2816."""
    net = load_quiet(shared / "cfg" / "vgg-conv.cfg", width=2816, height=2816)
    return init_weights(net)


def test_vgg16_at_2816_refused_under_a_small_limit_before_allocating(vgg16_2816, monkeypatch):
    monkeypatch.setenv(LIMIT_ENV, "1G")
    x = np.zeros((1, 3, 2816, 2816), np.float32)
    needed = forward_bytes(vgg16_2816, 1, train=False)
    assert needed > 8 << 30          # 13 convolutions' outputs at 2816^2 alone are over 8 GiB
    tracemalloc.start()
    try:
        with pytest.raises(DarknetMemoryError) as e:
            vgg16_2816.forward(x)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    message = str(e.value)
    assert message.startswith(f"{vgg16_2816.cfg_path}: inference forward of 1 2816x2816 image(s) needs "), message
    assert f"needs {needed / 2 ** 20:,.0f} MiB; 1,024 MiB available ({LIMIT_ENV}=1G)" in message, message
    assert "\n" not in message
    assert peak < 1 << 20, f"{peak} bytes allocated before the refusal"
    assert all(layer.output is None for layer in vgg16_2816.layers)


def test_memory_check_can_be_turned_off(tmp_path, monkeypatch):
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SHALLOW_VGG.replace("2816", "64"))
    net = randomized(load_quiet(cfg))
    x = np.ones((1, 3, 64, 64), np.float32)
    monkeypatch.setenv(LIMIT_ENV, "1K")
    with pytest.raises(DarknetMemoryError):
        net.forward(x)
    net.memory_check = False
    assert net.forward(x).shape == (1, 16, 16, 16)
    net.memory_check = True
    monkeypatch.setenv("DARKNET_PY_MEMORY_CHECK", "0")
    net._memory_checked.clear()
    assert net.forward(x).shape == (1, 16, 16, 16)


def test_training_forward_is_checked_with_training_figures(tmp_path, monkeypatch):
    """A training forward keeps deltas, BN buffers and weight gradients too: its figure is larger, and a limit
    between the two figures allows inference and refuses training."""
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SHALLOW_VGG.replace("2816", "64"))
    net = randomized(load_quiet(cfg))
    inference, training = forward_bytes(net, 4, False), forward_bytes(net, 4, True)
    assert training > inference + scratch_bytes(net, 4, True) - scratch_bytes(net, 4, False)
    monkeypatch.setenv(LIMIT_ENV, str((inference + training) // 2))
    x = np.ones((4, 3, 64, 64), np.float32)
    net.forward(x)
    with pytest.raises(DarknetMemoryError, match="training forward of 4 64x64 image"):
        net.forward(x, train=True)


# -- huge inputs: run and match an independent tiled reference, or be refused -------------------------------
def chain_reference(net, image, y0, y1, x0, x1):
    """Rows [y0, y1) and columns [x0, x1) of the last output of a chain of [convolutional] and [maxpool]
    layers, computed from the part of `image` (c, h, w) they depend on, with direct per-tap sums (no im2col),
    zero padding for convolutions and -inf for pooling outside each layer's input."""
    def region(i, y0, y1, x0, x1):
        if i < 0:
            return image[:, y0:y1, x0:x1].astype(np.float64)
        layer = net.layers[i]
        k, s = layer.size, layer.stride_x
        pad = layer.padding if layer.kind == "convolutional" else layer.padding // 2
        iy0, iy1, ix0, ix1 = y0 * s - pad, (y1 - 1) * s - pad + k, x0 * s - pad, (x1 - 1) * s - pad + k
        cy0, cy1, cx0, cx1 = max(iy0, 0), min(iy1, layer.h), max(ix0, 0), min(ix1, layer.w)
        fill = 0.0 if layer.kind == "convolutional" else -np.inf
        window = np.full((layer.c, iy1 - iy0, ix1 - ix0), fill)
        window[:, cy0 - iy0:cy1 - iy0, cx0 - ix0:cx1 - ix0] = region(i - 1, cy0, cy1, cx0, cx1)
        h, w = y1 - y0, x1 - x0
        taps = [(ky, kx, window[:, ky:ky + (h - 1) * s + 1:s, kx:kx + (w - 1) * s + 1:s])
                for ky in range(k) for kx in range(k)]
        if layer.kind == "maxpool":
            return np.max([t for _, _, t in taps], axis=0)
        weights = layer.weights["weights"].astype(np.float64)
        z = sum(np.einsum("fc,chw->fhw", weights[:, :, ky, kx], t) for ky, kx, t in taps)
        p = {name: a.astype(np.float64)[:, None, None] for name, a in layer.weights.items() if name != "weights"}
        if layer.batch_normalize:
            z = (z - p["rolling_mean"]) / np.sqrt(p["rolling_variance"] + 1e-5) * p["scales"]
        z = z + p["biases"]
        return np.where(z > 0, z, 0.1 * z) if layer.activation == "leaky" else z
    return region(len(net.layers) - 1, y0, y1, x0, x1)


def run_or_refused(net, x):
    """The network's output, or None when the memory check refuses it (checked to be a clean refusal)."""
    try:
        return net.forward(x)
    except DarknetMemoryError as e:
        available, _ = available_bytes(net.ops)
        assert forward_bytes(net, x.shape[0], False) > available and "MiB available" in str(e)
        assert all(layer.output is None for layer in net.layers)
        return None


def assert_tiles_match(net, x, out, seed, tiles=4, size=3):
    rng = np.random.default_rng(seed)
    _, _, oh, ow = out.shape
    corners = [(0, 0), (oh - size, ow - size)] + [(rng.integers(oh - size), rng.integers(ow - size))
                                                   for _ in range(tiles - 2)]
    for y, x0 in corners:
        expected = chain_reference(net, x[0], y, y + size, x0, x0 + size)
        np.testing.assert_allclose(out[0, :, y:y + size, x0:x0 + size], expected, rtol=2e-4, atol=2e-4,
                                   err_msg=f"output tile at ({y}, {x0})")


def test_chain_reference_matches_the_engine_on_a_small_input(tmp_path):
    """The reference itself, against the engine on a whole small image (every position compared)."""
    cfg = tmp_path / "small.cfg"
    cfg.write_text(SHALLOW_VGG.replace("2816", "48"))
    net = randomized(load_quiet(cfg), seed=3)
    x = np.random.default_rng(3).normal(size=(1, 3, 48, 48)).astype(np.float32)
    np.testing.assert_allclose(net.forward(x)[0], chain_reference(net, x[0], 0, 12, 0, 12), rtol=2e-4, atol=2e-4)


def test_shallow_vgg_at_2816_matches_tiled_reference_or_is_refused(tmp_path):
    """Batch 1 at 2816x2816 (7.9 million pixels; about 2.4 GiB by the table): run if the machine has the
    memory, and compare output tiles, corners included, with the independent reference."""
    cfg = tmp_path / "vgg-shallow.cfg"
    cfg.write_text(SHALLOW_VGG)
    net = randomized(load_quiet(cfg), seed=5)
    x = np.random.default_rng(5).random((1, 3, 2816, 2816), dtype=np.float32)
    out = run_or_refused(net, x)
    if out is None:
        pytest.skip("refused by the memory check on this machine (the refusal was checked)")
    assert out.shape == (1, 16, 704, 704) and np.isfinite(out).all()
    assert_tiles_match(net, x, out, seed=5)


@pytest.mark.slow
def test_vgg16_at_2816_matches_tiled_reference_or_is_refused(vgg16_2816):
    """darknet's VGG-16 conv at 2816x2816 needs about 34 GiB by the table (18 of them conv1_2's one-image
    im2col matrix): it is refused cleanly on smaller
    machines, and where it runs, tiles of its output match the reference (13 stacked convolutions)."""
    randomized(vgg16_2816, seed=7)
    for layer in vgg16_2816.layers:   # keep activations in a sane range through 13 layers
        if "weights" in layer.weights:
            layer.weights["biases"][...] *= 0.1
    x = np.random.default_rng(7).random((1, 3, 2816, 2816), dtype=np.float32)
    out = run_or_refused(vgg16_2816, x)
    if out is not None:
        assert out.shape == (1, 512, 88, 88)
        assert_tiles_match(vgg16_2816, x, out, seed=7, tiles=3, size=2)


def test_index_arithmetic_is_64_bit(vgg16_2816):
    """The layer figures that overflow darknet's int arithmetic at 2816x2816 come out exact here."""
    conv = vgg16_2816.layers[1]                        # 64 -> 64 channels, 3x3, at 2816x2816
    columns = (conv.c // conv.groups) * conv.size * conv.size * conv.out_h * conv.out_w
    assert columns == 64 * 9 * 2816 * 2816 > INT32_MAX
    assert conv.workspace_bytes == 4 * columns and conv.outputs * 4 == 64 * 2816 * 2816 * 4
    assert np.int32(columns % 2 ** 32).item() < 0 or columns > 2 ** 32   # what darknet's int sees: wrapped
    assert conv.fma == 64 * 64 * 9 * 2816 * 2816
    info = vgg16_2816.table()
    assert info["layers"][1]["workspace_mib"] == columns * 4 / 2 ** 20
    assert isinstance(np.prod((64, 9, 2816, 2816)), np.int64)   # NumPy's default integer on Linux is 64-bit


# -- training stops on NaN/Inf, naming the iteration and the first layer -------------------------------------
TINY_CLASSIFIER = """[net]
batch=2
subdivisions=1
width=8
height=8
channels=3
learning_rate=0.01
momentum=0.9
decay=0.0005
max_batches=10
[convolutional]
filters=4
size=3
pad=1
activation=leaky
[convolutional]
filters=3
size=1
activation=linear
[avgpool]
[softmax]
"""


@pytest.mark.parametrize("poison, first", [("input", 0), ("weights", 1)])
def test_non_finite_training_stops_naming_iteration_and_first_layer(tmp_path, poison, first):
    from darknet_py.training import TrainingDiverged, train_iteration
    cfg = tmp_path / "tiny.cfg"
    cfg.write_text(TINY_CLASSIFIER)
    net = randomized(load_quiet(cfg, batch=2))
    rng = np.random.default_rng(0)
    truth = np.eye(3, dtype=np.float32)[[0, 2]]
    good = lambda: (rng.random((2, 3, 8, 8), dtype=np.float32), truth)
    for _ in range(3):
        assert np.isfinite(train_iteration(net, good))
    before = {(l.index, n): a.copy() for l in net.layers for n, a in l.weights.items()}
    if poison == "input":
        batch = lambda: (np.full((2, 3, 8, 8), np.nan, np.float32), truth)
    else:
        net.layers[1].weights["weights"][0, 0] = np.inf
        batch = good
    with pytest.raises(TrainingDiverged) as e:
        train_iteration(net, batch)
    message = str(e.value)
    layer = net.layers[first]
    assert "at iteration 4:" in message and "\n" not in message, message
    assert f"first non-finite output: layer {first} [{layer.section.name}] ({cfg}:{layer.section.line})" in message
    if poison == "input":   # stopped before the update: the weights of the last good iteration are kept
        for (index, name), array in before.items():
            np.testing.assert_array_equal(net.layers[index].weights[name], array)


def test_frozen_network_weights_are_read_only_copies_that_compute_the_same(shared):
    net = randomized(load_quiet(shared / "cfg" / "yolov4-tiny.cfg", width=128, height=128))
    x = np.random.default_rng(1).random((1, 3, 128, 128), dtype=np.float32)
    expected = net.forward(x).copy()
    earlier = net.layers[2].weights["weights"]
    net.freeze_weights()
    frozen = net.layers[2].weights["weights"]
    assert frozen is not earlier and not frozen.flags.writeable
    earlier[...] = 0                            # a reference taken before no longer reaches the network
    np.testing.assert_array_equal(net.forward(x), expected)
    del earlier                                 # its cache entry goes with it; the frozen arrays' keep no copy
    assert net.ops._winograd_cache and all(entry[0] is None for entry in net.ops._winograd_cache.values())
    with pytest.raises(ValueError):
        frozen += 1
    net.freeze_weights()                        # again: the frozen arrays (and their cached transforms) are kept
    assert net.layers[2].weights["weights"] is frozen


@pytest.mark.parametrize("mode", ["uncached", "off"])
def test_winograd_modes_hold_no_weight_cache(shared, monkeypatch, mode):
    """DARKNET_PY_WINOGRAD=uncached transforms the weights at every forward and =off runs im2col: neither keeps
    a weight cache, the table says so, the forward stays within its estimate and computes what the cached
    Winograd path computes."""
    cfg = shared / "cfg" / "yolov4-tiny.cfg"
    x = np.random.default_rng(0).random((1, 3, 256, 256), dtype=np.float32)
    cached = randomized(load_quiet(cfg, width=256, height=256))
    assert cache_bytes(cached) > 50 * 2 ** 20      # (36 + 9) * 4 bytes per 3x3 weight at 256x256: ~76 MiB
    expected = cached.forward(x).copy()
    monkeypatch.setenv("DARKNET_PY_WINOGRAD", mode)
    net = randomized(load_quiet(cfg, width=256, height=256))
    paths = {net.ops.conv_memory(l, 1, False)[0] for l in net.layers if l.kind == "convolutional"}
    assert not any(p.startswith("winograd") for p in paths) if mode == "off" else {"winograd4", "winograd2"} <= paths
    assert cache_bytes(net) == 0
    assert "Winograd weights cache 0.0 " in net.summary()
    net.memory_check = False
    assert traced_forward(net, x) <= forward_bytes(net, 1, False)
    assert not net.ops._winograd_cache
    np.testing.assert_allclose(net.forward(x), expected, rtol=1e-3,
                               atol=1e-4 * np.abs(expected).max())


def test_bad_winograd_mode_is_one_line_error(shared, monkeypatch):
    from darknet_py.errors import DarknetError
    monkeypatch.setenv("DARKNET_PY_WINOGRAD", "fast")
    with pytest.raises(DarknetError, match="DARKNET_PY_WINOGRAD: expected one of cached, uncached, off; got 'fast'"):
        load_quiet(shared / "cfg" / "yolov4-tiny.cfg")
