"""What every layer type shares: where it came from, its input and output shapes, and its accounting
(darknet's BFLOPS, multiply-adds, parameters, weights-file layout, memory)."""
import numpy as np

from ..errors import DarknetConfigError

# Options darknet reads for every layer after the type-specific parser (parser.c, parse_network_cfg_custom).
COMMON_OPTIONS = {
    "clip": ("float", 0.0), "onlyforward": ("int", 0), "dont_update": ("int", 0), "burnin_update": ("int", 0),
    "stopbackward": ("int", 0), "train_only_bn": ("int", 0), "dontload": ("int", 0), "dontloadscales": ("int", 0),
    "learning_rate": ("float", 1.0),
}


def darknet_float(x):
    """Darknet keeps BFLOPS in a C float; rounding through float32 reproduces its printed digits."""
    return float(np.float32(x))


class BuildContext:
    """What a layer sees while the network is built: the previous output shape and the layers before it."""

    def __init__(self, net_options, layers, w, h, c, inputs):
        self.net = net_options
        self.layers = layers
        self.w, self.h, self.c, self.inputs = w, h, c, inputs

    @property
    def index(self):
        return len(self.layers)

    def resolve(self, section, key, value):
        """A layer index as darknet reads it in route/shortcut/sam/scale_channels: negative is relative."""
        index = value + self.index if value < 0 else value
        if not 0 <= index < self.index:
            raise section.error(key, f"expected a layer before this one (index 0..{self.index - 1} or "
                                     f"-1..-{self.index}); got {value}, which is layer {index}")
        return index


class Layer:
    """Base class. Subclasses set `kind` (the canonical cfg section name) and implement `configure`."""

    kind = None
    needs_image = True   # darknet: "Layer before X layer must output image"
    cost = None          # darknet's l.cost[0]: the loss a loss layer computed in the last forward with truth
    loss_grad = None     # d(cost)/d(input) of that forward: Network.backward adds it to the layer's gradient

    def __init__(self, section, ctx):
        self.section = section
        self.index = ctx.index
        self.w, self.h, self.c, self.inputs = ctx.w, ctx.h, ctx.c, ctx.inputs
        if self.needs_image and not (self.w and self.h and self.c):
            raise section.error(None, f"the layer before [{section.name}] must output an image (w x h x c); "
                                      f"got {self.inputs} values")
        self.out_w, self.out_h, self.out_c = self.w, self.h, self.c
        self.configure(section, ctx)
        self.common = {}
        for key, (typ, default) in COMMON_OPTIONS.items():
            getter = section.get_int if typ == "int" else section.get_float
            self.common[key] = getter(key, default)
        self.weights = {}    # name -> float32 array, filled by the weights reader or an initializer
        self.grads = {}      # name -> accumulated d(loss)/d(weight)
        self.checked_params = {}   # layer_params' result per tuple of names, while the arrays stay the same
        self.output = None
        self.delta = None

    def configure(self, section, ctx):
        raise NotImplementedError

    # -- compute (the CPU-engine contract) ----------------------------------------------------------
    # forward(x, net) -> output: x is the previous layer's output (or the network input), float32, shape
    #   (batch, c, h, w) for image layers or (batch, n) for flat ones; layers reshape views as they need.
    #   Layers reading other layers (route, shortcut, sam, scale_channels) use net.layers[i].output.
    #   net.train says training or inference; net.ops is the backend. Keep what backward needs on self.
    # backward(x, net) -> gradient w.r.t. x (same shape as x) or None: self.delta holds d(loss)/d(output);
    #   add gradients for other source layers into net.layers[i].delta; weight gradients go to
    #   self.grads[name] (same names and shapes as self.weights), accumulated (+=) across calls.
    def forward(self, x, net):
        raise NotImplementedError(f"{self.kind} forward is not implemented yet")

    def backward(self, x, net):
        raise NotImplementedError(f"{self.kind} backward is not implemented yet")

    # -- shapes -------------------------------------------------------------------------------------
    @property
    def outputs(self):
        return self.out_w * self.out_h * self.out_c

    @property
    def input_shape(self):
        return (self.w, self.h, self.c)

    @property
    def output_shape(self):
        return (self.out_w, self.out_h, self.out_c)

    # -- accounting (per image) ---------------------------------------------------------------------
    @property
    def bflops(self):
        """Darknet's BFLOPS exactly as it prints them (2 FLOPs per multiply-add; 0 where darknet counts none)."""
        return 0.0

    @property
    def fma(self):
        """Multiply-adds per image, the way papers count (1 per multiply-add)."""
        return 0

    def weight_layout(self):
        """[(name, shape)] in .weights file order; empty for layers without weights."""
        return []

    @property
    def weight_floats(self):
        return int(sum(np.prod(shape) for _, shape in self.weight_layout()))

    @property
    def params(self):
        """Learnable parameters (running BN statistics are stored, not learned)."""
        return int(sum(np.prod(shape) for name, shape in self.weight_layout()
                       if name not in ("rolling_mean", "rolling_variance")))

    @property
    def output_floats(self):
        """Floats of the output buffer this layer owns per image (0 when it reuses its input's)."""
        return self.outputs

    @property
    def train_floats(self):
        """Extra floats per image kept for backward beyond the gradient of the output (BN buffers etc.)."""
        return 0

    @property
    def workspace_bytes(self):
        """Scratch memory for one image (im2col), shared across layers."""
        return 0

    def engine_memory(self, ops, batch, train):
        """(cache_bytes, scratch_bytes) the engine `ops` allocates for this layer at `batch` beyond its output:
        held from the first forward on (Winograd weights), and allocated only while the layer runs."""
        return 0, self.workspace_bytes * (2 if train else 1)

    # -- printing -----------------------------------------------------------------------------------
    def row(self):
        """Darknet's table text for this layer, after the '%4d ' index."""
        raise NotImplementedError

    def notes(self):
        """Lines darknet prints after the row (yolo params, shortcut shape mismatch, ...)."""
        return []

    def error(self, key, message):
        return self.section.error(key, message)

    @property
    def label(self):
        """`layer 3 [convolutional] (cfg/x.cfg:40)`: how messages name a layer."""
        return f"layer {self.index} [{self.section.name}] ({self.section.path}:{self.section.line})"


def fmt_shape(w, h, c):
    return f"{w:4d} x{h:4d} x{c:4d}"
