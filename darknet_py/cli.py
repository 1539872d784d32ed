"""`darknet-py` command line: darknet's verbs (ops, partial, ...) with one-line errors (exit code 2)."""
import argparse
import contextlib
import importlib
import json
import math
import sys
import warnings

from .errors import DarknetError, RanksStopped


# Modules that add their own verbs: each defines register_cli(subparsers), adding parsers whose defaults set
# `run` to a function taking the parsed args. Imported by build_parser (not when cli is imported), so that
# `darknet-py --help` lists their verbs.
COMMAND_MODULES = ("classifier", "onnx_export", "detector", "benchmark")


class UsageError(DarknetError):
    """Bad command-line arguments."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # argparse would exit with its own format; keep ours: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


INT_MAX = 2 ** 31 - 1   # darknet reads its numeric arguments into C ints


class Number:
    """An argparse type for a numeric option: a finite `kind` (int or float) in low..high (ints at most INT_MAX).
    Anything else (out of range, NaN, Inf, not a number) is a one-line usage error naming the option."""

    def __init__(self, kind, low, high=None):
        self.kind, self.low = kind, low
        self.high = INT_MAX if high is None and kind is int else high

    def __call__(self, text):
        try:
            value = self.kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < self.low or (self.high is not None and
                                                                             value > self.high):
            raise argparse.ArgumentTypeError(f"expected {self}; got '{text}'")
        return value

    def __str__(self):
        what = "an integer" if self.kind is int else "a number"
        return f"{what} >= {self.low}" if self.high is None else f"{what} in {self.low}..{self.high}"


POSITIVE = Number(int, 1)       # sizes, batches, counts of iterations
COUNT = Number(int, 0)
FRACTION = Number(float, 0, 1)  # thresholds: probabilities and IoUs


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=file or sys.stderr)


def cmd_ops(args):
    from .network import Network
    # the CUDA engine's memory plan needs its accounting, not a GPU: the emulated device has the same algorithms
    device = "cuda-emulated" if args.device == "cuda" else "cpu"
    net = Network(args.cfg, batch=args.batch, width=args.width, height=args.height, device=device)
    if args.format == "table":
        print(net.summary(batch=args.batch))
        return
    info = net.table(batch=args.batch)
    if args.format == "json":
        print(json.dumps(info, indent=1))
    else:
        import yaml
        print(yaml.safe_dump(info, sort_keys=False, default_flow_style=None), end="")


def cmd_partial(args):
    from . import load
    from .weights import partial
    net = load(args.cfg)
    partial(net, args.weights, args.out, args.layers)
    print(f"Saved the first {min(args.layers, len(net.layers))} layers of {args.weights} to {args.out}")


def cmd_info(args):
    from . import __version__
    from ._ext import cuda_compiled, gpu_info
    import numpy
    info = {"darknet_py": __version__, "numpy": numpy.__version__, "cuda_compiled": cuda_compiled}
    info.update(gpu_info())
    if args.format == "json":
        print(json.dumps(info))
    else:
        for key, value in info.items():
            print(f"{key}: {value}")


# Flags of darknet-py itself, accepted anywhere on the command line (main moves them before the verb)
GLOBAL_FLAGS = ("--debug", "--no-memory-check")


def build_parser():
    from . import __version__
    parser = _Parser(prog="darknet-py", description="Darknet cfg/weights networks in Python.")
    parser.add_argument("--version", action="version", version=f"darknet-py {__version__}")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors (anywhere on the line)")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="run even when the layer table says the memory available is not enough (memory.py)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ops = sub.add_parser("ops", help="darknet's layer table with FMA, parameters and memory")
    ops.add_argument("cfg")
    ops.add_argument("--width", type=POSITIVE)
    ops.add_argument("--height", type=POSITIVE)
    ops.add_argument("--batch", type=POSITIVE,
                     help="the batch of both memory lines (default: inference at 1, training at the cfg's "
                          "batch/subdivisions)")
    ops.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                     help="whose memory the table counts: the CPU engine's (default) or the CUDA engine's on a GPU "
                          "(no GPU needed)")
    ops.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    ops.set_defaults(run=cmd_ops)

    part = sub.add_parser("partial", help="copy the weights of the first N layers (darknet partial)")
    part.add_argument("cfg")
    part.add_argument("weights")
    part.add_argument("out")
    part.add_argument("layers", type=COUNT, metavar="N")
    part.set_defaults(run=cmd_partial)

    info = sub.add_parser("info", help="build and device information")
    info.add_argument("--format", choices=("text", "json"), default="text")
    info.set_defaults(run=cmd_info)
    for module in COMMAND_MODULES:
        importlib.import_module(f"darknet_py.{module}").register_cli(sub)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    argv = [a for a in argv if a in GLOBAL_FLAGS] + [a for a in argv if a not in GLOBAL_FLAGS]
    debug = "--debug" in argv
    warnings.showwarning = _one_line_warnings
    try:
        try:
            args = build_parser().parse_args(argv)
        except SystemExit as e:   # --help, --version
            return e.code
        args.argv = argv          # the command again, for the ranks a train verb starts (distributed.launch)
        from .memory import check_disabled
        with check_disabled() if args.no_memory_check else contextlib.nullcontext():
            return args.run(args) or 0
    except RanksStopped as e:     # a data-parallel run stopped: one rank prints why
        if e.line:
            print(f"error: {e.line}", file=sys.stderr)
        return e.status
    except DarknetError as e:
        if debug:
            raise
        print(f"error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0
