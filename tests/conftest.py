import warnings
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1].parent / "shared" / "darknet"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture
def shared():
    if not SHARED.is_dir():
        pytest.skip(f"reference material not found at {SHARED}")
    return SHARED


def load_quiet(cfg, **kwargs):
    """A network built without printing and without cfg warnings (the shared cfgs have darknet's unused fields)."""
    import darknet_py
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return darknet_py.load(cfg, quiet=True, **kwargs)
