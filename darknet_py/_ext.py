"""The compiled extensions: `_C` (CPU kernels, always built) and `_cuda` (CUDA kernels, optional)."""
try:
    from . import _C
except ImportError:   # a source checkout that was never built
    _C = None

try:
    from . import _cuda
    cuda_compiled = True
except ImportError:
    _cuda = None
    cuda_compiled = False


def gpu_info():
    """The GPU the engine would use, through CuPy if it is installed."""
    info = {"cupy": None, "gpu": None}
    try:
        import cupy
    except ImportError:
        return info
    info["cupy"] = cupy.__version__
    try:
        if cupy.cuda.runtime.getDeviceCount() > 0:
            name = cupy.cuda.runtime.getDeviceProperties(0)["name"]
            info["gpu"] = name.decode() if isinstance(name, bytes) else name
    except Exception:   # CuPy present but no driver/device: report no GPU
        pass
    return info
