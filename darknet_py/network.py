"""A network built from a cfg: the [net] options and the layers in order, with shape inference."""
import warnings

from .backend import get_ops
from .cfg import DarknetConfigWarning, parse_cfg
from .errors import DarknetError
from .layers import layer_class
from .layers.base import BuildContext
from .netcfg import NetOptions


class Network:
    """Layers of a darknet cfg. `batch` overrides the mini-batch the network runs with (darknet's
    parse_network_cfg_custom batch argument); `width`/`height` override the [net] input size."""

    def __init__(self, cfg_path, batch=None, width=None, height=None, device="cpu"):
        self.cfg_path = str(cfg_path)
        self.ops = get_ops(device)
        self.train = False
        self.input = None
        sections = parse_cfg(cfg_path)
        self.options = NetOptions(sections[0], batch=batch, width=width, height=height)
        self.layers = []
        opts = self.options
        ctx = BuildContext(opts, self.layers, opts.width, opts.height, opts.channels, opts.inputs)
        for section in sections[1:]:
            section.index = len(self.layers)
            layer = layer_class(section)(section, ctx)
            self.layers.append(layer)
            ctx.w, ctx.h, ctx.c, ctx.inputs = layer.out_w, layer.out_h, layer.out_c, layer.outputs
        for section in sections:
            for option in section.unused():
                warnings.warn(f"{section.path}:{option.line}: unused field '{option.key} = {option.value}' in "
                              f"[{section.name}] (darknet ignores it too)", DarknetConfigWarning, stacklevel=2)
        # weights-file header, kept so that a loaded file can be written back unchanged
        self.version = (0, 2, 5)
        self.seen = 0
        self.truth = None             # training targets of the current forward (loss layers read them)
        self.cost = None              # darknet's get_network_cost after a forward with truth
        self.optimizer_state = {}     # momentum / Adam buffers (training.py)

    def forward(self, x, train=False, truth=None):
        """Run every layer on `x` (float32, batch x channels x height x width) and return the last output;
        each layer keeps its output in `layer.output`. With `truth`, loss layers compute their `cost` and
        loss gradient, and `self.cost` is their mean (darknet's get_network_cost)."""
        x = self.ops.asarray(x)
        expected = (self.channels, self.height, self.width)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise DarknetError(f"{self.cfg_path}: input of shape {tuple(x.shape)}; expected (batch, "
                               f"{expected[0]}, {expected[1]}, {expected[2]}) as [net] channels/height/width say")
        self.train = train
        self.input = x
        self.truth = None if truth is None else self.ops.asarray(truth)
        for layer in self.layers:
            layer.cost = None
            x = layer.output = layer.forward(x, self)
        costs = [layer.cost for layer in self.layers if layer.cost is not None]
        self.cost = sum(costs) / len(costs) if costs else None
        return x

    def update(self):
        """Apply the accumulated gradients with darknet's update rule (training.update_network)."""
        from .training import update_network
        update_network(self)

    def backward(self, delta=None):
        """Backpropagate from the last layer. `delta` is d(loss)/d(last output); without it, the last layer's
        own `delta` (set by a loss layer in a training forward) is used. Fills every layer's `delta` and
        `grads`, and returns d(loss)/d(network input)."""
        xp = self.ops.xp
        last = self.layers[-1]
        if delta is not None:
            last.delta = self.ops.asarray(delta).reshape(last.output.shape)
        elif last.delta is None:
            raise DarknetError(f"{self.cfg_path}: backward() needs a delta: the last layer has no loss")
        for layer in self.layers[:-1]:
            layer.delta = xp.zeros_like(layer.output)
        input_delta = None
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            x = self.layers[i - 1].output if i else self.input
            grad = layer.backward(x, self)
            if grad is None:
                continue
            if i:
                prev = self.layers[i - 1]
                prev.delta += grad.reshape(prev.delta.shape)
            else:
                input_delta = grad
        return input_delta

    @property
    def batch(self):
        return self.options.mini_batch

    @property
    def width(self):
        return self.options.width

    @property
    def height(self):
        return self.options.height

    @property
    def channels(self):
        return self.options.channels

    def __len__(self):
        return len(self.layers)

    def __repr__(self):
        return (f"<Network {self.cfg_path}: {len(self.layers)} layers, input {self.width}x{self.height}x"
                f"{self.channels}, batch {self.batch}>")

    def summary(self):
        """Darknet's layer table with FMA, parameters, memory and totals (what `darknet-py ops` prints)."""
        from .table import format_table
        return format_table(self)

    def table(self):
        """The layer table as a dict for tools (`darknet-py ops --format json|yaml`)."""
        from .table import table_dict
        return table_dict(self)
