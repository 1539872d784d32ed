"""The CUDA engine: CudaOps, the ops interface (backend.py) on our own CUDA kernels (csrc/cuda) and cuBLAS.

CudaOps runs on one of two devices, with the very same Python code, launch geometry and kernel source:
- CupyDevice ("cuda", "cuda:N"): CuPy arrays on a GPU, the kernels of darknet_py._cuda (nvcc), GEMMs through
  cuBLAS with the extension's own handle, every launch on CuPy's current stream;
- EmulatedDevice ("cuda-emulated"): NumPy arrays stand in for device arrays and darknet_py._cuda_emu runs the same
  kernels on the CPU (csrc/cuda/emulation.h), with a host GEMM for cuBLAS. Slow: for tests and debugging.
Kernels take array addresses as integers; this module checks shapes, dtypes and contiguity before every launch
(a kernel trusts its arguments).
"""
import ctypes.util
import glob
import os

import numpy as np

from .activations import CHANNEL_ACTIVATIONS
from .errors import DarknetError

FLOAT = np.float32
CUBLAS_WORKSPACE_BYTES = 32 * 1024 * 1024   # cuBLAS's recommended workspace on Hopper; held for graph capture


class DeviceError(DarknetError):
    """The requested CUDA device cannot be used (no extension, no CuPy, no driver, no such GPU)."""


# -- devices ------------------------------------------------------------------------------------------------------
class DeviceArray(np.ndarray):
    """A NumPy array standing for a device array under emulation. EmulatedDevice.asarray copies any other array into
    one, as a transfer to a GPU would: code that changes a "device" copy and expects the host array to change (or
    the reverse) fails under emulation as it would on a GPU."""


class EmulatedDevice:
    """NumPy arrays and the kernels run on the CPU by darknet_py._cuda_emu."""

    name = "cuda-emulated"
    xp = np

    def __init__(self):
        from ._ext import cuda_emulation
        self.kernels = cuda_emulation()
        self.blas = self.kernels.blas_init([])

    @staticmethod
    def asarray(x):
        if isinstance(x, DeviceArray) and x.dtype == FLOAT and x.flags.c_contiguous:
            return x
        return np.array(x, dtype=FLOAT, order="C").view(DeviceArray)

    @staticmethod
    def pointer(a):
        return a.ctypes.data

    @property
    def stream(self):
        return 0

    @staticmethod
    def to_numpy(a):
        return np.array(a)   # a copy, as from a GPU

    def available_memory(self):
        from .memory import host_available_bytes
        return host_available_bytes()

    def synchronize(self):
        pass


def _cublas_candidates():
    """Where cuBLAS may be: the loader's own search, CuPy's pip wheels (nvidia/cu13, cu12), the CUDA toolkit."""
    names = ["libcublas.so.13", "libcublas.so.12", "libcublas.so"]
    paths = list(names)
    try:
        import nvidia
        for root in nvidia.__path__:
            for name in names:
                paths += sorted(glob.glob(os.path.join(root, "cu*", "lib", name)))
                paths += sorted(glob.glob(os.path.join(root, "cublas", "lib", name)))
    except ImportError:
        pass
    for home in (os.environ.get("CUDA_PATH"), os.environ.get("CUDA_HOME"), "/usr/local/cuda"):
        if home:
            paths += [os.path.join(home, lib, name) for lib in ("lib64", "lib") for name in names]
    found = ctypes.util.find_library("cublas")
    return paths + ([found] if found else [])


class CupyDevice:
    """CuPy arrays on GPU `index`, the kernels of darknet_py._cuda, cuBLAS with the extension's own handle."""

    def __init__(self, index=0):
        from ._ext import cuda_extension
        self.kernels = cuda_extension()
        if self.kernels.driver_version() == 0:
            raise DeviceError("device 'cuda': no CUDA driver on this machine (darknet_py._cuda is built, but "
                              "cudaDriverGetVersion found no driver); use device='cpu' or 'cuda-emulated'")
        try:
            import cupy
        except ImportError:
            raise DeviceError("device 'cuda' needs CuPy: pip install cupy-cuda13x (or darknet_py[gpu])") from None
        count = self.kernels.device_count()
        if not 0 <= index < count:
            raise DeviceError(f"device 'cuda:{index}': expected a GPU index 0..{count - 1}; this machine has {count}")
        self.xp = cupy
        self.index = index
        self.name = f"cuda:{index}"
        self._device = cupy.cuda.Device(index)
        self._device.use()
        self.blas = self.kernels.blas_init(_cublas_candidates())
        self.workspace = cupy.empty(CUBLAS_WORKSPACE_BYTES, dtype=np.uint8)
        self.kernels.blas_set_workspace(self.workspace.data.ptr, self.workspace.nbytes)

    def asarray(self, x):
        return self.xp.ascontiguousarray(self.xp.asarray(x, dtype=FLOAT))

    @staticmethod
    def pointer(a):
        return a.data.ptr

    @property
    def stream(self):
        """CuPy's current stream: kernels and CuPy operations of the calling thread stay in order."""
        return self.xp.cuda.get_current_stream().ptr

    @staticmethod
    def to_numpy(a):
        return a.get() if hasattr(a, "get") else np.asarray(a)

    def available_memory(self):
        """Free device memory plus what CuPy's pool holds unused (it is handed out again first)."""
        pool = self.xp.get_default_memory_pool()
        free, _ = self.xp.cuda.Device(self.index).mem_info
        return free + pool.total_bytes() - pool.used_bytes()

    def synchronize(self):
        self.xp.cuda.get_current_stream().synchronize()


def make_device(device):
    """The device named `device`: "cuda-emulated", "cuda" or "cuda:N"."""
    if device == "cuda-emulated":
        return EmulatedDevice()
    index = device.partition(":")[2] if device != "cuda" else "0"
    if not index.isdigit():
        raise DeviceError(f"device '{device}': expected cuda, cuda:N (N a GPU index) or cuda-emulated")
    return CupyDevice(int(index))


# -- the ops --------------------------------------------------------------------------------------------------------
class CudaOps:
    """The ops interface on CUDA kernels (module docstring). Arrays are float32, C-contiguous, on `device`."""

    dtype = np.dtype(FLOAT)
    weights_on_device = True   # layer_params moves layer.weights to the device at their first use

    def __init__(self, device="cuda"):
        self.device = make_device(device) if isinstance(device, str) else device
        self.name = self.device.name
        self.xp = self.device.xp
        self.k = self.device.kernels

    # -- arrays ---------------------------------------------------------------------------------------------------
    def asarray(self, x):
        """x (NumPy, CuPy or a Python sequence) as a C-contiguous float32 array on the device: a copy unless x is
        one already."""
        return self.device.asarray(x)

    def to_numpy(self, x):
        return self.device.to_numpy(x)

    def empty(self, shape):
        return self.xp.empty(shape, dtype=FLOAT)

    def zeros(self, shape):
        return self.xp.zeros(shape, dtype=FLOAT)

    def available_memory(self):
        return self.device.available_memory()

    def synchronize(self):
        self.device.synchronize()

    def _ptr(self, a, what="array"):
        """The address of a float32 C-contiguous device array (0 for None), checked: kernels trust it."""
        if a is None:
            return 0
        if a.dtype != FLOAT or not a.flags.c_contiguous:
            raise ValueError(f"{what}: the CUDA kernels take C-contiguous float32 arrays; got {a.dtype}, "
                             f"contiguous={a.flags.c_contiguous}")
        return self.device.pointer(a)

    @property
    def _stream(self):
        return self.device.stream

    # -- GEMM -----------------------------------------------------------------------------------------------------
    def gemm(self, a, b, out, trans_a=False, trans_b=False, alpha=1.0, beta=0.0):
        """out = alpha * op(a) @ op(b) + beta * out for row-major matrices, or batches of them: a (..., M, K) or,
        transposed, (..., K, M); b (..., K, N) or (..., N, K); out (..., M, N). A batch axis of 1 (or a 2-D
        operand) is shared by every batch entry (stride 0). cuBLAS is column-major: it computes out^T = op(b)^T
        op(a)^T, which needs no copies."""
        batch = out.shape[:-2]
        count = int(np.prod(batch)) if batch else 1
        m, n = out.shape[-2:]
        k = a.shape[-2] if trans_a else a.shape[-1]
        rows_b = b.shape[-1] if trans_b else b.shape[-2]
        if rows_b != k or (a.shape[-1] if trans_a else a.shape[-2]) != m or (b.shape[-2] if trans_b else b.shape[-1]) != n:
            raise ValueError(f"gemm: shapes {a.shape}{'^T' if trans_a else ''} @ {b.shape}{'^T' if trans_b else ''} "
                             f"-> {out.shape} do not match")

        def stride(x):
            entries = int(np.prod(x.shape[:-2])) if x.ndim > 2 else 1
            if entries not in (1, count):
                raise ValueError(f"gemm: batch of {entries} matrices for {count} products")
            return 0 if entries == 1 else x.shape[-2] * x.shape[-1]

        self.k.gemm(trans_b, trans_a, n, m, k, alpha, self._ptr(b, "gemm b"), b.shape[-1], stride(b),
                    self._ptr(a, "gemm a"), a.shape[-1], stride(a), beta, self._ptr(out, "gemm out"), n,
                    m * n, count, self._stream)
        return out

    # -- activations ----------------------------------------------------------------------------------------------
    def activate(self, x, activation):
        """activation(x) as a new array (x itself for linear); the normalize_channels family works across axis 1."""
        if activation == "linear":
            return x
        x = self.xp.ascontiguousarray(x)
        out = self.xp.empty_like(x)
        if activation in CHANNEL_ACTIVATIONS:
            batch, channels = x.shape[0], x.shape[1]
            self.k.normalize_channels(self._ptr(x), self._ptr(out), batch, channels, x.size // max(1, batch * channels),
                                      activation, self._stream)
        else:
            self.k.affine_activate(self._ptr(x), self._ptr(out), 1, 1, x.size, 0, 0, activation, self._stream)
        return out

    def activate_backward(self, x, dy, activation):
        """d(loss)/dx from the pre-activation x and dy = d(loss)/d(activation(x)): a new array (dy for linear)."""
        if activation == "linear":
            return dy
        x, dy = self.xp.ascontiguousarray(x), self.xp.ascontiguousarray(dy)
        if x.shape != dy.shape:
            raise ValueError(f"activate_backward: x {x.shape} and dy {dy.shape} differ")
        dx = self.xp.empty_like(dy)
        if activation in CHANNEL_ACTIVATIONS:
            batch, channels = x.shape[0], x.shape[1]
            self.k.normalize_channels_backward(self._ptr(x), self._ptr(dy), self._ptr(dx), batch, channels,
                                               x.size // max(1, batch * channels), activation, self._stream)
        else:
            self.k.activate_backward(self._ptr(x), self._ptr(dy), self._ptr(dx), x.size, activation, self._stream)
        return dx

    def affine_activation(self, z, scale, shift, activation):
        """activation(z * scale[c] + shift[c]) per channel c (axis 1), in place in z (C-contiguous); scale None
        means 1. Returns z (a new array for the normalize_channels family)."""
        if activation in CHANNEL_ACTIVATIONS:
            self.affine_activation(z, scale, shift, "linear")
            return self.activate(z, activation)
        batch, channels = z.shape[0], z.shape[1]
        self.k.affine_activate(self._ptr(z), self._ptr(z), batch * channels, channels, z.size // max(1, batch * channels),
                               self._ptr(scale, "scale"), self._ptr(shift, "shift"), activation, self._stream)
        return z

    def activate_(self, z, activation):
        """z = activation(z) in place (z C-contiguous)."""
        if activation in CHANNEL_ACTIVATIONS:
            z[...] = self.activate(z, activation)
        elif activation != "linear":
            self.k.affine_activate(self._ptr(z), self._ptr(z), 1, 1, z.size, 0, 0, activation, self._stream)

    # -- convolution (conv2d, conv2d_backward, conv2d_affine_activation, conv_memory, matmul for [connected]) ---------

    # -- batch normalization ------------------------------------------------------------------------------------------

    # -- pooling, resampling, routing, shortcut -----------------------------------------------------------------------

    # -- heads, losses, dropout, softmax, optimizer -------------------------------------------------------------------
