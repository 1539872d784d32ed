"""darknet_py: Darknet .cfg/.weights networks in Python, on the CPU (NumPy) and NVIDIA GPUs."""
import sys
import warnings

from .errors import DarknetConfigError, DarknetError, DarknetWeightsError
from .cfg import DarknetConfigWarning
from .network import Network

__version__ = "0.1.0"
__all__ = ["load", "Network", "DarknetError", "DarknetConfigError", "DarknetWeightsError", "DarknetConfigWarning"]


def load(cfg, weights=None, batch=1, quiet=False, width=None, height=None, device="cpu", init=False):
    """Build the network of `cfg` (mini-batch `batch`) and read `weights` (a darknet .weights file) if given;
    without weights, `init=True` gives every layer darknet's random initialisation (weights.init_weights), for
    training from scratch or trying a cfg out: a forward needs one or the other. Then darknet's layer table goes
    to stderr. `quiet` leaves the table out and silences the cfg's DarknetConfigWarning (darknet's "Unused field"
    notes); with quiet=False they are warnings attributed to this call."""
    if init and weights is not None:
        raise DarknetError(f"load({cfg!r}): weights={weights!r} and init=True: give one of them")
    with warnings.catch_warnings():
        if quiet:
            warnings.simplefilter("ignore", DarknetConfigWarning)
        net = Network(cfg, batch=batch, width=width, height=height, device=device)
    if weights is not None:
        from .weights import load_weights
        load_weights(net, weights)
    elif init:
        from .weights import init_weights
        init_weights(net)
    if not quiet:
        print(net.summary(), file=sys.stderr)
    return net
