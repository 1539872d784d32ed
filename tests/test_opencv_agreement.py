"""Forward agreement with an independent implementation: OpenCV DNN 4.x's darknet importer
(cv2.dnn.readNetFromDarknet), on a real image, at intermediate layers and at the outputs."""
import re

import numpy as np
import pytest

from conftest import SHARED
from reference_nets import image_blob, reference_net

cv2 = pytest.importorskip("cv2")
if not hasattr(cv2.dnn, "readNetFromDarknet"):
    pytest.skip("this OpenCV has no darknet importer (it was removed in 5.x)", allow_module_level=True)

ACTIVATION_NAMES = {"leaky", "relu", "mish", "swish", "logistic", "tanh", "relu6", "elu", "selu", "gelu", "hardswish",
                    "sigmoid", "identity", "linear"}
CASES = [
    pytest.param("yolov4-tiny", id="yolov4-tiny"),
    pytest.param("yolov3-tiny", id="yolov3-tiny"),
    pytest.param("efficientnet_b0", id="efficientnet_b0"),
    pytest.param("enet-coco", id="enet-coco"),
    pytest.param("yolov4", id="yolov4", marks=pytest.mark.slow),
]


def opencv_layer_outputs(cvnet):
    """darknet layer index -> the OpenCV layer holding its final output. OpenCV splits a darknet layer into
    conv_i, bn_i and an activation named after the next index; group them back in order."""
    groups = {}
    current = None
    for name in cvnet.getLayerNames():
        prefix, _, number = name.rpartition("_")
        if not number.isdigit():
            continue
        if prefix in ACTIVATION_NAMES and current is not None:
            groups[current] = name
        else:
            current = int(number)
            groups[current] = name
    return groups


def compared_layers(net):
    """A spread of layers through the network plus every layer feeding an output head, and the last layer."""
    heads = {layer.index - 1 for layer in net.layers if layer.kind in ("yolo", "region", "Gaussian_yolo")}
    spread = set(np.linspace(0, len(net.layers) - 1, 8).astype(int).tolist())
    candidates = sorted(heads | spread)
    return [i for i in candidates if net.layers[i].kind not in ("yolo", "region", "Gaussian_yolo", "dropout", "cost")]


@pytest.mark.parametrize("name", CASES)
def test_forward_matches_opencv(shared, tmp_path, name):
    cfg = shared / "cfg" / f"{name}.cfg"
    weights = tmp_path / f"{name}.weights"
    net = reference_net(cfg, weights)
    x = image_blob(shared / "data" / "dog.jpg", net.width, net.height)
    net.forward(x)

    cvnet = cv2.dnn.readNetFromDarknet(str(cfg), str(weights))
    cvnet.setPreferableBackend(cv2.dnn.DNN_BACKEND_OPENCV)
    cvnet.setInput(x)
    mapping = opencv_layer_outputs(cvnet)
    indexes = [i for i in compared_layers(net) if i in mapping]
    assert len(indexes) >= 5
    outputs = cvnet.forward([mapping[i] for i in indexes])
    for i, theirs in zip(indexes, outputs):
        ours = np.asarray(net.layers[i].output).reshape(theirs.shape)
        scale = float(np.max(np.abs(theirs)))
        error = float(np.max(np.abs(ours - theirs))) / scale
        assert error <= 1e-4, f"layer {i} ({net.layers[i].kind}, OpenCV {mapping[i]}): relative error {error:.2e}"
