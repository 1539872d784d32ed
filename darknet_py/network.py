"""A network built from a cfg: the [net] options and the layers in order, with shape inference."""
import warnings

from .cfg import DarknetConfigWarning, parse_cfg
from .layers import layer_class
from .layers.base import BuildContext
from .netcfg import NetOptions


class Network:
    """Layers of a darknet cfg. `batch` overrides the mini-batch the network runs with (darknet's
    parse_network_cfg_custom batch argument); `width`/`height` override the [net] input size."""

    def __init__(self, cfg_path, batch=None, width=None, height=None):
        self.cfg_path = str(cfg_path)
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

    def ops(self):
        """The table as a dict for tools (`darknet-py ops --format json|yaml`)."""
        from .table import table_dict
        return table_dict(self)
