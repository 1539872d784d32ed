"""The CUDA engine's heads, losses, dropout, softmax and optimizer (csrc/cuda/softmax.cu, cost.cu, dropout.cu,
heads.cu, optimizer.cu): each kernel against a NumPy reference on odd sizes (partial blocks and warps), then every
layer type and option of the group, CPU engine against CUDA engine (tests/engines.py), with truth where the layer
has a loss, and the weight update."""
import numpy as np
import pytest

from engines import compare_engines, engine_pair, host, net_cfg
from darknet_py.backend import NumpyOps, dropout_uniform
from darknet_py.training import train_iteration, update_network

@pytest.fixture(scope="module")
def numpy_ops():
    return NumpyOps()


def on_device(ops, *arrays):
    return [ops.asarray(a) for a in arrays]


def ref_softmax(x, t):
    x = x.astype(np.float64) / t
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    return e / e.sum(axis=-1, keepdims=True)


# -- softmax ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("shape", [(1, 1), (3, 1), (2, 37), (5, 3, 70), (1, 300)], ids=str)
@pytest.mark.parametrize("temperature", [1.0, 0.5, 2.5])
def test_softmax_rows_against_numpy(cuda_ops, shape, temperature):
    rng = np.random.default_rng(sum(shape))
    x = (rng.normal(size=shape) * 4).astype(np.float32)
    y = cuda_ops.softmax(cuda_ops.asarray(x), temperature)
    np.testing.assert_allclose(host(cuda_ops, y), ref_softmax(x, temperature), rtol=2e-6, atol=1e-7)
    dy = rng.normal(size=shape).astype(np.float32)
    want = ref_softmax(x, temperature)
    want = want * (dy - (dy * want).sum(axis=-1, keepdims=True)) / temperature
    dx = cuda_ops.softmax_backward(y, cuda_ops.asarray(dy), temperature)
    np.testing.assert_allclose(host(cuda_ops, dx), want, rtol=1e-5, atol=1e-6 * np.abs(want).max())


def test_softmax_in_place_on_strided_views(cuda_ops):
    """The class values of [region]'s rows (a slice of the last axis) and of [detection]'s images (a leading slice
    of each image), in place, leaving the other values alone."""
    rng = np.random.default_rng(5)
    rows = rng.normal(size=(2, 7, 3, 9)).astype(np.float32)
    a = cuda_ops.asarray(rows)
    cuda_ops.softmax(a[..., 5:], out=a[..., 5:])
    want = rows.astype(np.float64)
    want[..., 5:] = ref_softmax(rows[..., 5:], 1.0)
    np.testing.assert_allclose(host(cuda_ops, a), want, rtol=2e-6, atol=1e-7)

    flat = rng.normal(size=(3, 50)).astype(np.float32)
    b = cuda_ops.asarray(flat)
    classes = b[:, :36].reshape(3, 12, 3)
    cuda_ops.softmax(classes, out=classes)
    want = flat.astype(np.float64)
    want[:, :36] = ref_softmax(flat[:, :36].reshape(3, 12, 3), 1.0).reshape(3, 36)
    np.testing.assert_allclose(host(cuda_ops, b), want, rtol=2e-6, atol=1e-7)

    dy = rng.normal(size=(3, 50)).astype(np.float32)
    d = cuda_ops.asarray(dy)
    y = cuda_ops.asarray(want.astype(np.float32))
    cuda_ops.softmax_backward(y[:, :36].reshape(3, 12, 3), d[:, :36].reshape(3, 12, 3), out=d[:, :36].reshape(3, 12, 3))
    p = want[:, :36].reshape(3, 12, 3)
    g = dy[:, :36].reshape(3, 12, 3)
    expected = dy.astype(np.float64)
    expected[:, :36] = (p * (g - (g * p).sum(axis=-1, keepdims=True))).reshape(3, 36)
    np.testing.assert_allclose(host(cuda_ops, d), expected, rtol=1e-5, atol=1e-6)


def test_softmax_refuses_layouts_it_cannot_walk(cuda_ops):
    a = cuda_ops.zeros((2, 3, 4, 5))
    with pytest.raises(ValueError, match="more than two row axes"):
        cuda_ops.softmax(a[:, 1:, 1:, :], out=a[:, 1:, 1:, :])
    with pytest.raises(ValueError, match="contiguous last axis"):
        cuda_ops.softmax(a[..., ::2], out=a[..., ::2])
    with pytest.raises(ValueError, match="differ"):
        cuda_ops.softmax(a[:, :, :, 1:], out=a[:, :, 1:, :4])


# -- losses -------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 255, 257, 700])
def test_softmax_cross_entropy_against_numpy(cuda_ops, n):
    rng = np.random.default_rng(n)
    y = rng.uniform(0.01, 1, n).astype(np.float32)
    truth = np.where(rng.uniform(size=n) < 0.3, rng.uniform(0.1, 1, n), 0).astype(np.float32)
    cost, grad = cuda_ops.softmax_cross_entropy(*on_device(cuda_ops, y, truth))
    np.testing.assert_allclose(host(cuda_ops, grad), y.astype(np.float64) - truth, rtol=1e-6, atol=1e-7)
    assert cost == pytest.approx(float(-np.sum(np.log(y[truth != 0].astype(np.float64)))), rel=1e-5)


@pytest.mark.parametrize("cost_type", ["sse", "masked", "smooth"])
@pytest.mark.parametrize("n", [1, 257, 600])
def test_cost_loss_against_numpy(cuda_ops, numpy_ops, cost_type, n):
    rng = np.random.default_rng(n)
    x = (rng.normal(size=n) * 2).astype(np.float32)
    truth = (rng.normal(size=n) * 2).astype(np.float32)
    truth[::4] = -1234
    cost, grad = cuda_ops.cost_loss(*on_device(cuda_ops, x, truth), cost_type, 0.7)
    diff = truth.astype(np.float64) - x
    if cost_type == "masked":
        diff[truth == -1234] = 0
    error = diff * diff
    if cost_type == "smooth":
        large = np.abs(diff) >= 1
        error[large] = 2 * np.abs(diff[large]) - 1
        diff[large] = np.sign(diff[large])
    np.testing.assert_allclose(host(cuda_ops, grad), -0.7 * diff, rtol=1e-6, atol=1e-6)
    assert cost == pytest.approx(float(error.sum()), rel=1e-5)
    assert cost == pytest.approx(numpy_ops.cost_loss(x, truth, cost_type, 0.7)[0], rel=1e-5)


# -- dropout ------------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 255, 257, 1000])
@pytest.mark.parametrize("probability", [0.0, 0.3, 0.9, 1.0])
def test_dropout_mask_is_the_numpy_engines(cuda_ops, numpy_ops, n, probability):
    """The same seed gives the same mask bit for bit on both engines (the counter-based generator of
    backend.dropout_uniform, whose values test_engine_layers checks against a splitmix64 transcription)."""
    x = np.random.default_rng(n).normal(size=n).astype(np.float32)
    seed = 2 ** 63 - 12345 + n
    got = host(cuda_ops, cuda_ops.dropout(cuda_ops.asarray(x), probability, seed))
    want = numpy_ops.dropout(x, probability, seed)
    np.testing.assert_array_equal(got, want)
    dropped = dropout_uniform(seed, n) < np.float32(probability)
    np.testing.assert_array_equal(got == 0, dropped | (x == 0))


# -- heads --------------------------------------------------------------------------------------------------------
HEAD_PLANES = {   # (values per anchor, logistic, scaled): [yolo], [yolo] new_coords=1, [Gaussian_yolo]
    "yolo": (7, [slice(0, 2), slice(4, None)], [slice(0, 2)]),
    "yolo_new_coords": (7, [], [slice(0, 2)]),
    "gaussian_yolo": (12, [slice(0, 4), 5, 7, slice(8, None)], [0, 2]),
    "many_classes": (45, [slice(0, 2), slice(4, None)], [slice(0, 2)]),
}


@pytest.mark.parametrize("head", sorted(HEAD_PLANES))
@pytest.mark.parametrize("h, w", [(1, 1), (3, 5), (13, 11)])
def test_head_activation_against_numpy(cuda_ops, numpy_ops, head, h, w):
    values, logistic, scaled = HEAD_PLANES[head]
    rng = np.random.default_rng(values + h)
    x = (rng.normal(size=(2, 3, values, h, w)) * 3).astype(np.float32)
    dy = rng.normal(size=x.shape).astype(np.float32)
    alpha, beta = np.float32(1.05), np.float32(-0.025)
    got = cuda_ops.head_activation(cuda_ops.asarray(x), logistic, scaled, alpha, beta)
    np.testing.assert_allclose(host(cuda_ops, got), numpy_ops.head_activation(x, logistic, scaled, alpha, beta),
                               rtol=2e-6, atol=2e-7)
    dx = cuda_ops.head_activation_backward(*on_device(cuda_ops, x, dy), logistic, scaled, alpha)
    np.testing.assert_allclose(host(cuda_ops, dx), numpy_ops.head_activation_backward(x, dy, logistic, scaled, alpha),
                               rtol=2e-6, atol=2e-7)


def test_head_value_sets(cuda_ops):
    assert cuda_ops._value_set([slice(0, 4), 5, 7, slice(8, None)], 12) == (0b101111, 7)     # 7 onwards: the tail
    assert cuda_ops._value_set([], 7) == (0, 7)
    assert cuda_ops._value_set([slice(0, 2)], 85) == (0b11, 85)
    with pytest.raises(ValueError, match="below 32"):
        cuda_ops._value_set([40], 85)


@pytest.mark.parametrize("softmax", [0, 1])
@pytest.mark.parametrize("anchors, values, h, w", [(2, 8, 3, 2), (5, 25, 5, 7), (1, 6, 1, 1)])
def test_region_activation_against_numpy(cuda_ops, numpy_ops, softmax, anchors, values, h, w):
    rng = np.random.default_rng(values + softmax)
    x = (rng.normal(size=(2, anchors * values, h, w)) * 3).astype(np.float32)
    y = cuda_ops.region_activation(cuda_ops.asarray(x), anchors, softmax)
    want = numpy_ops.region_activation(x, anchors, softmax)
    np.testing.assert_allclose(host(cuda_ops, y), want, rtol=2e-6, atol=2e-7)
    dy = rng.normal(size=want.shape).astype(np.float32)
    dx = cuda_ops.region_activation_backward(cuda_ops.asarray(x), y, cuda_ops.asarray(dy), anchors, softmax)
    np.testing.assert_allclose(host(cuda_ops, dx), numpy_ops.region_activation_backward(x, want, dy, anchors, softmax),
                               rtol=1e-5, atol=1e-6)


# -- optimizer ----------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("n", [1, 257, 1000])
@pytest.mark.parametrize("decay, clip", [(0.0, 0.0), (0.02, 0.0), (0.02, 0.3)])
def test_sgd_and_adam_updates_against_numpy(cuda_ops, numpy_ops, n, decay, clip):
    rng = np.random.default_rng(n)
    w, grad, state, state2 = (rng.normal(size=n).astype(np.float32) for _ in range(4))
    state2 = np.abs(state2)
    arrays = on_device(cuda_ops, w, grad, state)
    cuda_ops.sgd_update(*arrays, 0.01, 0.9, decay, clip)
    cpu = [a.copy() for a in (w, grad, state)]
    numpy_ops.sgd_update(*cpu, 0.01, 0.9, decay, clip)
    for got, want, what in zip(arrays, cpu, ("w", "grad", "velocity")):
        np.testing.assert_allclose(host(cuda_ops, got), want, rtol=1e-6, atol=1e-7, err_msg=what)
    if clip:
        assert np.abs(host(cuda_ops, arrays[0])).max() <= np.float32(clip)

    arrays = on_device(cuda_ops, w, grad, state, state2)
    cuda_ops.adam_update(*arrays, 0.01, 0.9, 0.999, 1e-6, 3, decay, clip)
    cpu = [a.copy() for a in (w, grad, state, state2)]
    numpy_ops.adam_update(*cpu, 0.01, 0.9, 0.999, 1e-6, 3, decay, clip)
    for got, want, what in zip(arrays, cpu, ("w", "grad", "m", "v")):
        np.testing.assert_allclose(host(cuda_ops, got), want, rtol=1e-6, atol=1e-7, err_msg=what)


def test_optimizer_refuses_mismatched_state(cuda_ops):
    with pytest.raises(ValueError, match="differ"):
        cuda_ops.sgd_update(cuda_ops.zeros(4), cuda_ops.zeros(4), cuda_ops.zeros(5), 0.1, 0.9, 0.0, 0.0)


# -- layers: CPU engine against CUDA engine -----------------------------------------------------------------------
def engines(tmp_path, device, *sections, size=(3, 2, 12)):
    """The layers `sections` on the network input of `size` (w, h, c), batch 2, on both engines (compare_engines
    checks the input delta too, so no layer is needed before them)."""
    return engine_pair(tmp_path, net_cfg(*size, *sections), device, batch=2)


def image(net, seed=0, scale=2.0):
    shape = (2, net.channels, net.height, net.width)
    return (np.random.default_rng(seed).normal(size=shape) * scale).astype(np.float32)


def one_hot(net, seed=0, smooth=0.0):
    outputs = net.layers[-1].outputs
    truth = np.full((2, outputs), smooth / outputs, np.float32)
    truth[np.arange(2), np.random.default_rng(seed).integers(0, outputs, 2)] += 1 - smooth
    return truth


@pytest.mark.parametrize("options", [{}, {"groups": 3}, {"groups": 4, "temperature": 0.5}, {"temperature": 2.0}],
                         ids=str)
def test_softmax_layer(tmp_path, cuda_device, options):
    cpu, gpu = engines(tmp_path, cuda_device, ("softmax", options))
    x = image(cpu)
    compare_engines(cpu, gpu, x)
    compare_engines(cpu, gpu, x, truth=one_hot(cpu))


def test_softmax_loss_with_smoothed_truth_and_noloss(tmp_path, cuda_device):
    cpu, gpu = engines(tmp_path, cuda_device, ("softmax", {"groups": 2}))
    compare_engines(cpu, gpu, image(cpu, 1), truth=one_hot(cpu, 1, smooth=0.1))
    cpu, gpu = engines(tmp_path, cuda_device, ("softmax", {"noloss": 1}), ("cost", {}))
    compare_engines(cpu, gpu, image(cpu, 2), truth=one_hot(cpu, 2))


@pytest.mark.parametrize("cost_type", ["sse", "masked", "smooth"])
def test_cost_layer(tmp_path, cuda_device, cost_type):
    cpu, gpu = engines(tmp_path, cuda_device, ("cost", {"type": cost_type, "scale": 0.5}))
    x = image(cpu, 3)
    truth = np.random.default_rng(4).normal(size=(2, cpu.layers[-1].outputs)).astype(np.float32) * 2
    truth[:, ::5] = -1234
    compare_engines(cpu, gpu, x, truth=truth)
    compare_engines(cpu, gpu, x, train=False, backward=False)
    cpu, gpu = engines(tmp_path, cuda_device, ("softmax", {}), ("cost", {"type": cost_type}))
    compare_engines(cpu, gpu, x, truth=one_hot(cpu, 5))


@pytest.mark.parametrize("probability", [0.3, 0.0, 1.0])
def test_dropout_layer(tmp_path, cuda_device, probability):
    cpu, gpu = engines(tmp_path, cuda_device, ("dropout", {"probability": probability}), size=(5, 3, 7))
    x = image(cpu, 6)
    seeds = []
    for _ in range(2):    # a new mask every training forward, the same on both engines
        compare_engines(cpu, gpu, x, rtol=0)
        assert cpu.layers[0].mask_seed == gpu.layers[0].mask_seed
        seeds.append(cpu.layers[0].mask_seed)
    assert seeds[0] != seeds[1]
    if probability == 0.3:
        assert 0.15 < np.mean(cpu.layers[0].output == 0) < 0.45
    compare_engines(cpu, gpu, x, train=False, rtol=0)


YOLO = {"mask": "0,1", "anchors": "10,13, 16,30, 33,23", "classes": 2, "num": 3}


def yolo_truth(net, seed, boxes=3):
    head = net.layers[-1]
    rng = np.random.default_rng(seed)
    truth = np.zeros((2, head.max_boxes, 5), np.float32)
    for b in range(2):
        truth[b, :boxes, :2] = rng.uniform(0.05, 0.95, (boxes, 2))
        truth[b, :boxes, 2:4] = rng.uniform(0.1, 0.9, (boxes, 2))
        truth[b, :boxes, 4] = rng.integers(0, head.classes, boxes)
    return truth


@pytest.mark.parametrize("options", [{}, {"scale_x_y": 1.05}, {"new_coords": 1, "scale_x_y": 2.0},
                                     {"iou_loss": "ciou", "iou_normalizer": 0.07, "scale_x_y": 1.2,
                                      "ignore_thresh": 0.2}], ids=str)
def test_yolo_layer(tmp_path, cuda_device, options):
    cpu, gpu = engines(tmp_path, cuda_device, ("yolo", dict(YOLO, **options)), size=(5, 4, 14))
    x = image(cpu, 7)
    compare_engines(cpu, gpu, x)
    compare_engines(cpu, gpu, x, truth=yolo_truth(cpu, 8))
    assert gpu.layers[-1].loss_line == cpu.layers[-1].loss_line


def test_gaussian_yolo_layer(tmp_path, cuda_device):
    options = {"mask": "0,1", "anchors": "10,13, 16,30", "classes": 3, "num": 2, "scale_x_y": 1.1}
    cpu, gpu = engines(tmp_path, cuda_device, ("Gaussian_yolo", options), size=(5, 3, 24))
    compare_engines(cpu, gpu, image(cpu, 9))
    compare_engines(cpu, gpu, image(cpu, 9), train=False, backward=False)


@pytest.mark.parametrize("softmax", [0, 1])
def test_region_layer(tmp_path, cuda_device, softmax):
    options = {"classes": 3, "num": 2, "coords": 4, "softmax": softmax, "anchors": "0.6,0.8, 1.5,1.2"}
    cpu, gpu = engines(tmp_path, cuda_device, ("region", options), size=(5, 4, 16))
    x = image(cpu, 10, scale=1.0)
    compare_engines(cpu, gpu, x)
    compare_engines(cpu, gpu, x, truth=yolo_truth(cpu, 11))
    assert gpu.layers[-1].loss_line == cpu.layers[-1].loss_line


@pytest.mark.parametrize("softmax", [0, 1])
def test_detection_layer(tmp_path, cuda_device, softmax):
    options = {"side": 2, "num": 2, "coords": 4, "classes": 3, "softmax": softmax}
    cpu, gpu = engines(tmp_path, cuda_device, ("detection", options), size=(2, 2, 13))
    compare_engines(cpu, gpu, image(cpu, 12))


# -- the weight update on both engines ----------------------------------------------------------------------------
UPDATE_NET = (("convolutional", {"filters": 4, "size": 3, "pad": 1, "batch_normalize": 1, "activation": "leaky",
                                 "clip": 0.05, "learning_rate": 0.5}),
              ("connected", {"output": 5, "activation": "linear"}),
              ("convolutional", {"filters": 3, "size": 1, "activation": "linear"}))


@pytest.mark.parametrize("adam", [0, 1])
def test_update_network_on_both_engines(tmp_path, cuda_device, adam):
    """Two update_network steps (momentum and Adam state carried over) from the same gradients: the CUDA engine's
    weights, kept on the device and updated in place, equal the CPU engine's."""
    cfg = net_cfg(4, 3, 2, *UPDATE_NET, batch=2, subdivisions=1, momentum=0.9, decay=0.01, learning_rate=0.1,
                  adam=adam, B1=0.8, B2=0.95, eps=1e-6)
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device)
    rng = np.random.default_rng(13)
    device_weights = {}
    device_array = type(gpu.ops.asarray(np.zeros(1)))
    for step in range(2):
        for net in (cpu, gpu):
            net.seen += 2
        for mine, theirs in zip(gpu.layers, cpu.layers):
            grads = {name: rng.normal(size=theirs.weights[name].shape).astype(np.float32)
                     for name in theirs.weights if name not in ("rolling_mean", "rolling_variance")}
            theirs.grads = {name: g.copy() for name, g in grads.items()}
            mine.grads = {name: gpu.ops.asarray(g) for name, g in grads.items()}
        update_network(cpu)
        update_network(gpu)
        for mine, theirs in zip(gpu.layers, cpu.layers):
            for name in theirs.weights:
                if name in ("rolling_mean", "rolling_variance"):
                    continue
                want, got = theirs.weights[name], mine.weights[name]
                assert isinstance(got, device_array), f"layer {theirs.index} {name} left the device"
                if step:
                    assert got is device_weights[theirs.index, name], f"layer {theirs.index} {name}: not in place"
                device_weights[theirs.index, name] = got
                np.testing.assert_allclose(host(gpu.ops, got), want, rtol=1e-5, atol=1e-6,
                                           err_msg=f"step {step} layer {theirs.index} {name}")
    assert np.abs(cpu.layers[0].weights["weights"]).max() <= np.float32(0.05)   # clip applied


def test_check_finite_reads_device_outputs(tmp_path, cuda_device):
    from darknet_py.training import TrainingDiverged, check_finite
    _, gpu = engines(tmp_path, cuda_device, ("softmax", {}))
    x = image(gpu, 14)
    gpu.forward(x)
    with pytest.raises(TrainingDiverged, match="the loss only"):
        check_finite(gpu, float("nan"), 1)
    x[0, 0, 0, 0] = np.nan
    gpu.forward(x)
    with pytest.raises(TrainingDiverged, match=r"layer 0 \[softmax\]"):
        check_finite(gpu, float("nan"), 3)


# -- whole training iterations of small convolutional networks ----------------------------------------------------
CLASSIFIER = (("convolutional", {"filters": 6, "size": 3, "pad": 1, "batch_normalize": 1, "activation": "leaky"}),
              ("dropout", {"probability": 0.25}),
              ("convolutional", {"filters": 4, "size": 3, "stride": 2, "pad": 1, "activation": "mish",
                                 "clip": 0.2}),
              ("connected", {"output": 5, "activation": "linear"}),
              ("softmax", {}))
DETECTOR = (("convolutional", {"filters": 6, "size": 3, "pad": 1, "batch_normalize": 1, "activation": "leaky"}),
            ("convolutional", {"filters": 14, "size": 1, "activation": "linear"}),
            ("yolo", dict(YOLO, scale_x_y=1.05, iou_loss="ciou", iou_normalizer=0.07)))


@pytest.mark.parametrize("adam", [0, 1])
@pytest.mark.parametrize("head", ["classifier", "detector"])
def test_train_iterations_on_both_engines(tmp_path, cuda_device, head, adam):
    """train_iteration (training.py: forward with truth, backward and update over 2 subdivisions) twice on the same
    data: the loss and every weight (BN running statistics included) equal on both engines."""
    sections = CLASSIFIER if head == "classifier" else DETECTOR
    cfg = net_cfg(6, 6, 3, *sections, batch=4, subdivisions=2, momentum=0.9, decay=0.005, learning_rate=0.05,
                  adam=adam, B1=0.8, B2=0.95, eps=1e-6)
    cpu, gpu = engine_pair(tmp_path, cfg, cuda_device, batch=2)
    rng = np.random.default_rng(15)
    batches = []
    for _ in range(4):
        x = rng.uniform(0, 1, (2, 3, 6, 6)).astype(np.float32)
        batches.append((x, one_hot(cpu, len(batches)) if head == "classifier" else yolo_truth(cpu, len(batches))))
    for net in (cpu, gpu):
        data = iter(batches)
        net.losses = [train_iteration(net, lambda: next(data)) for _ in range(2)]
    np.testing.assert_allclose(gpu.losses, cpu.losses, rtol=1e-5)
    for mine, theirs in zip(gpu.layers, cpu.layers):
        for name, want in theirs.weights.items():
            got = host(gpu.ops, mine.weights[name])
            scale = np.abs(want).max()
            np.testing.assert_allclose(got, want, rtol=0, atol=1e-5 * scale, err_msg=f"layer {theirs.index} {name}")
