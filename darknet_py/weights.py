"""Darknet .weights files: header (int32 major, minor, revision; `seen` images as uint64 when major*10+minor
>= 2, else uint32), then float32 arrays layer by layer in each layer's `weight_layout()` order
(src/parser.c load_weights_upto / save_weights_upto). Nothing is loaded partially without an error."""
import numpy as np

from .atomic import write_atomic
from .errors import DarknetWeightsError, warn

HEADER_INTS = 3
# how image files begin: an image where a .weights file is expected means the weights argument was left out
IMAGE_SIGNATURES = {b"\xff\xd8\xff": "JPEG", b"\x89PNG\r\n\x1a\n": "PNG", b"GIF8": "GIF", b"BM": "BMP",
                    b"II*\x00": "TIFF", b"MM\x00*": "TIFF"}


def image_format(path):
    """The image format `path` starts with (JPEG, PNG, ...), or None (not an image, or unreadable)."""
    try:
        with open(path, "rb") as f:
            start = f.read(12)
    except OSError:
        return None
    if start[:4] == b"RIFF" and start[8:12] == b"WEBP":
        return "WebP"
    return next((name for magic, name in IMAGE_SIGNATURES.items() if start.startswith(magic)), None)


class DarknetWeightsWarning(UserWarning):
    """A weights file that loads but looks wrong: bytes left over, NaN or Inf values."""


def _seen_dtype(major, minor):
    return np.uint64 if major * 10 + minor >= 2 else np.uint32


def _stored_layout(layer):
    """The arrays of `layer` present in the file: darknet skips a layer with dontload=1, and a convolution's
    BN statistics with dontloadscales=1."""
    if layer.common.get("dontload"):
        return []
    layout = layer.weight_layout()
    if layer.kind == "convolutional" and layer.common.get("dontloadscales"):
        layout = [(name, shape) for name, shape in layout if name not in ("scales", "rolling_mean", "rolling_variance")]
    return layout


def _transposed(version, layer):
    """Darknet stores connected weights transposed in files whose major or minor version exceeds 1000."""
    major, minor, _ = version
    return layer.kind == "connected" and (major > 1000 or minor > 1000)


def load_weights(net, path, cutoff=None, strict=False):
    """Fill `layer.weights` of the first `cutoff` layers (all by default) from a darknet .weights file.
    Bytes left over after the last layer are a warning, or with `strict` a DarknetWeightsError (inference:
    the file belongs to another cfg)."""
    try:
        data = np.fromfile(path, dtype=np.uint8)
    except OSError as e:
        raise DarknetWeightsError(f"{path}: cannot read weights file: {e.strerror or e}") from None
    image = image_format(path)
    if image:
        raise DarknetWeightsError(f"{path}: a {image} image, not a darknet .weights file: the weights file is "
                                  f"missing from the arguments (e.g. detector test DATA CFG WEIGHTS IMAGE)")
    if data.size < HEADER_INTS * 4 + 4:
        raise DarknetWeightsError(f"{path}: not a darknet weights file: expected a header of at least 16 bytes; "
                                  f"got {data.size} bytes")
    major, minor, revision = (int(v) for v in data[:12].view(np.int32))
    seen_type = _seen_dtype(major, minor)
    offset = 12 + np.dtype(seen_type).itemsize
    if data.size < offset:
        raise DarknetWeightsError(f"{path}: header of version {major}.{minor}.{revision} needs {offset} bytes; "
                                  f"the file has {data.size}")
    seen = int(data[12:offset].view(seen_type)[0])
    layers = net.layers if cutoff is None else net.layers[:cutoff]
    loaded = []
    for layer in layers:
        for name, shape in _stored_layout(layer):
            count = int(np.prod(shape))
            end = offset + 4 * count
            if end > data.size:
                raise DarknetWeightsError(
                    f"{path}: ends inside {layer.label} {name}: expected {4 * count} bytes, "
                    f"{data.size - offset} left (the file fits a different cfg, or is truncated)")
            values = data[offset:end].view(np.float32)
            if _transposed((major, minor, revision), layer) and name == "weights":
                values = values.reshape(shape[1], shape[0]).T
            loaded.append((layer, name, np.array(values, dtype=np.float32).reshape(shape)))
            offset = end
    left = data.size - offset if cutoff is None else 0
    leftover = (f"{path}: {left} bytes ({left // 4} floats) left over after the last layer: the file may "
                f"belong to a larger cfg")
    if left and strict:
        raise DarknetWeightsError(f"{leftover} (the weights do not fit {net.cfg_path})")
    # assign only once the whole file has been read: a failed load leaves the network as it was
    net.version, net.seen = (major, minor, revision), seen
    for layer, name, array in loaded:
        layer.weights[name] = array
        if not np.isfinite(array).all():
            bad = int(np.count_nonzero(~np.isfinite(array)))
            warn(f"{path}: {layer.label} {name} has {bad} NaN/Inf values", DarknetWeightsWarning)
    if left:
        warn(leftover, DarknetWeightsWarning)
    return net


def weights_bytes(net, cutoff=None):
    """The bytes of a .weights file for the first `cutoff` layers of `net`."""
    major, minor, revision = net.version
    parts = [np.array([major, minor, revision], np.int32).tobytes(),
             np.array([net.seen], _seen_dtype(major, minor)).tobytes()]
    for layer in net.layers if cutoff is None else net.layers[:cutoff]:
        for name, shape in _stored_layout(layer):
            array = layer.weights.get(name)
            if array is None:
                raise DarknetWeightsError(f"{layer.label} has no '{name}' to save: load a .weights file "
                                          f"or call init_weights first")
            array = np.asarray(net.ops.to_numpy(array), dtype=np.float32).reshape(shape)
            if _transposed(net.version, layer) and name == "weights":
                array = array.T
            parts.append(np.ascontiguousarray(array).tobytes())
    return b"".join(parts)


def save_weights(net, path, cutoff=None):
    """Write a darknet .weights file atomically (atomic.write_atomic: a crash at any moment leaves either the
    old file or the complete new one)."""
    write_atomic(path, weights_bytes(net, cutoff), what="weights file", error=DarknetWeightsError)


def init_weights(net, seed=0):
    """Darknet's random initialization for every layer without weights (make_*_layer): convolution weights
    uniform(-1, 1) * sqrt(2 / (size*size*c/groups)), connected uniform * sqrt(2/inputs), biases 0, BN scales 1,
    shortcut weights 1. Rolling variance is 1, not darknet's 0: with 0 an inference forward divides by
    sqrt(1e-5) at every BN layer and the activations explode."""
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        for name, shape in layer.weight_layout():
            if name in layer.weights:
                continue
            if name == "weights" and layer.kind == "convolutional":
                fan_in = layer.size * layer.size * layer.c // layer.groups
                value = rng.uniform(-1, 1, shape) * np.sqrt(2.0 / fan_in)
            elif name == "weights" and layer.kind == "connected":
                value = rng.uniform(-1, 1, shape) * np.sqrt(2.0 / layer.inputs)
            elif name in ("scales", "rolling_variance") or (name == "weights" and layer.kind == "shortcut"):
                value = np.ones(shape)
            else:
                value = np.zeros(shape)
            layer.weights[name] = value.astype(np.float32)
    return net


def partial(net, weights_in, out_path, cutoff):
    """Darknet's `partial`: load the first `cutoff` layers of `weights_in` and save them with seen reset to 0."""
    load_weights(net, weights_in, cutoff=cutoff)
    net.seen = 0
    save_weights(net, out_path, cutoff=cutoff)
