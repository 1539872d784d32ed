"""The compiled extensions: `_C` (C++ CPU kernels, always built, required), `cuda_ext` (the `_cuda` CUDA kernels,
None where the package was built without nvcc) and `_cuda_emu` (the same kernels built for the CPU, imported on
demand by cuda_emulation()). CuPy is imported only by gpu_info() and the CUDA engine, on demand."""
from .errors import DarknetBuildError

try:
    from . import _C
except ImportError as e:   # a source checkout that was never built, or a build for another Python
    raise DarknetBuildError(f"darknet_py._C (the compiled CPU kernels) cannot be imported ({e}); "
                      "rebuild it from the repository root with: pip install -e .") from e

try:
    from . import _cuda as cuda_ext
    cuda_compiled = True
except ImportError:   # built without nvcc (or the CUDA build failed)
    cuda_ext = None
    cuda_compiled = False


def cuda_extension(device="cuda"):
    """darknet_py._cuda, or DarknetBuildError saying why `device` cannot use it."""
    if cuda_ext is None:
        raise DarknetBuildError(f"device '{device}': darknet_py was built without its CUDA kernels (nvcc was not found "
                                "or the CUDA build failed); install the CUDA toolkit and rebuild: pip install -e .")
    return cuda_ext


def cuda_emulation():
    """darknet_py._cuda_emu: the CUDA kernels compiled for the CPU (always built with _C)."""
    try:
        from . import _cuda_emu
    except ImportError as e:
        raise DarknetBuildError(f"darknet_py._cuda_emu (the CUDA kernels built for the CPU) cannot be imported ({e}); "
                                "rebuild it from the repository root with: pip install -e .") from e
    return _cuda_emu


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
