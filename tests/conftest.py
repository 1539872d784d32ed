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


def one_error_line(err):
    """The error line of a failed CLI run's stderr, after checking the error is one line: exactly one `error: `
    line, the last one, and no traceback. What comes before it is darknet's layer table (printed at every load,
    as darknet does, before a later error such as weights that do not fit) or `warning: ` lines."""
    lines = err.strip().splitlines()
    errors = [line for line in lines if line.startswith("error: ")]
    assert "Traceback" not in err, err
    assert len(errors) == 1 and lines[-1] == errors[0], err
    return errors[0]


# -- the CUDA engine: every CUDA test runs under emulation (CPU, always) and on a GPU where there is one ---------------
def gpu_available():
    """A CUDA device the engine can use: darknet_py._cuda built, a driver, CuPy and a GPU."""
    try:
        from darknet_py._ext import cuda_ext
        import cupy
        return cuda_ext is not None and cuda_ext.driver_version() > 0 and cupy.cuda.is_available()
    except Exception:   # no CuPy, or CuPy without a driver
        return False


CUDA_DEVICES = [
    pytest.param("cuda-emulated", id="emulated"),
    pytest.param("cuda", id="gpu", marks=[pytest.mark.gpu,
                                          pytest.mark.skipif(not gpu_available(), reason="no CUDA GPU here")]),
]


@pytest.fixture(params=CUDA_DEVICES)
def cuda_device(request):
    """The name of a CUDA engine device: "cuda-emulated", and "cuda" on machines with a GPU."""
    return request.param


@pytest.fixture
def cuda_ops(cuda_device):
    from darknet_py.cuda_backend import CudaOps
    return CudaOps(cuda_device)
