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
from typing import NamedTuple

import numpy as np

from .activations import CHANNEL_ACTIVATIONS
from .backend import BN_MOMENTUM, _Geometry, check_statistics_count, inference_batchnorm_affine
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

    def track_peak(self):
        pass

    @staticmethod
    def memory_stats():
        from .backend import NumpyOps
        return NumpyOps.memory_stats()


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

    def __init__(self, index=0, name=None):
        from ._ext import cuda_extension
        name = name or f"cuda:{index}"
        self.kernels = cuda_extension(name)
        if self.kernels.driver_version() == 0:
            raise DeviceError(f"device '{name}': no CUDA driver on this machine (darknet_py._cuda is built, but "
                              f"cudaDriverGetVersion found no driver); use device='cpu' or 'cuda-emulated'")
        try:
            import cupy
        except ImportError:
            raise DeviceError(f"device '{name}' needs CuPy: pip install cupy-cuda13x (or darknet_py[gpu])") from None
        count = self.kernels.device_count()
        if not 0 <= index < count:
            raise DeviceError(f"device '{name}': expected a GPU index 0..{count - 1}; this machine has {count}")
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

    def track_peak(self):
        """Record the pool's peak of bytes in use from now on: CuPy keeps no peak, so allocations go through a
        wrapper of the pool's malloc that reads used_bytes after each."""
        pool = self.xp.get_default_memory_pool()
        self._peak = pool.used_bytes()

        def allocate(size):
            memory = pool.malloc(size)
            self._peak = max(self._peak, pool.used_bytes())
            return memory
        self.xp.cuda.set_allocator(allocate)

    def memory_stats(self):
        """Device bytes: peak in use since track_peak() (else now), reserved by CuPy's pool, and the cuBLAS
        workspace (outside the pool's accounting of arrays, allocated from it once)."""
        pool = self.xp.get_default_memory_pool()
        return {"peak_bytes": getattr(self, "_peak", pool.used_bytes()), "reserved_bytes": pool.total_bytes(),
                "cublas_workspace_bytes": self.workspace.nbytes}


def make_device(device):
    """The device named `device`: "cuda-emulated", "cuda" or "cuda:N"."""
    if device == "cuda-emulated":
        return EmulatedDevice()
    index = device.partition(":")[2] if device != "cuda" else "0"
    if not index.isdigit():
        raise DeviceError(f"device '{device}': expected cuda, cuda:N (N a GPU index) or cuda-emulated")
    return CupyDevice(int(index), device)


class _BatchNormCache(NamedTuple):
    """What CudaOps.batchnorm_backward reads of its forward: whether it trained, its input, the per-channel mean and
    1/sqrt(variance + eps) it normalized with, its scales and biases, the activation, and the activation's input
    where the activation mixes channels (else None: recomputed from the rest)."""
    train: bool
    x: object
    mean: object
    inv_std: object
    scales: object
    biases: object
    activation: str
    z: object


# -- the ops --------------------------------------------------------------------------------------------------------
class CudaOps:
    """The ops interface on CUDA kernels (module docstring). Arrays are float32, C-contiguous, on `device`."""

    dtype = np.dtype(FLOAT)
    weights_on_device = True   # layer_params moves layer.weights to the device at their first use
    # the layer table's memory lines (table.py): device memory of the CUDA engine
    weight_cache_label = None
    scratch_label = "im2col, weight-gradient partial sums, temporaries"
    memory_note = ("GPU memory: arrays come from CuPy's pool (rounded to 512 bytes; freed blocks stay reserved for "
                   "reuse, so a run reserves its peak); the CUDA context and libraries take a few hundred MiB more")

    @staticmethod
    def reserved_memory():
        """[(what, bytes)] the engine holds whatever the network: cuBLAS's workspace."""
        return [("cuBLAS workspace", CUBLAS_WORKSPACE_BYTES)]

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

    def track_peak(self):
        """Start recording the peak of device memory in use (memory_stats' peak_bytes)."""
        self.device.track_peak()

    def memory_stats(self):
        return self.device.memory_stats()

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
    # Paths (conv_path): "pointwise" (1x1, stride 1, no padding: per group one strided-batched GEMM over the whole
    # batch, the weights shared with stride 0), "depthwise" and "grouped" (the direct kernels of csrc/cuda/
    # depthwise.cu, no im2col: groups == channels == filters, and the other grouped convolutions), "im2col" (the
    # columns of a chunk of images, then one strided-batched GEMM per group; col2im for the input gradient). Chunks
    # keep the GEMM paths' buffers within conv_workspace_bytes (one image at least).
    CONV_WORKSPACE_BYTES = 64 * 1024 * 1024
    GEMM_MAX_GROUPS = 8   # grouped 1x1 convolutions with more groups than this run on the direct kernels
    DIRECT_PATHS = ("depthwise", "grouped")

    conv_workspace_bytes = CONV_WORKSPACE_BYTES

    def conv_path(self, c, filters, size, stride_x, stride_y, pad, dilation, groups, out_h, out_w, activation,
                  train, dtype=FLOAT):
        """The algorithm that computes this convolution, the one dispatch of conv2d, conv2d_backward,
        conv2d_affine_activation and conv_memory: "pointwise", "depthwise", "grouped" or "im2col" (see above). A
        kernel size, stride or dilation whose tiles do not fit the direct kernels' shared memory takes "im2col"."""
        pointwise = size == 1 and pad == 0 and stride_x == stride_y == 1
        if (groups > 1 and not (pointwise and groups <= self.GEMM_MAX_GROUPS) and
                self.k.grouped_conv_fits(size, stride_x, stride_y, dilation)):
            return "depthwise" if groups == c == filters else "grouped"
        return "pointwise" if pointwise else "im2col"

    def _conv_setup(self, x, w, stride_x, stride_y, pad, dilation, groups):
        """(x C-contiguous, the kernels' ConvShape, backend._Geometry, path) of conv2d(x, w, ...), shapes checked."""
        if x.ndim != 4 or w.ndim != 4 or w.shape[2] != w.shape[3]:
            raise ValueError(f"conv2d: x {x.shape} and weights {w.shape}: expected (batch, c, h, w) and (filters, "
                             f"c/groups, size, size)")
        _, c, h, width = x.shape
        filters, cg, size, _ = w.shape
        if groups < 1 or filters % groups or cg * groups != c:
            raise ValueError(f"conv2d: weights {w.shape} with groups={groups} do not fit {c} input channels")
        g = _Geometry(c, h, width, size, stride_x, stride_y, pad, dilation)
        shape = self.k.ConvShape(c, h, width, filters, groups, size, stride_x, stride_y, dilation, g.off, g.out_h,
                                 g.out_w)
        path = self.conv_path(c, filters, size, stride_x, stride_y, pad, dilation, groups, g.out_h, g.out_w, None, True)
        return self.xp.ascontiguousarray(x), shape, g, path

    def _conv_workspace_floats(self, path, rows, filters, pixels, train):
        """Floats per image of the GEMM paths' chunk buffers: the columns (rows x pixels) in inference; in training
        the swapped output gradient and the columns, and for im2col the columns' gradient."""
        if not train:
            return 0 if path == "pointwise" else rows * pixels
        return (filters + rows * (2 if path == "im2col" else 1)) * pixels

    def _conv_chunk(self, batch, floats_per_image):
        """Images per chunk of the GEMM paths."""
        return max(1, min(batch, self.conv_workspace_bytes // max(1, 4 * floats_per_image)))

    def _at(self, a, offset, what):
        """The address of element `offset` (in floats) of the device array a."""
        return self._ptr(a, what) + 4 * offset

    def _gemm_at(self, m, n, k, a, lda, stride_a, b, ldb, stride_b, c, ldc, stride_c, count=1, trans_a=False,
                 trans_b=False, beta=0.0):
        """C_i = op(A_i) @ op(B_i) + beta * C_i for i < count on row-major sub-matrices of larger arrays, which gemm's
        whole arrays cannot express: addresses a, b, c; leading dimensions and batch strides in floats; op(A) m x k,
        op(B) k x n (A stored k x m when trans_a, B stored n x k when trans_b)."""
        self.k.gemm(trans_b, trans_a, n, m, k, 1.0, b, ldb, stride_b, a, lda, stride_a, beta, c, ldc, stride_c, count,
                    self._stream)

    def conv2d(self, x, w, stride_x=1, stride_y=1, pad=0, dilation=1, groups=1):
        """Darknet's convolution (see backend.py's module docstring) of x (batch, c, h, w) with w (filters,
        c/groups, size, size), without bias: (batch, filters, out_h, out_w)."""
        return self._conv_forward(x, w, None, None, "linear", stride_x, stride_y, pad, dilation, groups)

    def conv2d_affine_activation(self, x, w, scale, shift, activation, stride_x=1, stride_y=1, pad=0, dilation=1,
                                 groups=1):
        """Inference: activation(conv2d(x, w) * scale[f] + shift[f]) per filter f, without keeping the
        pre-activation (scale None means 1: a plain bias). The direct kernels apply it in their epilogue; the GEMM
        paths in one kernel after the GEMMs (cuBLAS has no epilogue)."""
        return self._conv_forward(x, w, scale, shift, activation, stride_x, stride_y, pad, dilation, groups)

    def _conv_forward(self, x, w, scale, shift, activation, stride_x, stride_y, pad, dilation, groups):
        x, shape, g, path = self._conv_setup(x, w, stride_x, stride_y, pad, dilation, groups)
        batch, c, h, width = x.shape
        filters, cg, size, _ = w.shape
        for name, v in (("scale", scale), ("shift", shift)):
            if v is not None and v.size != filters:
                raise ValueError(f"conv2d_affine_activation: {name} of {v.size} values for {filters} filters")
        out = self.empty((batch, filters, g.out_h, g.out_w))
        if path in self.DIRECT_PATHS:
            fused = "linear" if activation in CHANNEL_ACTIVATIONS else activation
            self.k.grouped_conv_forward(self._ptr(x, "conv2d x"), self._ptr(w, "conv2d weights"),
                                        self._ptr(scale, "scale"), self._ptr(shift, "shift"), fused,
                                        self._ptr(out), batch, shape, self._stream)
            return out if fused == activation else self.activate(out, activation)
        fg, pixels, rows = filters // groups, g.out_h * g.out_w, cg * size * size
        if path == "pointwise":
            for j in range(groups):
                self._gemm_at(fg, pixels, cg, self._at(w, j * fg * cg, "conv2d weights"), cg, 0,
                              self._at(x, j * cg * pixels, "conv2d x"), pixels, c * pixels,
                              self._at(out, j * fg * pixels, "out"), pixels, filters * pixels, batch)
        else:
            chunk = self._conv_chunk(batch, self._conv_workspace_floats(path, rows, filters, pixels, False))
            cols = self.empty((rows, chunk * pixels))
            for first in range(0, batch, chunk):
                images = min(chunk, batch - first)
                for j in range(groups):
                    self.k.im2col(self._at(x, (first * c + j * cg) * h * width, "conv2d x"), images, shape,
                                  self._ptr(cols), self._stream)
                    # out[first + i, group j] = W_j @ cols[:, image i]: the columns of image i are `pixels` apart
                    self._gemm_at(fg, pixels, rows, self._at(w, j * fg * rows, "conv2d weights"), rows, 0,
                                  self._ptr(cols), images * pixels, pixels,
                                  self._at(out, (first * filters + j * fg) * pixels, "out"), pixels, filters * pixels,
                                  images)
        if scale is None and shift is None and activation == "linear":
            return out
        return self.affine_activation(out, scale, shift, activation)

    def conv2d_backward(self, x, w, dy, stride_x=1, stride_y=1, pad=0, dilation=1, groups=1, need_dx=True):
        """Gradients of conv2d: (dx, dw) for d(loss)/d(output) dy; dx is None when need_dx is false. Weight
        gradients sum over the images in the kernels (direct paths: partial sums per block, then a sum) or in the
        GEMM (a chunk's images are one long K dimension: its output gradient swapped to (filters, images*pixels))."""
        x, shape, g, path = self._conv_setup(x, w, stride_x, stride_y, pad, dilation, groups)
        batch, c, h, width = x.shape
        filters, cg, size, _ = w.shape
        dy = self.xp.ascontiguousarray(dy)
        if tuple(dy.shape) != (batch, filters, g.out_h, g.out_w):
            raise ValueError(f"conv2d_backward: dy {dy.shape}; expected {(batch, filters, g.out_h, g.out_w)}")
        dw = self.empty(w.shape)
        dx = self.empty(x.shape) if need_dx else None
        if path in self.DIRECT_PATHS:
            if need_dx:
                self.k.grouped_conv_dgrad(self._ptr(dy, "dy"), self._ptr(w, "conv2d weights"), self._ptr(dx), batch,
                                          shape, self._stream)
            partials = self.empty(self.k.grouped_conv_wgrad_partials(batch, shape))
            self.k.grouped_conv_wgrad(self._ptr(x, "conv2d x"), self._ptr(dy, "dy"), self._ptr(partials),
                                      self._ptr(dw), batch, shape, self._stream)
            return dx, dw
        fg, pixels, rows = filters // groups, g.out_h * g.out_w, cg * size * size
        col_grads = need_dx and path == "im2col"
        chunk = self._conv_chunk(batch, self._conv_workspace_floats(path, rows, filters, pixels, True))
        dy_rows = self.empty((filters, chunk * pixels))
        cols = self.empty((rows, chunk * pixels))
        dcols = self.empty((rows, chunk * pixels)) if col_grads else None
        for first in range(0, batch, chunk):
            images = min(chunk, batch - first)
            columns = images * pixels
            self.k.swap_leading_axes(self._at(dy, first * filters * pixels, "dy"), self._ptr(dy_rows), images, filters,
                                     pixels, self._stream)
            for j in range(groups):
                dy_j = self._at(dy_rows, j * fg * columns, "dy")
                self.k.im2col(self._at(x, (first * c + j * cg) * h * width, "conv2d x"), images, shape,
                              self._ptr(cols), self._stream)
                # dW_j (+)= dY_j (fg x columns) @ cols^T (columns x rows)
                self._gemm_at(fg, rows, columns, dy_j, columns, 0, self._ptr(cols), columns, 0,
                              self._at(dw, j * fg * rows, "dw"), rows, 0, trans_b=True, beta=0.0 if first == 0 else 1.0)
                if col_grads:
                    self._gemm_at(rows, columns, fg, self._at(w, j * fg * rows, "conv2d weights"), rows, 0, dy_j,
                                  columns, 0, self._ptr(dcols), columns, 0, trans_a=True)
                    self.k.col2im(self._ptr(dcols), images, shape, self._at(dx, (first * c + j * cg) * h * width, "dx"),
                                  self._stream)
        if need_dx and path == "pointwise":
            for j in range(groups):   # dx[b, group j] = W_j^T @ dy[b, group j], batched over the images
                self._gemm_at(cg, pixels, fg, self._at(w, j * fg * cg, "conv2d weights"), cg, 0,
                              self._at(dy, j * fg * pixels, "dy"), pixels, filters * pixels,
                              self._at(dx, j * cg * pixels, "dx"), pixels, c * pixels, batch, trans_a=True)
        return dx, dw

    def conv_memory(self, layer, batch, train):
        """(path, cache_bytes, scratch_bytes) of a convolutional layer's forward at `batch` (and its backward in
        training), from its shapes: nothing is cached; scratch is the GEMM paths' chunk buffers or the direct
        weight gradient's partial sums (device memory, from CuPy's pool, freed after the layer)."""
        c, filters, size, groups = layer.c, layer.filters, layer.size, layer.groups
        path = self.conv_path(c, filters, size, layer.stride_x, layer.stride_y, layer.padding, layer.dilation, groups,
                              layer.out_h, layer.out_w, layer.activation, train)
        if path in self.DIRECT_PATHS:
            if not train:
                return path, 0, 0
            shape = self.k.ConvShape(c, layer.h, layer.w, filters, groups, size, layer.stride_x, layer.stride_y,
                                     layer.dilation, layer.padding * layer.dilation, layer.out_h, layer.out_w)
            return path, 0, 4 * self.k.grouped_conv_wgrad_partials(batch, shape)
        per_image = self._conv_workspace_floats(path, c // groups * size * size, filters, layer.out_h * layer.out_w,
                                                train)
        return path, 0, 4 * per_image * self._conv_chunk(batch, per_image)

    def linear(self, x, w):
        """x @ w.T for x (batch, inputs) and w (outputs, inputs): [connected]'s product, a new (batch, outputs)
        array."""
        x = self.xp.ascontiguousarray(x)
        return self.gemm(x, w, self.empty((x.shape[0], w.shape[0])), trans_b=True)

    def linear_backward(self, x, w, dz, need_dx=True):
        """Gradients of linear: (dx, dw) = (dz @ w, dz.T @ x) for dz = d(loss)/d(x @ w.T); dx is None when need_dx
        is false."""
        x, dz = self.xp.ascontiguousarray(x), self.xp.ascontiguousarray(dz)
        dw = self.gemm(dz, x, self.empty(w.shape), trans_a=True)
        return (self.gemm(dz, w, self.empty(x.shape)) if need_dx else None), dw

    # -- batch normalization ------------------------------------------------------------------------------------------
    def _channels_shape(self, x, what):
        """(batch, channels, spatial) of a C-contiguous x (batch, channels, ...): a [connected] output has spatial 1."""
        if x.ndim < 2:
            raise ValueError(f"{what}: expected an array (batch, channels, ...); got shape {x.shape}")
        return x.shape[0], x.shape[1], int(np.prod(x.shape[2:], dtype=np.int64))

    def _per_channel(self, a, channels, what):
        """a as (channels,), checked (the kernels read `channels` values from its address)."""
        if a.size != channels:
            raise ValueError(f"{what}: expected {channels} values (one per channel); got shape {a.shape}")
        return a.reshape(channels)

    def _workspace(self, batch, channels, spatial):
        """The reductions' partial results. The caller holds it in a variable until the kernels have run (an array
        made inside the call's arguments would be freed once its address is taken)."""
        return self.empty(self.k.batchnorm_workspace_floats(batch, channels, spatial))

    def batchnorm_affine(self, scales, biases, rolling_mean, rolling_variance):
        """NumpyOps.batchnorm_affine: (scales / sqrt(rolling_variance + .00001), biases - rolling_mean * scale)."""
        return inference_batchnorm_affine(scales, biases, rolling_mean, rolling_variance, self.xp)

    def batchnorm_forward(self, x, scales, biases, rolling_mean, rolling_variance, train, activation="linear"):
        """Darknet's batch normalization of x (batch, channels, ...) per channel (axis 1), then scales, biases and
        the activation (layers/batchnorm.py has the formulas): (output, cache for batchnorm_backward).
        scales, biases: `channels` values. rolling_mean, rolling_variance: the layer's device arrays of `channels`
        values (any shape). train: normalizes with the statistics of x over the batch and spatial axes (M >= 2 values
        per channel, variance divided by M - 1) and updates the rolling arrays in place, rolling = (1 - BN_MOMENTUM)
        * rolling + BN_MOMENTUM * statistic; else normalizes with the rolling statistics.
        Kernels: the statistics in two stages, then one pass that normalizes, scales, shifts and activates. The
        cache keeps x and the per-channel statistics (and references to scales and biases, which must not change
        before the backward); backward recomputes the activation's input from them, except for the
        normalize_channels family, which mixes channels: its input is kept."""
        x = self.xp.ascontiguousarray(x)
        batch, channels, spatial = self._channels_shape(x, "batchnorm_forward")
        scales, biases, rolling_mean, rolling_variance = (
            self._per_channel(a, channels, name) for a, name in ((scales, "scales"), (biases, "biases"),
                                                                 (rolling_mean, "rolling_mean"),
                                                                 (rolling_variance, "rolling_variance")))
        inv_std = self.empty(channels)
        if train:
            check_statistics_count(batch * spatial)
            mean, workspace = self.empty(channels), self._workspace(batch, channels, spatial)
            self.k.batchnorm_statistics(self._ptr(x, "x"), batch, channels, spatial, BN_MOMENTUM, self._ptr(mean),
                                        self._ptr(inv_std), self._ptr(rolling_mean, "rolling_mean"),
                                        self._ptr(rolling_variance, "rolling_variance"),
                                        self._ptr(workspace), self._stream)
        else:
            mean = rolling_mean
            self.k.batchnorm_inverse_std(self._ptr(rolling_variance, "rolling_variance"), self._ptr(inv_std), channels,
                                         self._stream)
        fused = activation not in CHANNEL_ACTIVATIONS
        out = self.xp.empty_like(x)
        self.k.batchnorm_normalize(self._ptr(x), self._ptr(out), batch, channels, spatial, self._ptr(mean, "mean"),
                                   self._ptr(inv_std), self._ptr(scales, "scales"), self._ptr(biases, "biases"),
                                   activation if fused else "linear", self._stream)
        z = None
        if not fused:
            z, out = out, self.activate(out, activation)
        return out, _BatchNormCache(train, x, mean, inv_std, scales, biases, activation, z)

    def batchnorm_backward(self, delta, cache):
        """Gradients of the batchnorm_forward that made `cache`, for delta = d(loss)/d(its output): (dx, dscales,
        dbiases), new arrays. In training the gradient flows through the batch mean and the M - 1 variance.
        Kernels: one pass over delta and x for the per-channel sums (dbiases, dscales; the activation's gradient
        fused), then one elementwise pass for dx."""
        x = cache.x
        delta = self.xp.ascontiguousarray(delta)
        if delta.shape != x.shape:
            raise ValueError(f"batchnorm_backward: delta {delta.shape} does not match the forward's input {x.shape}")
        activation = cache.activation
        if cache.z is not None:
            delta, activation = self.activate_backward(cache.z, delta, activation), "linear"
        batch, channels, spatial = self._channels_shape(x, "batchnorm_backward")
        dx, dscales, dbiases = self.xp.empty_like(x), self.empty(channels), self.empty(channels)
        workspace = self._workspace(batch, channels, spatial)
        self.k.batchnorm_backward(self._ptr(delta, "delta"), self._ptr(x), batch, channels, spatial,
                                  self._ptr(cache.mean), self._ptr(cache.inv_std), self._ptr(cache.scales),
                                  self._ptr(cache.biases), activation, cache.train, self._ptr(dx), self._ptr(dscales),
                                  self._ptr(dbiases), self._ptr(workspace), self._stream)
        return dx, dscales, dbiases

    def channel_sum(self, x):
        """The sums of x (batch, channels, ...) over every axis but the channel axis 1: (channels,) (the bias
        gradient of a layer without batch normalization). Two-stage reduction, no atomics."""
        x = self.xp.ascontiguousarray(x)
        batch, channels, spatial = self._channels_shape(x, "channel_sum")
        sums, workspace = self.empty(channels), self._workspace(batch, channels, spatial)
        self.k.channel_sum(self._ptr(x, "x"), batch, channels, spatial, self._ptr(sums), self._ptr(workspace),
                           self._stream)
        return sums

    # -- pooling, resampling, routing, shortcut -----------------------------------------------------------------------
    # The contracts are NumpyOps' (backend.py); the kernels are in csrc/cuda/pooling.cu, resample.cu and route.cu.
    # Inputs are made C-contiguous (a copy only if they are not); arrays written in place must already be.
    _FLOAT_BYTES = np.dtype(FLOAT).itemsize   # to address a column of a row-major array
    def _contiguous(self, a, ndim, what):
        if a.ndim != ndim:
            raise ValueError(f"{what}: expected a {ndim}-D array; got shape {a.shape}")
        return self.xp.ascontiguousarray(a)

    def _argmax_ptr(self, a, shape):
        """The address of an int32 argmax array of `shape` made by maxpool2d_argmax or maxpool_depth."""
        if a.dtype != np.int32 or not a.flags.c_contiguous or tuple(a.shape) != tuple(shape):
            raise ValueError(f"argmax: expected the C-contiguous int32 {tuple(shape)} array of the forward; got "
                             f"{a.dtype} {tuple(a.shape)}")
        return self.device.pointer(a)

    def _pool_windows(self, x_shape, size, stride_x, stride_y, offset, out_h, out_w):
        """The kernels' window arguments (planes, h, w, out_h, out_w, size, stride_x, stride_y, offset), checked."""
        batch, c, h, w = x_shape
        if min(size, stride_x, stride_y, out_h, out_w) < 1 or offset < 0:
            raise ValueError(f"pooling: expected size, strides and output size >= 1 and offset >= 0; got size={size}, "
                             f"strides {stride_x}x{stride_y}, output {out_w}x{out_h}, offset {offset}")
        if h * w >= 2 ** 31:
            raise ValueError(f"pooling: a {w}x{h} plane has more positions than int32 argmax indexes can address")
        return batch * c, h, w, out_h, out_w, size, stride_x, stride_y, offset

    def _maxpool(self, x, argmax, size, stride_x, stride_y, offset, out_h, out_w):
        x = self._contiguous(x, 4, "maxpool x")
        out = self.empty(x.shape[:2] + (out_h, out_w))
        arg = self.xp.empty(out.shape, dtype=np.int32) if argmax else None
        windows = self._pool_windows(x.shape, size, stride_x, stride_y, offset, out_h, out_w)
        self.k.maxpool(self._ptr(x), self._ptr(out), 0 if arg is None else self.device.pointer(arg), *windows,
                       self._stream)
        return out, arg

    def maxpool2d(self, x, size, stride_x, stride_y, offset, out_h, out_w):
        """Inference max pooling: the maximum over each size x size window of x (batch, c, h, w) whose (0, 0)
        is input element (-offset, -offset), positions outside ignored (-FLT_MAX for an empty window)."""
        return self._maxpool(x, False, size, stride_x, stride_y, offset, out_h, out_w)[0]

    def maxpool2d_argmax(self, x, size, stride_x, stride_y, offset, out_h, out_w):
        """Training max pooling: (out, argmax), out as maxpool2d; argmax (batch, c, out_h, out_w) int32 is darknet's
        `indexes` within each plane: the winner's y * w + x (first strict maximum in scan order), -1 where no input
        beat -FLT_MAX (an empty window, or NaNs only)."""
        return self._maxpool(x, True, size, stride_x, stride_y, offset, out_h, out_w)

    def maxpool2d_backward(self, dy, argmax, size, stride_x, stride_y, offset, h, w):
        """d(loss)/dx (batch, c, h, w) of maxpool2d_argmax: each output's dy to the input that won its window,
        summed where windows overlap (a gather per input: deterministic)."""
        dy = self._contiguous(dy, 4, "maxpool dy")
        dx = self.empty(dy.shape[:2] + (h, w))
        windows = self._pool_windows(dx.shape, size, stride_x, stride_y, offset, *dy.shape[2:])
        self.k.maxpool_backward(self._ptr(dy), self._argmax_ptr(argmax, dy.shape), self._ptr(dx), *windows,
                                self._stream)
        return dx

    def maxpool_depth(self, x, out_channels):
        """maxpool_depth: (out, argmax) for x (batch, c, h, w); output channel g (< out_channels) is the first
        maximum over input channels g, g + out_channels, ... at each position (-FLT_MAX where nothing beats it);
        argmax (batch, out_channels, h, w) int32 holds the winning round r (input channel g + r*out_channels),
        -1 for none."""
        x = self._contiguous(x, 4, "maxpool_depth x")
        batch, c, h, w = x.shape
        out = self.empty((batch, out_channels, h, w))
        arg = self.xp.empty(out.shape, dtype=np.int32)
        self.k.maxpool_depth(self._ptr(x), self._ptr(out), self.device.pointer(arg), batch, c, out_channels, h * w,
                             self._stream)
        return out, arg

    def maxpool_depth_backward(self, dy, argmax, channels):
        """d(loss)/dx (batch, channels, h, w) of maxpool_depth: each output's gradient to its winning channel."""
        dy = self._contiguous(dy, 4, "maxpool_depth dy")
        batch, out_channels, h, w = dy.shape
        dx = self.empty((batch, channels, h, w))
        self.k.maxpool_depth_backward(self._ptr(dy), self._argmax_ptr(argmax, dy.shape), self._ptr(dx), batch,
                                      channels, out_channels, h * w, self._stream)
        return dx

    def local_avgpool2d(self, x, size, stride_x, stride_y, offset, out_h, out_w):
        """[local_avgpool]: each window's sum of in-bounds values (added in scan order) divided by their count;
        NaN (darknet's 0/0) for a window with none. x (batch, c, h, w) -> (batch, c, out_h, out_w)."""
        x = self._contiguous(x, 4, "local_avgpool x")
        out = self.empty(x.shape[:2] + (out_h, out_w))
        windows = self._pool_windows(x.shape, size, stride_x, stride_y, offset, out_h, out_w)
        self.k.local_avgpool(self._ptr(x), self._ptr(out), *windows, self._stream)
        return out

    def local_avgpool2d_backward(self, dy, size, stride_x, stride_y, offset, h, w):
        """d(loss)/dx (batch, c, h, w) of local_avgpool2d: each window's dy / count to each of its in-bounds
        inputs, summed where windows overlap (a gather per input)."""
        dy = self._contiguous(dy, 4, "local_avgpool dy")
        dx = self.empty(dy.shape[:2] + (h, w))
        windows = self._pool_windows(dx.shape, size, stride_x, stride_y, offset, *dy.shape[2:])
        self.k.local_avgpool_backward(self._ptr(dy), self._ptr(dx), *windows, self._stream)
        return dx

    def avgpool(self, x):
        """Global average pooling: x (batch, c, h, w) -> (batch, c, 1, 1), the mean of each plane."""
        x = self._contiguous(x, 4, "avgpool x")
        out = self.empty(x.shape[:2] + (1, 1))
        self.k.avgpool(self._ptr(x), self._ptr(out), x.shape[0] * x.shape[1], x.shape[2] * x.shape[3], self._stream)
        return out

    def avgpool_backward(self, dy, h, w):
        """d(loss)/dx (batch, c, h, w) of avgpool for dy of batch * c values: dy / (h*w) at every position."""
        dy = self.xp.ascontiguousarray(dy).reshape(dy.shape[0], -1)
        dx = self.empty(dy.shape + (h, w))
        self.k.avgpool_backward(self._ptr(dy), self._ptr(dx), dy.size, h * w, self._stream)
        return dx

    def upsample(self, x, stride, scale):
        """[upsample]: x (b, c, h, w) -> (b, c, h*stride, w*stride), every value repeated stride x stride times,
        times scale. The adjoint of downsample."""
        x = self._contiguous(x, 4, "upsample x")
        b, c, h, w = x.shape
        out = self.empty((b, c, h * stride, w * stride))
        self.k.upsample(self._ptr(x), self._ptr(out), b * c, h, w, stride, scale, self._stream)
        return out

    def downsample(self, x, stride, scale):
        """[upsample] with a negative stride: x (b, c, h*stride, w*stride) -> (b, c, h, w), the sum of
        scale * value over each stride x stride block, added in row-major order (darknet: a scaled sum, not a
        mean). The adjoint of upsample."""
        x = self._contiguous(x, 4, "downsample x")
        b, c, hs, ws = x.shape
        if hs % stride or ws % stride:
            raise ValueError(f"downsample: a {ws}x{hs} input is not divisible by stride {stride}")
        out = self.empty((b, c, hs // stride, ws // stride))
        self.k.downsample(self._ptr(x), self._ptr(out), b * c, hs // stride, ws // stride, stride, scale, self._stream)
        return out

    def reorg(self, x, stride, channels, h, w, to_big):
        """darknet's reorg_cpu on each image of x (batch, ...) for its "small" buffer (channels, h, w) and "big"
        one (channels / stride^2, h*stride, w*stride) (reorg_permutation has the map): to_big reads x as small
        and returns big, else reads big and returns small. Each direction is the other's inverse (and so its
        adjoint)."""
        s = stride
        if channels % (s * s) or x.size != x.shape[0] * channels * h * w:
            raise ValueError(f"reorg: {x.shape} is not a batch of {channels}x{h}x{w} images with stride^2={s * s} "
                             f"dividing the channels")
        x = self.xp.ascontiguousarray(x)
        out = self.empty((x.shape[0],) + ((channels // (s * s), h * s, w * s) if to_big else (channels, h, w)))
        self.k.reorg(self._ptr(x), self._ptr(out), x.shape[0], channels, h, w, s, to_big, self._stream)
        return out

    def route(self, pieces, outputs):
        """[route]: (batch, outputs), the columns src[:, start:start + count] of each (src, start, count) of
        `pieces` (src (batch, n)) side by side in order, then zeros up to `outputs` columns."""
        batch = pieces[0][0].shape[0]
        filled = sum(count for _, _, count in pieces)
        if filled > outputs:
            raise ValueError(f"route: {filled} columns for an output of {outputs}")
        out = (self.zeros if filled < outputs else self.empty)((batch, outputs))
        offset = 0
        for src, start, count in pieces:
            src = self._contiguous(src, 2, "route source")
            if src.shape[0] != batch or start < 0 or start + count > src.shape[1]:
                raise ValueError(f"route: columns {start}..{start + count} of a {src.shape} source for batch {batch}")
            self.k.copy_2d(self._ptr(src) + start * self._FLOAT_BYTES, src.shape[1],
                           self._ptr(out) + offset * self._FLOAT_BYTES, outputs, batch, count, False, self._stream)
            offset += count
        return out

    def route_backward(self, dy, pieces):
        """The adjoint of route, added in place: for each (delta, start, count) of `pieces` (delta (batch, n),
        C-contiguous, in route's order), delta[:, start:start + count] += its columns of dy (batch, outputs)."""
        dy = self._contiguous(dy, 2, "route dy")
        offset = 0
        for delta, start, count in pieces:
            if delta.ndim != 2 or delta.shape[0] != dy.shape[0] or start < 0 or start + count > delta.shape[1] \
                    or offset + count > dy.shape[1]:
                raise ValueError(f"route_backward: columns {start}..{start + count} of a {delta.shape} delta from "
                                 f"columns {offset}.. of a {dy.shape} gradient")
            self.k.copy_2d(self._ptr(dy) + offset * self._FLOAT_BYTES, dy.shape[1],
                           self._ptr(delta, "route delta") + start * self._FLOAT_BYTES, delta.shape[1], dy.shape[0],
                           count, True, self._stream)
            offset += count

    _NORMALIZATION_ACTIVATIONS = {"relu": "normalize_channels", "softmax": "normalize_channels_softmax_maxval"}

    def shortcut_weights(self, raw, normalization):
        """[shortcut] weights (n+1, 1 or c), one row per summand, normalized over the rows of each column:
        "none" raw itself; "relu" relu(w) / (eps + sum relu(w)); "softmax" e^(w - max) / (eps + sum e^(w - max)),
        eps = .0001, the maximum of the column. (The normalize_channels kernels, with the rows as channels.)"""
        if normalization == "none":
            return raw
        return self.activate(raw.reshape((1,) + raw.shape), self._NORMALIZATION_ACTIVATIONS[normalization])[0]

    def shortcut_weights_backward(self, raw, normalized, grad, normalization):
        """d(loss)/d(raw) from grad = d(loss)/d(normalized) of shortcut_weights(raw, normalization), through relu's
        mask, the softmax, its eps and the subtracted maximum (the first maximal weight of each column)."""
        if normalization == "none":
            return grad
        return self.activate_backward(raw.reshape((1,) + raw.shape), grad.reshape((1,) + grad.shape),
                                      self._NORMALIZATION_ACTIVATIONS[normalization])[0]

    def _shortcut_rows(self, x, sources, weights):
        """(x, sources made contiguous, per_channel, the address of each weights row (0 without weights)),
        checked: the same batch and positions everywhere, weights (n+1, 1 or c)."""
        x = self._contiguous(x, 4, "shortcut x")
        sources = [self._contiguous(src, 4, "shortcut source") for src in sources]
        for src in sources:
            if src.shape[0] != x.shape[0] or src.shape[2:] != x.shape[2:]:
                raise ValueError(f"shortcut: a {src.shape} source for a {x.shape} input")
        if weights is None:
            return x, sources, False, [0] * (len(sources) + 1)
        if weights.shape not in ((len(sources) + 1, 1), (len(sources) + 1, x.shape[1])):
            raise ValueError(f"shortcut: weights {weights.shape} for {len(sources)} sources of {x.shape[1]} channels")
        weights = self.xp.ascontiguousarray(weights)
        rows = [self._ptr(weights, "shortcut weights") + k * weights.shape[1] * self._FLOAT_BYTES
                for k in range(weights.shape[0])]
        return x, sources, weights.shape[1] > 1, rows

    def shortcut(self, x, sources, weights):
        """[shortcut] before its activation: z = w_0 x + sum_k w_(k+1) sources[k], x (batch, c, h, w), source k
        (batch, c_k, h, w) added to the first min(c, c_k) channels only; weights None (all 1) or normalized
        weights (n+1, 1 or c) (a row per summand: one factor, or one per channel). A new array."""
        x, sources, per_channel, rows = self._shortcut_rows(x, sources, weights)
        batch, c, h, w = x.shape
        z = self.empty(x.shape)
        self.k.scale_add_channels(self._ptr(x), c, self._ptr(z), c, batch, c, h * w, rows[0], per_channel, False,
                                  self._stream)
        for src, row in zip(sources, rows[1:]):
            self.k.scale_add_channels(self._ptr(src), src.shape[1], self._ptr(z), c, batch, min(c, src.shape[1]),
                                      h * w, row, per_channel, True, self._stream)
        return z

    def shortcut_backward(self, dz, x, sources, weights, deltas):
        """Gradients of shortcut for dz = d(loss)/dz: adds w_(k+1) dz (common channels) into deltas[k] (arrays of
        sources[k]'s shape that write through to the source layers' deltas) and returns (dx, dweights): dweights
        = d(loss)/d(weights) of weights' shape (per row, per channel or in total), None without weights. The
        weight gradients are block reductions (one block per value)."""
        x, sources, per_channel, rows = self._shortcut_rows(x, sources, weights)
        dz = self._contiguous(dz, 4, "shortcut dz")
        batch, c, h, w = x.shape
        spatial = h * w
        dx = self.empty(x.shape)
        self.k.scale_add_channels(self._ptr(dz), c, self._ptr(dx), c, batch, c, spatial, rows[0], per_channel, False,
                                  self._stream)
        grad = self.zeros(weights.shape) if weights is not None else None

        def weight_gradient(k, src, m):   # grad[k, :m] (or grad[k, 0]) = sum of dz * src over the common channels
            count, length = (m, spatial) if per_channel else (1, m * spatial)
            self.k.dot_segments(self._ptr(dz), c * spatial, self._ptr(src), src.shape[1] * spatial,
                                self._ptr(grad) + k * grad.shape[1] * self._FLOAT_BYTES, count, batch, length,
                                self._stream)

        if grad is not None:
            weight_gradient(0, x, c)
        for k, (src, delta) in enumerate(zip(sources, deltas)):
            m = min(c, src.shape[1])
            if delta.shape != src.shape:
                raise ValueError(f"shortcut_backward: a {delta.shape} delta for a {src.shape} source")
            self.k.scale_add_channels(self._ptr(dz), c, self._ptr(delta, "shortcut source delta"), src.shape[1],
                                      batch, m, spatial, rows[k + 1], per_channel, True, self._stream)
            if grad is not None:
                weight_gradient(k + 1, src, m)
        return dx, grad

    def _broadcast(self, a, b, what):
        """(a, b contiguous, the kernels' broadcast mode) for multiply's shapes."""
        a = self._contiguous(a, 4, what)
        batch, c, h, w = a.shape
        # elementwise last: where shapes coincide (h = w = 1 or c = 1) it wins, and the modes agree there anyway
        modes = {(batch, c, 1, 1): "per_channel", (batch, 1, h, w): "per_position", (batch, c, h, w): "elementwise"}
        if tuple(b.shape) not in modes:
            raise ValueError(f"{what}: cannot broadcast {b.shape} over {a.shape}")
        return a, self.xp.ascontiguousarray(b), modes[tuple(b.shape)]

    def multiply(self, a, b):
        """a * b for a (batch, c, h, w) and b of a's shape, (batch, c, 1, 1) or (batch, 1, h, w): a new array."""
        a, b, mode = self._broadcast(a, b, "multiply")
        out = self.empty(a.shape)
        self.k.multiply(self._ptr(a), self._ptr(b), self._ptr(out), a.shape[0], a.shape[1], a.shape[2] * a.shape[3],
                        mode, False, self._stream)
        return out

    def add_product(self, out, a, b):
        """out += a * b in place, with multiply's broadcasting; out C-contiguous with a's size (any shape)."""
        a, b, mode = self._broadcast(a, b, "add_product")
        if out.size != a.size:
            raise ValueError(f"add_product: {out.shape} output for {a.shape} products")
        self.k.multiply(self._ptr(a), self._ptr(b), self._ptr(out, "add_product out"), a.shape[0], a.shape[1],
                        a.shape[2] * a.shape[3], mode, True, self._stream)

    def sum_products(self, a, b, axis):
        """The sum of a * b (both (batch, c, h, w)) over axis 1 (-> (batch, h, w)) or axes (2, 3) (-> (batch, c))."""
        a, b, mode = self._broadcast(a, b, "sum_products")
        if mode != "elementwise":
            raise ValueError(f"sum_products: {a.shape} and {b.shape} differ")
        batch, c, h, w = a.shape
        if axis == 1:
            out = self.empty((batch, h, w))
            self.k.dot_channels(self._ptr(a), self._ptr(b), self._ptr(out), batch, c, h * w, self._stream)
        elif tuple(axis) == (2, 3):
            out = self.empty((batch, c))
            self.k.dot_segments(self._ptr(a), 0, self._ptr(b), 0, self._ptr(out), batch * c, 1, h * w, self._stream)
        else:
            raise ValueError(f"sum_products: axis 1 or (2, 3); got {axis}")
        return out

    def _crop_window(self, planes, h, w, height, width, top, left, flip):
        if not (0 <= top and top + height <= h and 0 <= left and left + width <= w):
            raise ValueError(f"crop: a {width}x{height} window at ({left}, {top}) is not inside {w}x{h}")
        return planes, h, w, height, width, top, left, bool(flip)

    def crop(self, x, top, left, height, width, flip, scale, shift):
        """[crop]: (batch, c, height, width) = x[:, :, top + i, column(j)] * scale + shift, column(j) = left + j,
        or with flip w - 1 - left - j."""
        x = self._contiguous(x, 4, "crop x")
        b, c, h, w = x.shape
        out = self.empty((b, c, height, width))
        self.k.crop(self._ptr(x), self._ptr(out), *self._crop_window(b * c, h, w, height, width, top, left, flip),
                    scale, shift, self._stream)
        return out

    def crop_backward(self, dy, top, left, flip, scale, h, w):
        """d(loss)/dx (batch, c, h, w) of crop for dy (batch, c, height, width): scale * dy where crop read, else 0."""
        dy = self._contiguous(dy, 4, "crop dy")
        b, c, height, width = dy.shape
        dx = self.empty((b, c, h, w))
        self.k.crop_backward(self._ptr(dy), self._ptr(dx),
                             *self._crop_window(b * c, h, w, height, width, top, left, flip), scale, self._stream)
        return dx


    # -- heads, losses, dropout, softmax, optimizer -------------------------------------------------------------------
    # The contracts are NumpyOps' (backend.py). The yolo/region/detection losses stay on the host, as in darknet's
    # GPU build (yolo_loss.py, region_loss.py): the heads' activations and the elementwise losses are kernels.
    def _view_ptr(self, a, what):
        """The address of a float32 device array or view (kernels that take strides check the layout themselves)."""
        if a.dtype != FLOAT:
            raise ValueError(f"{what}: the CUDA kernels take float32 arrays; got {a.dtype}")
        return self.device.pointer(a)

    @staticmethod
    def _row_layout(a, what):
        """(images, rows, length, image_stride, row_stride) of a's rows along its last axis, strides in values:
        the last axis must be contiguous and the others must merge into at most two strided axes."""
        if a.ndim == 0 or a.strides[-1] != a.itemsize and a.shape[-1] > 1:
            raise ValueError(f"{what}: the softmax kernels need a contiguous last axis; got strides {a.strides}")
        axes = []                    # (size, stride) of the leading axes, outermost first, merged where contiguous
        for size, stride in zip(a.shape[:-1], a.strides[:-1]):
            if size == 1:
                continue
            if axes and axes[-1][1] == size * stride:
                axes[-1] = (axes[-1][0] * size, stride)
            else:
                axes.append((size, stride))
        if len(axes) > 2:
            raise ValueError(f"{what}: shape {a.shape} with strides {a.strides} has more than two row axes")
        axes = [(1, 0)] * (2 - len(axes)) + axes
        (images, image_stride), (rows, row_stride) = axes
        return images, rows, a.shape[-1], image_stride // a.itemsize, row_stride // a.itemsize

    @staticmethod
    def _same_layout(a, b, what):
        if a.shape != b.shape or a.strides != b.strides:
            raise ValueError(f"{what}: shapes {a.shape} / {b.shape} with strides {a.strides} / {b.strides} differ")

    def softmax(self, x, temperature=1.0, out=None):
        """Darknet's softmax along the last axis of x: exp(x/t - max/t) / (sum of those), t = temperature. Written
        into `out` (x's shape and strides; may be x) or a new array; returns it. The last axis must be contiguous
        and the others merge into at most two strided axes (any C-contiguous array, or a slice of its last axis)."""
        if out is None:
            x = self.xp.ascontiguousarray(x)
            out = self.xp.empty_like(x)
        self._same_layout(x, out, "softmax x and out")
        self.k.softmax_rows(self._view_ptr(x, "softmax x"), self._view_ptr(out, "softmax out"),
                            *self._row_layout(x, "softmax"), temperature, self._stream)
        return out

    def softmax_backward(self, y, dy, temperature=1.0, out=None):
        """d loss / d x = y * (dy - sum(dy * y)) / t along the last axis, for y = softmax(x, t) and dy = d loss / d y.
        Written into `out` (may be dy) or a new array; y, dy and out of one layout (see softmax)."""
        if out is None:
            y, dy = self.xp.ascontiguousarray(y), self.xp.ascontiguousarray(dy)
            out = self.xp.empty_like(dy)
        self._same_layout(y, dy, "softmax_backward y and dy")
        self._same_layout(dy, out, "softmax_backward dy and out")
        self.k.softmax_rows_backward(self._view_ptr(y, "softmax_backward y"), self._view_ptr(dy, "softmax_backward dy"),
                                     self._view_ptr(out, "softmax_backward out"),
                                     *self._row_layout(y, "softmax_backward"), temperature, self._stream)
        return out

    def _loss_arrays(self, x, truth, what):
        x, truth = self.xp.ascontiguousarray(x), self.xp.ascontiguousarray(truth)
        if x.shape != truth.shape:
            raise ValueError(f"{what}: output {x.shape} and truth {truth.shape} differ")
        return x, truth, self.xp.empty_like(x), self.xp.empty_like(x)

    def softmax_cross_entropy(self, y, truth):
        """(cost, grad) of a softmax output y against truth (same shape): cost = sum of -log(y) where truth != 0
        (a Python float), grad = y - truth (d cost / d softmax input for one-hot truth)."""
        y, truth, grad, loss = self._loss_arrays(y, truth, "softmax_cross_entropy")
        self.k.softmax_cross_entropy(self._ptr(y), self._ptr(truth), self._ptr(grad), self._ptr(loss), y.size,
                                     self._stream)
        return float(loss.sum()), grad

    def cost_loss(self, x, truth, cost_type, scale):
        """(cost, grad) of the [cost] layer (layers/cost.py) for x against truth (same shape): diff = truth - x
        ("masked": 0 where truth is -1234); sse: cost = sum diff^2, grad = scale * -diff; "smooth": where |diff| >= 1
        the cost is 2|diff| - 1 and grad scale * -sign(diff). cost is a Python float."""
        x, truth, grad, error = self._loss_arrays(x, truth, "cost_loss")
        self.k.cost_loss(self._ptr(x), self._ptr(truth), self._ptr(grad), self._ptr(error), x.size, cost_type,
                         scale, self._stream)
        return float(error.sum()), grad

    def dropout(self, x, probability, seed):
        """x * scale where dropout_uniform(seed) >= probability, else 0 (scale = 1/(1 - probability), 0 for
        probability 1), as a new array: the mask of `seed` is the same on every engine (backend.dropout_uniform),
        so backward passes its gradient through the same call."""
        x = self.xp.ascontiguousarray(x)
        out = self.xp.empty_like(x)
        p = float(np.float32(probability))
        scale = 1.0 / (1.0 - p) if p < 1 else 0.0
        self.k.dropout(self._ptr(x), self._ptr(out), x.size, p, scale, int(seed) % 2 ** 64, self._stream)
        return out

    @staticmethod
    def _value_set(planes, values):
        """(bits, from) of the values the slices or indexes `planes` select: value v is selected when v >= from or
        bit v of bits is set (csrc/cuda/heads.h ValueSet)."""
        chosen = np.zeros(values, bool)
        for sl in planes:
            chosen[sl] = True
        start = values
        while start > 0 and chosen[start - 1]:
            start -= 1
        below = np.flatnonzero(chosen[:start])
        if below.size and below[-1] >= 32:
            raise ValueError(f"head values {below.tolist()}: the kernel selects single values below 32 only")
        return int(sum(1 << int(v) for v in below)), start

    def _head_layout(self, x, logistic, scaled):
        batch, anchors, values = x.shape[:3]
        return (x.size, values, x.size // max(1, batch * anchors * values), *self._value_set(logistic, values),
                *self._value_set(scaled, values))

    def head_activation(self, x, logistic, scaled, alpha, beta):
        """A [yolo]-style head's activations: a copy of x (batch, anchors, values, h, w) with the logistic on the
        values `logistic` selects, then v*alpha + beta on those `scaled` selects (each a list of slices or indexes
        of the values axis)."""
        x = self.xp.ascontiguousarray(x)
        out = self.xp.empty_like(x)
        self.k.head_activate(self._ptr(x), self._ptr(out), *self._head_layout(x, logistic, scaled), alpha, beta,
                             self._stream)
        return out

    def head_activation_backward(self, x, dy, logistic, scaled, alpha):
        """d loss / d x of head_activation for dy = d loss / d output (a new array)."""
        x, dy = self.xp.ascontiguousarray(x), self.xp.ascontiguousarray(dy)
        if x.shape != dy.shape:
            raise ValueError(f"head_activation_backward: x {x.shape} and dy {dy.shape} differ")
        dx = self.xp.empty_like(dy)
        self.k.head_activate_backward(self._ptr(x), self._ptr(dy), self._ptr(dx),
                                      *self._head_layout(x, logistic, scaled), alpha, self._stream)
        return dx

    def _region_rows(self, x, anchors):
        """x (batch, anchors*values, h, w) -> (batch, h*w, anchors, values), darknet's flatten(), as a new array."""
        batch, channels = x.shape[:2]
        rows = x.reshape(batch, channels, -1).transpose(0, 2, 1)
        return self.xp.ascontiguousarray(rows).reshape(batch, -1, anchors, channels // anchors)

    def _region_layout(self, t):
        return (t.size, t.shape[-1], 1, *self._value_set([4], t.shape[-1]), 0, t.shape[-1])

    def region_activation(self, x, anchors, softmax):
        """A [region] head's output for x (batch, anchors*values, h, w): darknet's transposed layout (batch, h*w,
        anchors, values), a new array, with the logistic on value 4 (objectness) and, with softmax, a softmax over
        values 5.. (the classes)."""
        out = self._region_rows(x, anchors)
        self.k.head_activate(self._ptr(out), self._ptr(out), *self._region_layout(out), 1.0, 0.0, self._stream)
        if softmax:
            self.softmax(out[..., 5:], out=out[..., 5:])
        return out

    def region_activation_backward(self, x, y, dy, anchors, softmax):
        """d loss / d x (x's shape, a new array) of region_activation for its output y and dy = d loss / d y (both
        (batch, h*w, anchors, values))."""
        t = self._region_rows(x, anchors)
        dy = self.xp.ascontiguousarray(dy)
        if t.shape != dy.shape or y.shape != dy.shape:
            raise ValueError(f"region_activation_backward: x as rows {t.shape}, y {y.shape} and dy {dy.shape} differ")
        dt = self.xp.empty_like(dy)
        self.k.head_activate_backward(self._ptr(t), self._ptr(dy), self._ptr(dt), *self._region_layout(t), 1.0,
                                      self._stream)
        if softmax:
            self.softmax_backward(self.xp.ascontiguousarray(y)[..., 5:], dy[..., 5:], out=dt[..., 5:])
        batch, channels = x.shape[:2]
        return self.xp.ascontiguousarray(dt.reshape(batch, -1, channels).transpose(0, 2, 1)).reshape(x.shape)

    def _optimizer_ptrs(self, w, grad, *state):
        """The addresses of w, grad and the optimizer state arrays, checked to be of one shape."""
        for name, a in (("grad", grad),) + tuple(("optimizer state", s) for s in state):
            if a.shape != w.shape:
                raise ValueError(f"optimizer: weights {w.shape} and {name} {a.shape} differ")
        return [self._ptr(a, "optimizer arrays") for a in (w, grad) + state]

    def sgd_update(self, w, grad, velocity, rate, momentum, decay, clip):
        """Darknet's SGD step on w, in place (training.py): s = velocity + grad (+ decay * w where decay != 0);
        w -= rate * s; velocity = momentum * s (in place); then w = min(clip, max(-clip, w)) where clip != 0. rate
        and decay come already divided / multiplied by the images per iteration. One fused kernel."""
        self.k.sgd_update(*self._optimizer_ptrs(w, grad, velocity), w.size, rate, momentum, decay, clip, self._stream)

    def adam_update(self, w, grad, m, v, rate, beta1, beta2, eps, t, decay, clip):
        """Darknet's Adam step on w, m and v in place (training.py): g = grad + decay * w; m = beta1*m + (1-beta1)*g;
        v = beta2*v + (1-beta2)*g^2; w -= rate * m/(1 - beta1^t) / (sqrt(v/(1 - beta2^t)) + eps); then the clip
        of sgd_update. One fused kernel; the constants are rounded to float32 from double, as NumPy rounds them."""
        self.k.adam_update(*self._optimizer_ptrs(w, grad, m, v), w.size, beta1, beta2, 1 - beta1, 1 - beta2,
                           1 - beta1 ** t, 1 - beta2 ** t, rate, eps, decay, clip, self._stream)
