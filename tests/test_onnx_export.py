"""ONNX export: onnx.checker passes and onnxruntime (CPU) on the exported file gives our CPU engine's outputs
within 1e-4 of their largest |value|, for darknet's cfgs with well-scaled random weights on dog.jpg, and for
small cfgs exercising every exotic option; decoded boxes against darknet's formulas computed here and against
the detector's decoding + NMS; DLPack in and out of Network.forward."""
import numpy as np
import pytest

from conftest import REPO, SHARED, load_quiet, one_error_line
from reference_nets import image_blob, reference_net, well_scaled_weights

onnx = pytest.importorskip("onnx")
ort = pytest.importorskip("onnxruntime")

from darknet_py.activations import ACTIVATIONS  # noqa: E402
from darknet_py.cli import main  # noqa: E402
from darknet_py.errors import DarknetError  # noqa: E402

TOLERANCE = 1e-4
HEADS = ("yolo", "Gaussian_yolo", "region", "detection")


def session(path):
    return ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])


def exported_layer(net, output_name):
    """The layer whose output an ONNX graph output carries (`<type>_<index>`, or `output` = the last layer)."""
    if output_name == "output":
        return net.layers[-1]
    return net.layers[int(output_name.rsplit("_", 1)[1])]


def assert_outputs_match(net, model_path, x):
    """Run the engine and onnxruntime on x; every ONNX output equals the engine's layer output."""
    model = onnx.load(str(model_path))
    onnx.checker.check_model(model, full_check=True)
    net.forward(x)
    sess = session(model_path)
    names = [o.name for o in sess.get_outputs()]
    results = sess.run(None, {"input": x})
    heads = [layer for layer in net.layers if layer.kind in HEADS]
    expected = [f"{layer.kind}_{layer.index}" for layer in heads] or ["output"]
    assert [n for n in names if n not in ("boxes", "scores")] == expected
    for name, theirs in zip(names, results):
        if name in ("boxes", "scores"):
            continue
        ours = np.asarray(exported_layer(net, name).output)
        assert theirs.shape == ours.shape, name
        scale = float(np.max(np.abs(ours)))
        error = float(np.max(np.abs(theirs - ours))) / scale
        assert error <= TOLERANCE, f"{name}: relative error {error:.2e}"
    return dict(zip(names, results))


# -- darknet's cfgs ------------------------------------------------------------------------------------------
SLOW = pytest.mark.slow
REAL_CFGS = [
    pytest.param("yolov4-tiny", id="yolov4-tiny"),
    pytest.param("yolov2", id="yolov2-region-reorg", marks=SLOW),
    pytest.param("efficientnet_b0", id="efficientnet_b0"),
    pytest.param("yolov3-tiny", id="yolov3-tiny", marks=SLOW),
    pytest.param("yolov4", id="yolov4", marks=SLOW),
    pytest.param("yolov7-tiny", id="yolov7-tiny"),
    pytest.param("yolov4-csp-s-mish", id="yolov4-csp-s-mish", marks=SLOW),
    pytest.param("enet-coco", id="enet-coco"),
    pytest.param("Gaussian_yolov3_BDD", id="Gaussian_yolov3_BDD", marks=SLOW),
    pytest.param(REPO / "cfg" / "mixnet_m.cfg", id="mixnet_m", marks=SLOW),
]


def cfg_path(shared, name):
    return name if not isinstance(name, str) else shared / "cfg" / f"{name}.cfg"


@pytest.mark.parametrize("name", REAL_CFGS)
def test_real_cfg_matches_engine(shared, tmp_path, name):
    net = reference_net(cfg_path(shared, name), tmp_path / "net.weights")
    x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
    net.export_onnx(tmp_path / "net.onnx")
    assert_outputs_match(net, tmp_path / "net.onnx", x)


@pytest.mark.parametrize("name", ["yolov4-tiny", "efficientnet_b0"])
def test_opencv_dnn_runs_the_export(shared, tmp_path, name):
    """A second runtime: OpenCV's own ONNX importer (4.x here; tools/check_opencv5.sh does the same with 5.x)."""
    cv2 = pytest.importorskip("cv2")
    net = reference_net(shared / "cfg" / f"{name}.cfg", tmp_path / "net.weights")
    x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
    net.forward(x)
    model = net.export_onnx(tmp_path / "net.onnx")
    cvnet = cv2.dnn.readNetFromONNX(str(tmp_path / "net.onnx"))
    cvnet.setInput(x)
    names = [o.name for o in model.graph.output]
    for name, theirs in zip(names, cvnet.forward(names)):
        ours = np.asarray(exported_layer(net, name).output)
        error = float(np.max(np.abs(theirs.reshape(ours.shape) - ours))) / float(np.max(np.abs(ours)))
        assert error <= TOLERANCE, f"{name}: relative error {error:.2e}"


def test_dynamic_batch_and_fixed_batch(shared, tmp_path):
    net = reference_net(shared / "cfg" / "yolov3-tiny.cfg", tmp_path / "net.weights")
    images = [image_blob(shared / "data" / name, net.width, net.height) for name in ("dog.jpg", "horses.jpg")]
    x = np.concatenate(images)
    net.export_onnx(tmp_path / "dynamic.onnx")
    assert_outputs_match(net, tmp_path / "dynamic.onnx", x)
    net.export_onnx(tmp_path / "fixed.onnx", batch=2)
    dims = onnx.load(str(tmp_path / "fixed.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert [d.dim_value for d in dims] == [2, 3, net.height, net.width]
    dims = onnx.load(str(tmp_path / "dynamic.onnx")).graph.input[0].type.tensor_type.shape.dim
    assert dims[0].dim_param == "batch"


# -- small cfgs, one per exotic option --------------------------------------------------------------------
def cfg_text(width, height, channels, body):
    return f"[net]\nbatch=1\nwidth={width}\nheight={height}\nchannels={channels}\n\n{body}"


CONV = "[convolutional]\nbatch_normalize=1\nfilters={f}\nsize={k}\nstride=1\npad=1\nactivation={a}\n\n"


def conv(filters=8, size=3, activation="leaky"):
    return CONV.format(f=filters, k=size, a=activation)


SYNTHETIC = {
    "conv_strides_dilation_groups": (15, 13, 4, conv(8) +
        "[convolutional]\nfilters=6\nsize=3\nstride_x=2\nstride_y=1\npad=1\ngroups=2\nactivation=linear\n\n"
        "[convolutional]\nfilters=6\nsize=3\ndilation=2\npad=1\nactivation=leaky\n\n"
        "[convolutional]\nfilters=6\nsize=3\nstride=2\npadding=0\nactivation=linear\n\n"
        "[convolutional]\nbatch_normalize=1\nfilters=6\nsize=3\ngroups=6\npad=1\nactivation=swish\n"),
    "maxpool_stride_xy_and_padding": (15, 13, 3, conv(6) +
        "[maxpool]\nsize=3\nstride_x=2\nstride_y=1\n\n[maxpool]\nsize=5\nstride=1\n\n"
        "[maxpool]\nsize=2\nstride=2\n\n[maxpool]\nsize=3\nstride=2\npadding=0\n"),
    "maxpool_depth": (8, 8, 3, conv(7) + "[maxpool]\nmaxpool_depth=1\nout_channels=3\n"),
    "maxpool_depth_fewer_channels": (8, 8, 3, conv(2) + "[maxpool]\nmaxpool_depth=1\nout_channels=3\n"),
    "spp": (13, 13, 3, conv(8) + "[maxpool]\nsize=5\nstride=1\n\n[route]\nlayers=-2\n\n[maxpool]\nsize=9\nstride=1\n\n"
            "[route]\nlayers=-1,-3,-4\n"),
    "local_avgpool_and_avgpool": (15, 13, 3, conv(6) + "[local_avgpool]\nsize=3\nstride=2\n\n"
                                  "[local_avgpool]\nsize=2\nstride_x=1\nstride_y=2\n\n[avgpool]\n"),
    "shortcut_per_channel_softmax_multi_from": (8, 8, 3, conv(6) + conv(6) + conv(6) +
        "[shortcut]\nfrom=-2,-3\nweights_type=per_channel\nweights_normalization=softmax\nactivation=linear\n"),
    "shortcut_per_feature_relu": (8, 8, 3, conv(6) + conv(6) +
        "[shortcut]\nfrom=-2\nweights_type=per_feature\nweights_normalization=relu\nactivation=mish\n"),
    "shortcut_channel_mismatch": (8, 8, 3, conv(4) + conv(6) + conv(8) + "[shortcut]\nfrom=-3,-2\nactivation=leaky\n"),
    "route_groups": (8, 8, 3, conv(8) + conv(6) + "[route]\nlayers=-1,-2\ngroups=2\ngroup_id=1\n\n"
                     "[route]\nlayers=-3\ngroups=4\ngroup_id=3\n\n[route]\nlayers=-1,-2\n"),
    "route_groups_mid_channel": (5, 5, 3, conv(3) + conv(5) + "[route]\nlayers=-2,-1\ngroups=2\ngroup_id=1\n"),
    "upsample_and_downsample": (8, 8, 3, conv(4) + "[upsample]\nstride=2\n\n[upsample]\nstride=-4\nscale=0.5\n\n"
                                "[upsample]\nstride=3\nscale=2\n"),
    "reorg_yolov2": (8, 8, 3, conv(8) + "[reorg]\nstride=2\n"),
    "reorg_reverse": (4, 4, 3, conv(8) + "[reorg]\nstride=2\nreverse=1\n"),
    "reorg3d": (8, 8, 3, conv(4) + "[reorg3d]\nstride=2\n"),
    "reorg3d_reverse": (4, 4, 3, conv(16) + "[reorg3d]\nstride=2\nreverse=1\n"),
    "scale_channels_se": (8, 8, 3, conv(6) + "[avgpool]\n\n[convolutional]\nfilters=6\nsize=1\nactivation=logistic\n\n"
                          "[scale_channels]\nfrom=-3\n"),
    "scale_channels_scale_wh": (8, 8, 3, conv(6) + "[convolutional]\nfilters=1\nsize=1\nactivation=logistic\n\n"
                                "[scale_channels]\nfrom=-2\nscale_wh=1\nactivation=leaky\n"),
    "sam": (8, 8, 3, conv(6) + "[convolutional]\nfilters=6\nsize=1\nactivation=logistic\n\n[sam]\nfrom=-2\n"),
    "softmax_groups": (4, 4, 3, conv(6) + "[softmax]\ngroups=6\ntemperature=2\n"),
    "connected_bn_dropout_softmax": (6, 6, 3, conv(4) + "[dropout]\nprobability=.5\n\n"
                                     "[connected]\noutput=10\nbatch_normalize=1\nactivation=relu\n\n"
                                     "[connected]\noutput=7\nactivation=linear\n\n[softmax]\n\n[cost]\n"),
    "batchnorm_and_crop": (10, 10, 3, conv(4) + "[batchnorm]\n\n[crop]\ncrop_width=7\ncrop_height=5\n\n"
                           "[crop]\ncrop_width=4\ncrop_height=4\nnoadjust=1\n"),
    "yolo_scale_x_y": (16, 16, 3, conv(8) +
        "[convolutional]\nfilters=24\nsize=1\nactivation=linear\n\n"
        "[yolo]\nmask=0,1,2\nanchors=2,3, 4,5, 6,7, 8,9\nclasses=3\nnum=4\nscale_x_y=1.1\n"),
    "yolo_new_coords": (16, 16, 3, conv(8) +
        "[convolutional]\nfilters=16\nsize=1\nactivation=logistic\n\n"
        "[yolo]\nmask=1,3\nanchors=2,3, 4,5, 6,7, 8,9\nclasses=3\nnum=4\nnew_coords=1\nscale_x_y=2.0\n"),
    "region": (16, 16, 3, conv(8) + "[convolutional]\nfilters=18\nsize=1\nactivation=linear\n\n"
               "[region]\nanchors=1,1.5, 2,2.5\nclasses=4\ncoords=4\nnum=2\nsoftmax=1\n"),
    "gaussian_yolo_left_top": (16, 16, 3, conv(8) + "[convolutional]\nfilters=22\nsize=1\nactivation=linear\n\n"
                               "[Gaussian_yolo]\nmask=0,1\nanchors=2,3, 4,5\nclasses=2\nnum=2\n"
                               "yolo_point=left_top\nscale_x_y=1.2\n"),
    "detection_v1": (8, 8, 3, conv(4) + "[connected]\noutput=63\nactivation=linear\n\n"
                     "[detection]\nclasses=2\ncoords=4\nnum=1\nside=3\nsoftmax=1\n"),
}


def synthetic_net(tmp_path, body_spec, seed=0):
    width, height, channels, body = body_spec
    cfg = tmp_path / "net.cfg"
    cfg.write_text(cfg_text(width, height, channels, body))
    net = well_scaled_weights(load_quiet(cfg), seed)
    x = np.random.default_rng(seed).normal(0, 1, (1, channels, height, width)).astype(np.float32)
    return net, x


@pytest.mark.parametrize("name", list(SYNTHETIC))
def test_synthetic_option_matches_engine(tmp_path, name):
    net, x = synthetic_net(tmp_path, SYNTHETIC[name])
    net.export_onnx(tmp_path / "net.onnx")
    assert_outputs_match(net, tmp_path / "net.onnx", x)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_every_activation_matches_engine(tmp_path, activation):
    # wide inputs reach every branch: mish's softplus thresholds at +-20, plse at +-4, hard_mish at -2
    body = ("[convolutional]\nfilters=8\nsize=1\nactivation=linear\n\n"
            f"[convolutional]\nfilters=8\nsize=3\npad=1\nactivation={activation}\n\n"
            f"[shortcut]\nfrom=-2\nactivation={activation}\n")
    net, x = synthetic_net(tmp_path, (6, 6, 3, body))
    x *= 12
    net.export_onnx(tmp_path / "net.onnx")
    assert_outputs_match(net, tmp_path / "net.onnx", x)


@pytest.mark.parametrize("opset", [13, 18, 21])
def test_opsets_with_reduce_operators(tmp_path, opset):
    """ReduceMax/ReduceSum take their axes as an attribute or an input depending on the opset."""
    body = ("[convolutional]\nfilters=8\nsize=1\nactivation=normalize_channels_softmax_maxval\n\n"
            "[convolutional]\nfilters=10\nsize=1\nactivation=normalize_channels\n\n"
            "[Gaussian_yolo]\nmask=0\nanchors=2,3\nclasses=1\nnum=1\n")
    net, x = synthetic_net(tmp_path, (6, 6, 3, body))
    model = net.export_onnx(tmp_path / "net.onnx", opset=opset, boxes=True)
    assert model.opset_import[0].version == opset
    assert_outputs_match(net, tmp_path / "net.onnx", x)


def test_reorg_is_not_onnx_space_to_depth(tmp_path):
    """Darknet's [reorg] order differs from SpaceToDepth (which [reorg3d] matches): the export follows ours."""
    net, x = synthetic_net(tmp_path, (8, 8, 3, conv(8) + "[reorg]\nstride=2\n"))
    net.forward(x)
    from onnx import helper, TensorProto
    node = helper.make_node("SpaceToDepth", ["x"], ["y"], blocksize=2)
    graph = helper.make_graph([node], "s2d", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 8, 8, 8])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 32, 4, 4])])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    s2d = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    space_to_depth = s2d.run(None, {"x": net.layers[0].output})[0]
    assert not np.allclose(space_to_depth, net.layers[1].output)
    net.export_onnx(tmp_path / "net.onnx")
    assert_outputs_match(net, tmp_path / "net.onnx", x)


def test_batch_normalization_is_folded_with_darknets_formula(tmp_path):
    net, x = synthetic_net(tmp_path, (6, 6, 3, conv(4, activation="linear")))
    model = net.export_onnx(tmp_path / "net.onnx")
    assert [n.op_type for n in model.graph.node] == ["Conv", "Identity"]
    values = {i.name: onnx.numpy_helper.to_array(i) for i in model.graph.initializer}
    w = net.layers[0].weights
    scale = w["scales"].astype(np.float64) / np.sqrt(w["rolling_variance"].astype(np.float64) + .00001)
    folded_bias = w["biases"] - scale * w["rolling_mean"]
    weights = [v for k, v in values.items() if k.endswith("weights")][0]
    biases = [v for k, v in values.items() if k.endswith("biases")][0]
    np.testing.assert_allclose(weights, w["weights"].reshape(weights.shape) * scale[:, None, None, None], rtol=1e-6)
    np.testing.assert_allclose(biases, folded_bias, rtol=1e-6, atol=1e-7)


# -- decoded boxes -----------------------------------------------------------------------------------------
def logistic(v):
    return 1 / (1 + np.exp(-v.astype(np.float64)))


def reference_boxes(net):
    """Darknet's get_yolo_box / get_region_box / get_gaussian_yolo_box and detection probabilities, computed
    here from the engine's head outputs, in network-input pixels, (anchor, row, column) order for yolo heads and
    (position, anchor) for region: (boxes x1 y1 x2 y2, scores)."""
    boxes, scores = [], []
    for layer in net.layers:
        if layer.kind not in ("yolo", "Gaussian_yolo", "region"):
            continue
        out = np.asarray(layer.output[0], np.float64)
        if layer.kind == "region":
            t = out.reshape(layer.h * layer.w, layer.n, -1)
            rows, cols = np.divmod(np.arange(layer.h * layer.w), layer.w)
            anchors = np.asarray(layer.anchors).reshape(-1, 2)
            cx = (cols[:, None] + logistic(t[..., 0])) / layer.w
            cy = (rows[:, None] + logistic(t[..., 1])) / layer.h
            bw = np.exp(t[..., 2]) * anchors[:, 0] / layer.w
            bh = np.exp(t[..., 3]) * anchors[:, 1] / layer.h
            prob = t[..., 4:5] * t[..., 5:]
        else:
            t = out.reshape(layer.n, -1, layer.h, layer.w).transpose(0, 2, 3, 1)     # anchor, row, col, value
            rows, cols = np.meshgrid(np.arange(layer.h), np.arange(layer.w), indexing="ij")
            anchors = np.asarray(layer.anchors).reshape(-1, 2)[layer.mask]
            aw, ah = anchors[:, 0, None, None], anchors[:, 1, None, None]
            gauss = layer.kind == "Gaussian_yolo"
            x, y, w, h, obj = (0, 2, 4, 6, 8) if gauss else (0, 1, 2, 3, 4)
            cx = (cols + t[..., x]) / layer.w
            cy = (rows + t[..., y]) / layer.h
            if getattr(layer, "new_coords", 0):
                bw, bh = t[..., w] ** 2 * 4 * aw / net.width, t[..., h] ** 2 * 4 * ah / net.height
            else:
                bw, bh = np.exp(t[..., w]) * aw / net.width, np.exp(t[..., h]) * ah / net.height
            prob = t[..., obj:obj + 1] * t[..., obj + 1:]
            if gauss:
                prob = prob * (1 - (t[..., 1] + t[..., 3] + t[..., 5] + t[..., 7])[..., None] / 4)
                shift = {"center": 0, "left_top": 0.5, "right_bottom": -0.5}[layer.yolo_point]
                cx, cy = cx + shift * bw, cy + shift * bh
        corners = np.stack([cx - bw / 2, cy - bh / 2, cx + bw / 2, cy + bh / 2], -1) * np.array([net.width, net.height] * 2)
        boxes.append(corners.reshape(-1, 4))
        scores.append(prob.reshape(-1, layer.classes))
    return np.concatenate(boxes), np.concatenate(scores)


BOX_CFGS = [
    pytest.param("yolov4-tiny", id="yolov4-tiny"),
    pytest.param("yolov2", id="yolov2-region", marks=SLOW),
    pytest.param("yolov4-csp-s-mish", id="yolov4-csp-s-mish-new_coords", marks=SLOW),
    pytest.param("Gaussian_yolov3_BDD", id="Gaussian_yolov3_BDD", marks=SLOW),
]


def exported_boxes(net, tmp_path, x):
    net.export_onnx(tmp_path / "boxes.onnx", boxes=True)
    results = assert_outputs_match(net, tmp_path / "boxes.onnx", x)
    return results["boxes"][0], results["scores"][0]


@pytest.mark.parametrize("name", BOX_CFGS)
def test_boxes_match_darknets_decoding(shared, tmp_path, name):
    net = reference_net(shared / "cfg" / f"{name}.cfg", tmp_path / "net.weights")
    x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
    boxes, scores = exported_boxes(net, tmp_path, x)
    ref_boxes, ref_scores = reference_boxes(net)
    assert boxes.shape == ref_boxes.shape and scores.shape == ref_scores.shape
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-4, atol=1e-4 * max(net.width, net.height))
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)


@pytest.mark.parametrize("name", ["yolo_new_coords", "region", "gaussian_yolo_left_top"])
def test_boxes_of_synthetic_heads(tmp_path, name):
    net, x = synthetic_net(tmp_path, SYNTHETIC[name])
    boxes, scores = exported_boxes(net, tmp_path, x * 3)
    ref_boxes, ref_scores = reference_boxes(net)
    np.testing.assert_allclose(boxes, ref_boxes, rtol=1e-4, atol=1e-4 * net.width)
    np.testing.assert_allclose(scores, ref_scores, rtol=1e-4, atol=1e-5)


def gap_threshold(scores, count):
    """A threshold about `count` scores exceed, in the middle of a gap between sorted scores, so that float
    differences between two engines cannot move a score across it."""
    values = np.sort(scores.ravel())[::-1][:count * 2]
    gaps = values[:-1] - values[1:]
    i = count // 2 + int(np.argmax(gaps[count // 2:]))
    return float((values[i] + values[i + 1]) / 2)


@pytest.mark.parametrize("name", ["yolov4-tiny", pytest.param("yolov2", marks=SLOW)])
def test_boxes_after_nms_give_the_detectors_detections(shared, tmp_path, name):
    detection = pytest.importorskip("darknet_py.detection")
    net = reference_net(shared / "cfg" / f"{name}.cfg", tmp_path / "net.weights")
    x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
    boxes, scores = exported_boxes(net, tmp_path, x)
    thresh = gap_threshold(scores, 40)
    ours = detection.apply_nms(net, detection.network_boxes(net, net.width, net.height, thresh))
    # onnxruntime's candidates in the detector's form: relative centre/size, probabilities above thresh
    keep = (scores > thresh).any(axis=1)
    size = np.array([net.width, net.height] * 2, np.float32)
    rel = boxes[keep] / size
    xywh = np.stack([(rel[:, 0] + rel[:, 2]) / 2, (rel[:, 1] + rel[:, 3]) / 2, rel[:, 2] - rel[:, 0],
                     rel[:, 3] - rel[:, 1]], 1)
    probs = detection.thresholded(scores[keep], thresh)
    theirs = detection.apply_nms(net, detection.Detections(xywh, np.ones(len(xywh)), probs))

    def final(dets):
        found = sorted((int(k), *np.round(dets.boxes[i] * 1000).astype(int).tolist())
                       for i, k in zip(*np.nonzero(dets.probs)))
        return found

    assert len(final(ours)) > 5
    assert final(theirs) == final(ours)


# -- errors, CLI, DLPack -------------------------------------------------------------------------------------
def test_unsupported_option_names_layer_type_and_option(tmp_path):
    net, _ = synthetic_net(tmp_path, (4, 4, 3, conv(6) + "[softmax]\nspatial=1\n"))
    with pytest.raises(DarknetError, match=r"layer 1 \[softmax\] .*net.cfg:\d+\): spatial=1 cannot be exported"):
        net.export_onnx(tmp_path / "net.onnx")
    assert not (tmp_path / "net.onnx").exists()
    assert not list(tmp_path.glob(".onnx-*"))


def test_boxes_need_a_detection_head(tmp_path):
    net, _ = synthetic_net(tmp_path, (4, 4, 3, conv(6) + "[avgpool]\n"))
    with pytest.raises(DarknetError, match="--boxes needs a"):
        net.export_onnx(tmp_path / "net.onnx", boxes=True)


def test_cli_export(shared, tmp_path, capsys):
    cfg = shared / "cfg" / "yolov3-tiny.cfg"
    reference_net(cfg, tmp_path / "net.weights")
    out = tmp_path / "net.onnx"
    code = main(["export", str(cfg), str(tmp_path / "net.weights"), str(out), "--batch", "1", "--width", "320",
                 "--height", "192", "--opset", "13", "--boxes"])
    assert code == 0 and "Exported" in capsys.readouterr().out
    model = onnx.load(str(out))
    assert model.opset_import[0].version == 13
    assert [o.name for o in model.graph.output] == ["yolo_16", "yolo_23", "boxes", "scores"]
    small = load_quiet(cfg, width=320, height=192)
    from darknet_py.weights import load_weights
    load_weights(small, tmp_path / "net.weights")
    x = np.random.default_rng(0).uniform(0, 1, (1, 3, 192, 320)).astype(np.float32)
    assert_outputs_match(small, out, x)


@pytest.mark.parametrize("argv, message", [
    (["--opset", "7"], "opset 7: expected 13.."),
    (["--batch", "0"], "argument --batch: expected an integer in 1..2147483647; got '0'"),
])
def test_cli_export_errors(shared, tmp_path, capsys, argv, message):
    cfg = shared / "cfg" / "yolov3-tiny.cfg"
    reference_net(cfg, tmp_path / "net.weights")
    code = main(["export", str(cfg), str(tmp_path / "net.weights"), str(tmp_path / "net.onnx"), *argv])
    err = capsys.readouterr().err
    assert code == 2 and message in one_error_line(err)
    assert not (tmp_path / "net.onnx").exists()


class ForeignArray:
    """An array from another library: only the DLPack protocol (as torch, CuPy or JAX tensors offer it)."""

    def __init__(self, array):
        self._array = array

    def __dlpack__(self, **kwargs):
        return self._array.__dlpack__(**kwargs)

    def __dlpack_device__(self):
        return self._array.__dlpack_device__()


def test_dlpack_in_and_out(tmp_path):
    net, x = synthetic_net(tmp_path, SYNTHETIC["yolo_scale_x_y"])
    expected = net.forward(x).copy()
    out = net.forward(ForeignArray(x))
    assert not isinstance(ForeignArray(x), np.ndarray) and np.shares_memory(net.input, x)
    np.testing.assert_array_equal(out, expected)
    # the result and every layer output hand themselves over without a copy
    shared_out = np.from_dlpack(out)
    assert np.shares_memory(shared_out, out)
    for layer in net.layers:
        assert np.shares_memory(np.from_dlpack(layer.output), layer.output)


def test_dlpack_input_that_cannot_be_taken_is_one_error(tmp_path):
    net, x = synthetic_net(tmp_path, SYNTHETIC["sam"])

    class OnAnotherDevice(ForeignArray):
        def __dlpack_device__(self):
            return (2, 0)          # kDLCUDA

        def __dlpack__(self, **kwargs):
            raise BufferError("the tensor is on cuda:0")

    with pytest.raises(DarknetError, match="cannot take the OnAnotherDevice input through DLPack"):
        net.forward(OnAnotherDevice(x))
