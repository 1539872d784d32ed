"""The ops interface: the only place that knows whether arrays live on the CPU (NumPy) or a GPU (CuPy).
Layers call `net.ops.<name>(...)` and use `net.ops.xp` for simple array math; they never branch on the
device. Gradients follow the usual convention, d(loss)/d(array) (darknet stores the negative)."""
import numpy as np


class NumpyOps:
    """CPU backend: NumPy with BLAS GEMMs, and the C++ kernels of darknet_py._C where NumPy is slow."""

    name = "cpu"
    xp = np

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)   # float64 only for finite-difference gradient checks

    def asarray(self, x):
        return np.ascontiguousarray(x, dtype=self.dtype)

    def to_numpy(self, x):
        return x


def get_ops(device="cpu"):
    if device in (None, "cpu"):
        return NumpyOps()
    from .errors import DarknetError
    raise DarknetError(f"device '{device}': expected 'cpu' (the CUDA engine is not available in this build)")
