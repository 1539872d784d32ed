"""darknet_py: Darknet .cfg/.weights networks in Python, on the CPU (NumPy) and NVIDIA GPUs."""
import sys

from .errors import DarknetConfigError, DarknetError, DarknetWeightsError
from .cfg import DarknetConfigWarning
from .network import Network

__version__ = "0.1.0"
__all__ = ["load", "Network", "DarknetError", "DarknetConfigError", "DarknetWeightsError", "DarknetConfigWarning"]


def load(cfg, weights=None, batch=1, quiet=False, width=None, height=None, device="cpu"):
    """Build the network of `cfg` (mini-batch `batch`), print darknet's layer table to stderr unless `quiet`,
    and read `weights` (a darknet .weights file) if given."""
    net = Network(cfg, batch=batch, width=width, height=height, device=device)
    if not quiet:
        print(net.summary(), file=sys.stderr)
    if weights is not None:
        from .weights import load_weights
        load_weights(net, weights)
    return net
