"""A network built from a cfg: the [net] options and the layers in order, with shape inference."""
import time

import numpy as np

from .backend import get_ops
from .cfg import DarknetConfigWarning, parse_cfg
from .errors import DarknetError, warn
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
                warn(f"{section.path}:{option.line}: unused field '{option.key} = {option.value}' in "
                     f"[{section.name}] (darknet ignores it too)", DarknetConfigWarning)
        # weights-file header, kept so that a loaded file can be written back unchanged
        self.version = (0, 2, 5)
        self.seen = 0
        self.memory_check = True       # refuse a forward the device cannot hold (memory.py)
        self._memory_checked = set()   # (batch, train) already checked: those buffers are held now
        self.truth = None             # training targets of the current forward (loss layers read them)
        self.cost = None              # darknet's get_network_cost after a forward with truth
        self.optimizer_state = {}     # momentum / Adam buffers (training.py)
        self.ranks = 1                # processes of a data-parallel run whose images each iteration sums
        self.layer_timer = None       # timer(layer, "forward" | "backward", seconds) after each layer (benchmark.py)

    def forward(self, x, train=False, truth=None):
        """Run every layer on `x` (float32, batch x channels x height x width) and return the last output;
        each layer keeps its output in `layer.output`. With `truth`, loss layers compute their `cost` and
        loss gradient, and `self.cost` is their mean (darknet's get_network_cost)."""
        x = self._from_dlpack(x)
        x = self.ops.asarray(x)
        expected = (self.channels, self.height, self.width)
        if x.ndim != 4 or tuple(x.shape[1:]) != expected:
            raise DarknetError(f"{self.cfg_path}: input of shape {tuple(x.shape)}; expected (batch, "
                               f"{expected[0]}, {expected[1]}, {expected[2]}) as [net] channels/height/width say")
        self.check_memory(x.shape[0], train)
        self.train = train
        self.input = x
        self.truth = None if truth is None else self.ops.asarray(truth)
        timed = self.layer_timer is not None   # without a timer, no bookkeeping calls per layer
        for layer in self.layers:
            layer.cost = None
            start = self._layer_start() if timed else None
            x = layer.output = layer.forward(x, self)
            if timed:
                self._layer_done(layer, "forward", start)
        costs = [layer.cost for layer in self.layers if layer.cost is not None]
        self.cost = sum(costs) / len(costs) if costs else None
        return x

    def update(self):
        """Apply the accumulated gradients with darknet's update rule (training.update_network)."""
        from .training import update_network
        update_network(self)

    def check_memory(self, batch, train):
        """Before the first forward of a batch size and mode, compare what the layer table says it allocates
        with the memory the device has available (memory.py); refuse with DarknetMemoryError if it does not fit.
        forward() calls it; the verbs call it earlier, before their data loaders start."""
        key = (batch, bool(train))
        if not self.memory_check or key in self._memory_checked:
            return
        from .memory import check_memory
        from .table import forward_bytes
        mode = "training" if train else "inference"
        check_memory(self.ops, forward_bytes(self, batch, train),
                     f"{self.cfg_path}: {mode} forward of {batch} {self.width}x{self.height} image(s)")
        self._memory_checked.add(key)

    def first_non_finite(self):
        """The first layer whose output of the last forward holds a NaN or an Inf, or None."""
        xp = self.ops.xp
        return next((layer for layer in self.layers
                     if layer.output is not None and not bool(xp.isfinite(layer.output).all())), None)

    def forward_checked(self, x, heads):
        """An inference forward of `x` whose `heads` (the layers a verb reads) must give finite outputs: a NaN or
        Inf is an error naming the first layer that produced one (a head would print nan% or overflow)."""
        xp = self.ops.xp
        with np.errstate(invalid="ignore", over="ignore", divide="ignore"):   # reported below, by layer
            self.forward(x)
        for head in heads:
            if not bool(xp.isfinite(head.output).all()):
                raise DarknetError(f"{self.cfg_path}: the output of {head.label} is not finite (NaN/Inf); the "
                                   f"first non-finite output is that of {self.first_non_finite().label}: the weights "
                                   f"do not fit this cfg, are damaged, or are an untrained initialisation")

    def backward(self, delta=None, layer_done=None):
        """Backpropagate from the last layer. `delta` is d(loss)/d(last output); without it, the loss layers'
        own gradients (their `loss_grad`, from a forward with truth) are the only source. Fills every layer's
        `delta` and `grads`, and returns d(loss)/d(network input). layer_done(layer) is called as each layer's
        backward ends (its weight gradients are then complete: a data-parallel run starts summing them)."""
        xp = self.ops.xp
        last = self.layers[-1]
        if delta is not None:
            last.delta = self.ops.asarray(delta).reshape(last.output.shape)
        elif self.cost is not None:
            last.delta = xp.zeros_like(last.output)
        else:
            raise DarknetError(f"{self.cfg_path}: backward() needs a delta: the last layer has no loss")
        for layer in self.layers[:-1]:
            layer.delta = xp.zeros_like(layer.output)
        input_delta = None
        for i in range(len(self.layers) - 1, -1, -1):
            layer = self.layers[i]
            x = self.layers[i - 1].output if i else self.input
            start = self._layer_start()
            grad = layer.backward(x, self)
            self._layer_done(layer, "backward", start)
            if layer_done is not None:
                layer_done(layer)
            if layer.loss_grad is not None:   # darknet adds a loss layer's delta to its input's
                loss_grad = layer.loss_grad.reshape(x.shape)
                grad = loss_grad if grad is None else grad + loss_grad
            if grad is None:
                continue
            if i:
                prev = self.layers[i - 1]
                prev.delta += grad.reshape(prev.delta.shape)
            else:
                input_delta = grad
        return input_delta

    def freeze_weights(self):
        """For inference that will not change the weights (the CLI's inference verbs call it): every layer's weight
        arrays become read-only copies, so that views taken before cannot change them either. The CPU engine then
        trusts its cached Winograd weights without comparing the 3x3 weights with a copy of them at every forward
        (for yolov4-tiny, 24 MB read twice per image). Writing into a frozen array raises; assign a new array,
        or set the array's flags.writeable back to True (the comparison resumes), to change weights afterwards.
        Arrays on a GPU, and arrays already frozen (a second call), are left as they are."""
        for layer in self.layers:
            for name, array in layer.weights.items():
                if isinstance(array, np.ndarray) and (array.flags.writeable or array.base is not None):
                    frozen = array.copy()
                    frozen.flags.writeable = False
                    layer.weights[name] = frozen

    def _layer_start(self):
        """With a layer_timer: the device's queue drained (so the time measured is this layer's), the clock read."""
        if self.layer_timer is None:
            return None
        self.ops.synchronize()
        return time.perf_counter()

    def _layer_done(self, layer, phase, start):
        if start is not None:
            self.ops.synchronize()
            self.layer_timer(layer, phase, time.perf_counter() - start)

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

    def _from_dlpack(self, x):
        """Another library's array (torch, CuPy, JAX, ...) through DLPack, without a copy where the device allows;
        the layer outputs and forward's result are NumPy (CuPy) arrays, which export `__dlpack__` themselves."""
        xp = self.ops.xp
        if isinstance(x, xp.ndarray) or not hasattr(x, "__dlpack__"):
            return x
        try:
            return xp.from_dlpack(x)
        except (BufferError, RuntimeError, TypeError, ValueError) as e:
            raise DarknetError(f"{self.cfg_path}: cannot take the {type(x).__name__} input through DLPack: {e}") from None

    def export_onnx(self, path, opset=None, batch=None, boxes=False):
        """Write the inference graph as an ONNX file (onnx_export.py: BN folded, heads' activated outputs,
        optional decoded `boxes`/`scores`; dynamic batch unless `batch`). Returns the onnx ModelProto."""
        from .onnx_export import DEFAULT_OPSET, export_onnx
        return export_onnx(self, path, opset=opset or DEFAULT_OPSET, batch=batch, boxes=boxes)

    def detect(self, image, thresh=0.25, nms=0.45, hier_thresh=0.5, letter_box=None, names=None):
        """Darknet's detector test on one image (a path, PIL image, (H, W, C) uint8 or (C, H, W) float array):
        [(class name, or id without `names`, probability, (centre x, centre y, width, height) in pixels)],
        left to right as darknet prints them. letter_box: None = the cfg's [net] letter_box."""
        from .detector import detect
        return detect(self, image, thresh, nms, hier_thresh, letter_box, names)

    def summary(self, batch=None):
        """Darknet's layer table with FMA, parameters, memory and totals (what `darknet-py ops` prints); the
        memory lines for inference at `batch` and training at mini-batch `batch` (default: 1 and the cfg's)."""
        from .table import format_table
        return format_table(self, batch)

    def table(self, batch=None):
        """The layer table as a dict for tools (`darknet-py ops --format json|yaml`); `batch` as for summary."""
        from .table import table_dict
        return table_dict(self, batch)
