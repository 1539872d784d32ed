"""Errors raised for bad user input. Each carries a one-line message naming the file, the line or option,
and what was expected versus what was found; the CLI prints it without a traceback. Warnings about input go
through `warn`, which attributes them to the user's own call."""
import os
import sys
import warnings

_PACKAGE = os.path.dirname(os.path.abspath(__file__)) + os.sep


class DarknetError(Exception):
    """Base of every error caused by user input (cfg, weights, data, images, CLI arguments)."""


class DarknetConfigError(DarknetError):
    """A .cfg file that darknet_py cannot build a network from."""


class DarknetWeightsError(DarknetError):
    """A .weights file that does not fit the network it is loaded into."""


class DarknetDataError(DarknetError):
    """A .data file, image list, labels file or image that cannot be used for training or prediction."""


class DarknetMemoryError(DarknetError):
    """A run that needs more memory than the device has available."""


class RanksStopped(Exception):
    """This rank of a data-parallel run stops because of what happened on the ranks (distributed.py): a rank
    died or hung, or an error on one rank stopped the others. `line` is the error to print (None: another rank
    prints it), `status` the exit status."""

    def __init__(self, status, line):
        super().__init__(line or f"stopped with the other ranks (exit status {status})")
        self.status, self.line = status, line


class DarknetBuildError(DarknetError, ImportError):
    """A compiled extension (darknet_py._C) that cannot be imported: never built, or built for another Python.
    An ImportError too, for code that checks whether the kernels are there."""


def located(path, line, message):
    """`path:line: message`, the form compilers use, so editors can jump to it."""
    where = f"{path}:{line}" if line else f"{path}"
    return f"{where}: {message}"


def warn(message, category):
    """warnings.warn attributed to the first caller outside darknet_py: a warning about a cfg or weights file
    points at the user's `darknet_py.load(...)` line, not at the package line that found the problem."""
    frame, level = sys._getframe(1), 2
    while frame is not None and os.path.abspath(frame.f_code.co_filename).startswith(_PACKAGE):
        frame, level = frame.f_back, level + 1
    warnings.warn(message, category, stacklevel=level)
