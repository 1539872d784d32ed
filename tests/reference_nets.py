"""Networks with well-scaled random weights written by our writer, for comparisons with other engines."""
import numpy as np

from conftest import load_quiet
from darknet_py.weights import save_weights


def well_scaled_weights(net, seed=0):
    """Random weights that keep activations of order 1 through deep nets, with non-trivial BN statistics:
    He-scaled convolutions, scales and variances near 1, small biases and means."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for name, shape in layer.weight_layout():
            if name == "weights" and layer.kind in ("convolutional", "connected"):
                fan_in = int(np.prod(shape[1:]))
                value = rng.normal(0, np.sqrt(1.0 / fan_in), shape)
            elif name == "weights":   # shortcut weights
                value = rng.uniform(0.5, 1.0, shape)
            elif name in ("scales",):
                value = rng.uniform(0.7, 1.3, shape)
            elif name == "rolling_variance":
                value = rng.uniform(0.5, 2.0, shape)
            else:   # biases, rolling_mean
                value = rng.normal(0, 0.1, shape)
            layer.weights[name] = value.astype(np.float32)
    return net


def reference_net(cfg, weights_path, seed=0):
    net = well_scaled_weights(load_quiet(cfg), seed)
    save_weights(net, weights_path)
    return net


def image_blob(path, width, height):
    """The image as darknet feeds it when not letterboxing: RGB, resized to the network size, scaled to 0..1."""
    from PIL import Image
    image = Image.open(path).convert("RGB").resize((width, height), Image.BILINEAR)
    return (np.asarray(image, np.float32) / 255.0).transpose(2, 0, 1)[None].copy()
