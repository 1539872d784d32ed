"""Errors raised for bad user input. Each carries a one-line message naming the file, the line or option,
and what was expected versus what was found; the CLI prints it without a traceback."""


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


class DarknetBuildError(DarknetError, ImportError):
    """A compiled extension (darknet_py._C) that cannot be imported: never built, or built for another Python.
    An ImportError too, for code that checks whether the kernels are there."""


def located(path, line, message):
    """`path:line: message`, the form compilers use, so editors can jump to it."""
    where = f"{path}:{line}" if line else f"{path}"
    return f"{where}: {message}"
