"""`darknet-py` command line: darknet's verbs (ops, partial, ...) with one-line errors (exit code 2)."""
import argparse
import contextlib
import importlib
import json
import sys
import warnings

from .errors import DarknetError


# Modules that add their own verbs: each defines register_cli(subparsers), adding parsers whose defaults set
# `run` to a function taking the parsed args. Imported by build_parser (not when cli is imported), so that
# `darknet-py --help` lists their verbs.
COMMAND_MODULES = ("classifier", "onnx_export", "detector")


class UsageError(DarknetError):
    """Bad command-line arguments."""


class _Parser(argparse.ArgumentParser):
    def error(self, message):   # argparse would exit with its own format; keep ours: one line, exit 2
        raise UsageError(f"{self.prog}: {message}")


def _one_line_warnings(message, category, filename, lineno, file=None, line=None):
    print(f"warning: {message}", file=file or sys.stderr)


def cmd_ops(args):
    from .network import Network
    net = Network(args.cfg, batch=args.batch, width=args.width, height=args.height)
    if args.format == "table":
        print(net.summary())
        return
    info = net.table()
    if args.format == "json":
        print(json.dumps(info, indent=1))
    else:
        import yaml
        print(yaml.safe_dump(info, sort_keys=False, default_flow_style=None), end="")


def cmd_partial(args):
    from . import load
    from .weights import partial
    if args.layers < 0:
        raise UsageError(f"partial: expected a layer count N >= 0; got {args.layers}")
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


def build_parser():
    parser = _Parser(prog="darknet-py", description="Darknet cfg/weights networks in Python.")
    parser.add_argument("--debug", action="store_true", help="show tracebacks for errors")
    parser.add_argument("--no-memory-check", action="store_true",
                        help="run even when the layer table says the memory available is not enough (memory.py)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    ops = sub.add_parser("ops", help="darknet's layer table with FMA, parameters and memory")
    ops.add_argument("cfg")
    ops.add_argument("--width", type=int)
    ops.add_argument("--height", type=int)
    ops.add_argument("--batch", type=int, help="mini-batch for the network (default: 1)")
    ops.add_argument("--format", choices=("table", "json", "yaml"), default="table")
    ops.set_defaults(run=cmd_ops)

    part = sub.add_parser("partial", help="copy the weights of the first N layers (darknet partial)")
    part.add_argument("cfg")
    part.add_argument("weights")
    part.add_argument("out")
    part.add_argument("layers", type=int, metavar="N")
    part.set_defaults(run=cmd_partial)

    info = sub.add_parser("info", help="build and device information")
    info.add_argument("--format", choices=("text", "json"), default="text")
    info.set_defaults(run=cmd_info)
    for module in COMMAND_MODULES:
        importlib.import_module(f"darknet_py.{module}").register_cli(sub)
    return parser


def main(argv=None):
    argv = sys.argv[1:] if argv is None else list(argv)
    debug = "--debug" in argv
    warnings.showwarning = _one_line_warnings
    try:
        args = build_parser().parse_args(argv)
        for key in ("width", "height", "batch"):
            value = getattr(args, key, None)
            if value is not None and value < 1:
                raise UsageError(f"darknet-py {args.command}: --{key} must be >= 1; got {value}")
        from .memory import check_disabled
        with check_disabled() if args.no_memory_check else contextlib.nullcontext():
            args.run(args)
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
    return 0
