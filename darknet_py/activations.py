"""Darknet's activations (src/activations.c/h): names, forward, and the derivative with respect to the
pre-activation input. Functions take the array module `xp` (NumPy or CuPy), so both engines share them."""

ACTIVATIONS = (
    "logistic", "swish", "mish", "hard_mish", "normalize_channels", "normalize_channels_softmax",
    "normalize_channels_softmax_maxval", "loggy", "relu", "relu6", "elu", "selu", "gelu", "relie", "plse",
    "hardtan", "lhtan", "linear", "ramp", "revleaky", "leaky", "tanh", "stair",
)
# activations whose backward needs the input x rather than the output
CHANNEL_ACTIVATIONS = ("normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval")
MISH_THRESHOLD = 20.0
NORM_EPS = 0.0001


def read_activation(section, default):
    """The section's `activation`, checked. Darknet silently falls back to relu for an unknown name; we refuse."""
    return section.get_str("activation", default, choices=ACTIVATIONS)


def _sigmoid(x, xp):
    return 1 / (1 + xp.exp(-x))


def _softplus(x, xp):
    # darknet's thresholded softplus: x above 20, exp(x) below -20
    return xp.where(x > MISH_THRESHOLD, x, xp.where(x < -MISH_THRESHOLD, xp.exp(x), xp.log1p(xp.exp(xp.minimum(x, MISH_THRESHOLD)))))


def _channels(x):
    """(batch, channels, positions) view: channel activations work across channels at each position."""
    return x.reshape(x.shape[0], x.shape[1], -1)


def _normalize_channels(x, name, xp):
    v = _channels(x)
    if name == "normalize_channels":
        positive = xp.maximum(v, 0)
        return (positive / (NORM_EPS + positive.sum(axis=1, keepdims=True))).reshape(x.shape)
    shift = v.max(axis=1, keepdims=True) if name.endswith("maxval") else 0
    e = xp.exp(v - shift)
    return (e / (NORM_EPS + e.sum(axis=1, keepdims=True))).reshape(x.shape)


def activate(x, name, xp):
    """activation(x) as a new array."""
    if name == "linear":
        return x.copy()
    if name == "logistic":
        return _sigmoid(x, xp)
    if name in ("leaky", "revleaky"):
        return xp.where(x > 0, x, 0.1 * x)
    if name == "relu":
        return xp.maximum(x, 0)
    if name == "relu6":
        return xp.clip(x, 0, 6)
    if name == "loggy":
        return 2 * _sigmoid(x, xp) - 1
    if name == "elu":
        return xp.where(x >= 0, x, xp.expm1(xp.minimum(x, 0)))
    if name == "selu":
        return xp.where(x >= 0, 1.0507 * x, 1.0507 * 1.6732 * xp.expm1(xp.minimum(x, 0)))
    if name == "gelu":
        return 0.5 * x * (1 + xp.tanh(0.797885 * x + 0.035677 * x ** 3))
    if name == "relie":
        return xp.where(x > 0, x, 0.01 * x)
    if name == "ramp":
        return x * (x > 0) + 0.1 * x
    if name == "tanh":
        return xp.tanh(x)
    if name == "plse":
        return xp.where(x < -4, 0.01 * (x + 4), xp.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))
    if name == "stair":
        n = xp.floor(x)
        half = xp.floor(x / 2)
        return xp.where(n % 2 == 0, half, (x - n) + half)
    if name == "hardtan":
        return xp.clip(x, -1, 1)
    if name == "lhtan":
        return xp.where(x < 0, 0.001 * x, xp.where(x > 1, 0.001 * (x - 1) + 1, x))
    if name == "swish":
        return x * _sigmoid(x, xp)
    if name == "mish":
        return x * xp.tanh(_softplus(x, xp))
    if name == "hard_mish":
        return xp.where(x > 0, x, xp.where(x > -2, x * x / 2 + x, 0))
    if name in CHANNEL_ACTIVATIONS:
        return _normalize_channels(x, name, xp)
    raise ValueError(f"unknown activation {name}")


def activate_backward(x, dy, name, xp):
    """d(loss)/dx given d(loss)/d(activation(x)) = dy. Non-differentiable points take the right-hand slope."""
    if name == "linear":
        return dy
    if name in CHANNEL_ACTIVATIONS:
        y = _channels(_normalize_channels(x, name, xp))
        g = _channels(dy)
        inner = (g * y).sum(axis=1, keepdims=True)
        if name == "normalize_channels":
            v = _channels(x)
            total = NORM_EPS + xp.maximum(v, 0).sum(axis=1, keepdims=True)
            return ((v > 0) * (g - inner) / total).reshape(x.shape)
        # the max shift of the _maxval variant is treated as a constant (its effect is through eps only)
        return (y * (g - inner)).reshape(x.shape)
    return dy * _derivative(x, name, xp)


def _derivative(x, name, xp):
    if name == "logistic":
        s = _sigmoid(x, xp)
        return s * (1 - s)
    if name in ("leaky", "revleaky"):
        return xp.where(x > 0, 1.0, 0.1).astype(x.dtype)
    if name == "relu":
        return (x > 0).astype(x.dtype)
    if name == "relu6":
        return ((x > 0) & (x < 6)).astype(x.dtype)
    if name == "loggy":
        s = _sigmoid(x, xp)
        return 2 * s * (1 - s)
    if name == "elu":
        return xp.where(x >= 0, 1.0, xp.exp(xp.minimum(x, 0))).astype(x.dtype)
    if name == "selu":
        return xp.where(x >= 0, 1.0507, 1.0507 * 1.6732 * xp.exp(xp.minimum(x, 0))).astype(x.dtype)
    if name == "gelu":
        t = xp.tanh(0.797885 * x + 0.035677 * x ** 3)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (0.797885 + 3 * 0.035677 * x * x)
    if name == "relie":
        return xp.where(x > 0, 1.0, 0.01).astype(x.dtype)
    if name == "ramp":
        return ((x > 0) + 0.1).astype(x.dtype)
    if name == "tanh":
        t = xp.tanh(x)
        return 1 - t * t
    if name == "plse":
        return xp.where((x < -4) | (x > 4), 0.01, 0.125).astype(x.dtype)
    if name == "stair":
        return (xp.floor(x) % 2 != 0).astype(x.dtype)
    if name == "hardtan":
        return ((x > -1) & (x < 1)).astype(x.dtype)
    if name == "lhtan":
        return xp.where((x < 0) | (x > 1), 0.001, 1.0).astype(x.dtype)
    if name == "swish":
        s = _sigmoid(x, xp)
        return s + x * s * (1 - s)
    if name == "mish":
        sp = _softplus(x, xp)
        t = xp.tanh(sp)
        dsp = xp.where(x > MISH_THRESHOLD, 1.0, xp.where(x < -MISH_THRESHOLD, xp.exp(x), _sigmoid(x, xp)))
        return t + x * (1 - t * t) * dsp
    if name == "hard_mish":
        return xp.where(x > 0, 1.0, xp.where(x > -2, x + 1, 0.0)).astype(x.dtype)
    raise ValueError(f"unknown activation {name}")
