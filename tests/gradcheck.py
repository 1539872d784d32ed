"""Finite-difference gradient checks in float64 for whole (small) networks built from cfg text."""
import numpy as np

import darknet_py
from darknet_py.backend import NumpyOps


def float64_net(tmp_path, cfg_text, name="g.cfg", seed=0, init=None):
    """A network from `cfg_text` running in float64 with random weights. `init(layer, rng)` may fill weights
    itself; otherwise every array of the layer's weight_layout is drawn from N(0, 0.5), and rolling variances
    from U(0.5, 1.5)."""
    path = tmp_path / name
    path.write_text(cfg_text)
    net = darknet_py.load(path, quiet=True)
    net.ops = NumpyOps(np.float64)
    rng = np.random.default_rng(seed)
    for layer in net.layers:
        if init is not None and init(layer, rng):
            continue
        for key, shape in layer.weight_layout():
            if key == "rolling_variance":
                layer.weights[key] = rng.uniform(0.5, 1.5, shape)
            else:
                layer.weights[key] = rng.normal(0, 0.5, shape)
    return net


def check_network_gradients(net, x, rng, train=True, eps=1e-6, tol=1e-6, samples=20):
    """Compare net.backward() with central differences of loss = sum(output * R) for a fixed random R,
    at `samples` random positions of the input and of every weight array."""
    out = net.forward(x, train=train)
    projection = rng.normal(size=out.shape)
    for layer in net.layers:
        layer.grads = {}
    dx = net.backward(projection)

    def loss():
        return float(np.sum(net.forward(x, train=train) * projection))

    def compare(array, analytic, label):
        assert analytic is not None and analytic.shape == array.shape, f"{label}: no gradient or wrong shape"
        flat, grad = array.reshape(-1), analytic.reshape(-1)
        for i in rng.choice(flat.size, size=min(samples, flat.size), replace=False):
            saved = flat[i]
            flat[i] = saved + eps
            plus = loss()
            flat[i] = saved - eps
            minus = loss()
            flat[i] = saved
            numeric = (plus - minus) / (2 * eps)
            assert abs(numeric - grad[i]) <= tol * max(1.0, abs(numeric), abs(grad[i])), \
                f"{label}[{i}]: backward {grad[i]:.8g} vs finite difference {numeric:.8g}"

    compare(x, dx, "input")
    for layer in net.layers:
        for key, array in layer.weights.items():
            if key in ("rolling_mean", "rolling_variance"):
                continue
            compare(array, layer.grads.get(key), f"layer {layer.index} {layer.kind} {key}")
