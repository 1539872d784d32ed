"""Darknet activations (src/activations.c, activations.h, activation_kernels.cu): names, forward and backward.

`activate(x, name, xp)` returns the activation of the pre-activation array `x`; `activate_backward(x, dy, name,
xp)` returns d(loss)/dx given d(loss)/d(output) `dy`. `xp` is the array module (NumPy or CuPy), so the CPU and
GPU engines share this code; everything is elementwise array math (no Python loops), computed in x's dtype.

Forward formulas are darknet's, with its constants:
  logistic 1/(1+e^-x); loggy 2/(1+e^-x) - 1; tanh (2/(1+e^-2x) - 1, i.e. tanh x); linear x;
  relu x*(x>0); relu6 min(max(x,0),6); leaky and revleaky x>0 ? x : .1x; relie x>0 ? x : .01x;
  ramp x*(x>0) + .1x; elu x>=0 ? x : e^x-1; selu x>=0 ? 1.0507x : 1.0507*1.6732*(e^x-1);
  gelu .5x(1 + tanh(.797885x + .035677x^3)); plse x<-4 ? .01(x+4) : x>4 ? .01(x-4)+1 : .125x+.5;
  hardtan clamp(x,-1,1); lhtan x<0 ? .001x : x>1 ? .001(x-1)+1 : x;
  stair n=floor(x): n even ? floor(x/2) : (x-n) + floor(x/2);
  swish x*logistic(x); mish x*tanh(softplus(x)) with darknet's softplus threshold 20 (x>20: x, x<-20: e^x,
  else log(1+e^x)); hard_mish x>0 ? x : x>-2 ? x^2/2 + x : 0;
  normalize_channels (per batch item and position, across channels): s = .0001 + sum of the positive values,
  out = x>0 ? x/s : 0; normalize_channels_softmax: e^x / (.0001 + sum e^x); ..._maxval: the same with the
  channel maximum m subtracted, e^(x-m) / (.0001 + sum e^(x-m)) (the first maximum, as darknet picks it).

Backward is the true derivative of those forwards, computed from the pre-activation x. Darknet computes most
gradients from the activation's output, which gives the same values except where noted here:
  - at a kink the value is the one darknet's gradient gives there: relu'(0) = 0, leaky'(0) = revleaky'(0) = .1,
    relie'(0) = .01, ramp'(0) = .1, relu6'(0) = relu6'(6) = 0, hardtan'(-1) = hardtan'(1) = 0,
    lhtan'(0) = lhtan'(1) = .001, plse'(-4) = plse'(4) = .125, elu'(0) = 1, selu'(0) = 1.0507, hard_mish'(0) = 1,
    hard_mish'(-2) = 0;
  - stair: 1 where floor(x) is odd and x is not an integer, else 0 (darknet: 0 where the output is an integer,
    the same thing);
  - gelu: the derivative of darknet's forward (darknet's gelu_gradient uses .0356774 where its forward uses
    .035677, and reads the output as if it were the input);
  - normalize_channels*: darknet's gradient_array_normalize_channels* multiply delta by sum(out*delta), which
    is not the derivative; here it is: dx = [x>0]/s * (dy - sum(dy*out)) for normalize_channels and
    dx = out*(dy - sum(dy*out)) (+ the term through the channel maximum and the .0001) for the softmaxes;
  - revleaky: darknet's forward is leaky (CPU and GPU); its GPU backward divides delta by leaky' instead of
    multiplying. The true derivative is leaky's, which is used here.
Darknet facts kept as known differences: darknet's CPU activate() has no case for relu6 (it returns 0; the GPU
kernel clamps as here) and none for swish/mish/hard_mish/normalize_channels* outside [convolutional].
"""

ACTIVATIONS = (
    "logistic", "swish", "mish", "hard_mish", "normalize_channels", "normalize_channels_softmax",
    "normalize_channels_softmax_maxval", "loggy", "relu", "relu6", "elu", "selu", "gelu", "relie", "plse",
    "hardtan", "lhtan", "linear", "ramp", "revleaky", "leaky", "tanh", "stair",
)

# activations that work across channels (their backward needs every channel of a position)
CHANNEL_ACTIVATIONS = ("normalize_channels", "normalize_channels_softmax", "normalize_channels_softmax_maxval")
SELU_LAMBDA = 1.0507
SELU_ALPHA = 1.6732
GELU_A = 0.797885          # sqrt(2/pi)
GELU_B = 0.035677          # 0.044715 * sqrt(2/pi)
MISH_THRESHOLD = 20.0      # darknet's softplus threshold in activate_array_mish / gradient_array_mish
NORM_CHANNELS_EPS = 0.0001


def read_activation(section, default):
    """The section's `activation`, checked. Darknet silently falls back to relu for an unknown name; we refuse."""
    return section.get_str("activation", default, choices=ACTIVATIONS)


def _sigmoid(x, xp):
    e = xp.exp(-xp.abs(x))            # never overflows
    return xp.where(x >= 0, 1 / (1 + e), e / (1 + e))


def _softplus(x, xp):
    """Darknet's softplus_activate(x, 20) without overflow in the branches it does not take."""
    t = MISH_THRESHOLD
    mid = xp.log1p(xp.exp(xp.minimum(x, t)))
    return xp.where(x > t, x, xp.where(x < -t, xp.exp(xp.minimum(x, 0)), mid))


def _softplus_grad(x, xp):
    t = MISH_THRESHOLD
    return xp.where(x > t, 1, xp.where(x < -t, xp.exp(xp.minimum(x, 0)), _sigmoid(x, xp))).astype(x.dtype)


def _stair(x, xp):
    n = xp.floor(x)
    half = xp.floor(x / 2)
    return xp.where(n % 2 == 0, half, (x - n) + half)


def _check_channels(x):
    """Channels are axis 1 of (batch, c, h, w) and of a flat (batch, n) output (n channels of 1 x 1)."""
    if x.ndim < 2:
        raise ValueError(f"normalize_channels needs (batch, channels, ...) arrays; got shape {x.shape}")


def _norm_channels(x, xp):
    _check_channels(x)
    pos = xp.maximum(x, 0)
    s = NORM_CHANNELS_EPS + xp.sum(pos, axis=1, keepdims=True)
    return pos / s, s


def _norm_softmax(x, xp, use_max):
    _check_channels(x)
    m = xp.max(x, axis=1, keepdims=True) if use_max else xp.zeros((), dtype=x.dtype)
    e = xp.exp(x - m)
    s = NORM_CHANNELS_EPS + xp.sum(e, axis=1, keepdims=True)
    return e / s, s


def activate(x, name, xp):
    """Darknet's activation `name` applied to `x`: a new array, except that `linear` returns x itself."""
    if name == "linear":
        return x
    if name == "logistic":
        return _sigmoid(x, xp)
    if name == "loggy":
        return 2 * _sigmoid(x, xp) - 1
    if name == "tanh":
        return xp.tanh(x)
    if name == "relu":
        return xp.maximum(x, 0)
    if name == "relu6":
        return xp.clip(x, 0, 6)
    if name in ("leaky", "revleaky"):
        return xp.where(x > 0, x, 0.1 * x)
    if name == "relie":
        return xp.where(x > 0, x, 0.01 * x)
    if name == "ramp":
        return xp.maximum(x, 0) + 0.1 * x
    if name == "elu":
        return xp.where(x >= 0, x, xp.expm1(xp.minimum(x, 0)))
    if name == "selu":
        return xp.where(x >= 0, SELU_LAMBDA * x, (SELU_LAMBDA * SELU_ALPHA) * xp.expm1(xp.minimum(x, 0)))
    if name == "gelu":
        return 0.5 * x * (1 + xp.tanh(GELU_A * x + GELU_B * x * x * x))
    if name == "plse":
        return xp.where(x < -4, 0.01 * (x + 4), xp.where(x > 4, 0.01 * (x - 4) + 1, 0.125 * x + 0.5))
    if name == "hardtan":
        return xp.clip(x, -1, 1)
    if name == "lhtan":
        return xp.where(x < 0, 0.001 * x, xp.where(x > 1, 0.001 * (x - 1) + 1, x))
    if name == "stair":
        return _stair(x, xp)
    if name == "swish":
        return x * _sigmoid(x, xp)
    if name == "mish":
        return x * xp.tanh(_softplus(x, xp))
    if name == "hard_mish":
        return xp.where(x > 0, x, xp.where(x > -2, 0.5 * x * x + x, 0)).astype(x.dtype)
    if name == "normalize_channels":
        return _norm_channels(x, xp)[0]
    if name == "normalize_channels_softmax":
        return _norm_softmax(x, xp, False)[0]
    if name == "normalize_channels_softmax_maxval":
        return _norm_softmax(x, xp, True)[0]
    raise ValueError(f"unknown activation '{name}'; expected one of {', '.join(ACTIVATIONS)}")


def gradient(x, name, xp):
    """d activate(x)/dx elementwise, for every activation except the normalize_channels family."""
    one = x.dtype.type(1)
    if name == "linear":
        return xp.ones_like(x)
    if name == "logistic":
        s = _sigmoid(x, xp)
        return s * (1 - s)
    if name == "loggy":
        s = _sigmoid(x, xp)
        return 2 * s * (1 - s)
    if name == "tanh":
        t = xp.tanh(x)
        return 1 - t * t
    if name == "relu":
        return (x > 0).astype(x.dtype)
    if name == "relu6":
        return ((x > 0) & (x < 6)).astype(x.dtype)
    if name in ("leaky", "revleaky"):
        return xp.where(x > 0, one, x.dtype.type(0.1))
    if name == "relie":
        return xp.where(x > 0, one, x.dtype.type(0.01))
    if name == "ramp":
        return (x > 0).astype(x.dtype) + x.dtype.type(0.1)
    if name == "elu":
        return xp.where(x >= 0, one, xp.exp(xp.minimum(x, 0)))
    if name == "selu":
        return xp.where(x >= 0, x.dtype.type(SELU_LAMBDA), (SELU_LAMBDA * SELU_ALPHA) * xp.exp(xp.minimum(x, 0)))
    if name == "gelu":
        x2 = x * x
        t = xp.tanh(GELU_A * x + GELU_B * x2 * x)
        return 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * (GELU_A + 3 * GELU_B * x2)
    if name == "plse":
        return xp.where((x < -4) | (x > 4), x.dtype.type(0.01), x.dtype.type(0.125))
    if name == "hardtan":
        return ((x > -1) & (x < 1)).astype(x.dtype)
    if name == "lhtan":
        return xp.where((x > 0) & (x < 1), one, x.dtype.type(0.001))
    if name == "stair":
        n = xp.floor(x)
        return ((n % 2 != 0) & (x != n)).astype(x.dtype)
    if name == "swish":
        s = _sigmoid(x, xp)
        return s + x * s * (1 - s)
    if name == "mish":
        t = xp.tanh(_softplus(x, xp))
        return t + x * (1 - t * t) * _softplus_grad(x, xp)
    if name == "hard_mish":
        return xp.where(x > 0, one, xp.where(x > -2, x + 1, 0)).astype(x.dtype)
    if name in ACTIVATIONS:
        raise ValueError(f"activation '{name}' mixes channels: use activate_backward")
    raise ValueError(f"unknown activation '{name}'; expected one of {', '.join(ACTIVATIONS)}")


def activate_backward(x, dy, name, xp):
    """d(loss)/dx for d(loss)/d(activate(x)) = dy."""
    if name == "linear":
        return dy
    if name == "normalize_channels":
        out, s = _norm_channels(x, xp)
        dot = xp.sum(dy * out, axis=1, keepdims=True)
        return xp.where(x > 0, (dy - dot) / s, 0).astype(dy.dtype)
    if name in ("normalize_channels_softmax", "normalize_channels_softmax_maxval"):
        use_max = name.endswith("maxval")
        out, s = _norm_softmax(x, xp, use_max)
        dot = xp.sum(dy * out, axis=1, keepdims=True)
        dx = out * (dy - dot)
        if use_max:
            # out_k = e^(x_k-m) / (eps + sum e^(x_j-m)) depends on m itself through the eps term:
            # d out_k / dm = -out_k * eps / s; m is the first maximal channel, which receives that gradient.
            first = xp.argmax(x, axis=1)
            onehot = xp.expand_dims(first, 1) == xp.arange(x.shape[1]).reshape((1, -1) + (1,) * (x.ndim - 2))
            dx = dx - onehot * (dot * (NORM_CHANNELS_EPS / s))
        return dx
    return dy * gradient(x, name, xp)
