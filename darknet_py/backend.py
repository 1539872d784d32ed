"""The ops interface: the only place that knows whether arrays live on the CPU (NumPy) or a GPU (CuPy).
Layers call `net.ops.<name>(...)` and use `net.ops.xp` for simple array math; they never branch on the
device. Gradients follow the usual convention, d(loss)/d(array) (darknet stores the negative).

Convolution as darknet computes it (src/convolutional_layer.c forward_convolutional_layer, src/im2col.c
im2col_cpu_ext), for x (batch, c, h, w) and weights (filters, c/groups, size, size):
- output size: out_h = (h + 2*pad - size)/stride_y + 1, out_w = (w + 2*pad - size)/stride_x + 1, integer
  division, whatever the dilation;
- output[f, oy, ox] = sum over c, ky, kx of w[f, c, ky, kx] * x[c, oy*stride_y - pad*dilation + ky*dilation,
  ox*stride_x - pad*dilation + kx*dilation], zero outside the image (darknet hands im2col a padding of
  pad*dilation);
- groups: group g reads input channels [g*c/groups, (g+1)*c/groups) and writes filters [g*f/groups, ...).
Darknet's im2col_cpu_ext sizes its own output by the dilated kernel, (h + 2*pad*dilation - (dilation*(size-1)
+ 1))/stride + 1, while the GEMM reads the layer's out_h*out_w columns. Both agree when padding = size/2 with
an odd size (every `pad=1` cfg) or dilation = 1; otherwise darknet's result is ill-defined (the GEMM reads
columns im2col never wrote), and the formula above, the standard dilated convolution at darknet's output size
with darknet's receptive-field offset, is what is computed here.
"""
import functools
import os
import weakref

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from .activations import activate, activate_backward


SECRET_NUM = -1234     # darknet's marker of truth values the masked cost skips
GOLDEN_GAMMA = np.uint64(0x9E3779B97F4A7C15)


def dropout_uniform(seed, n):
    """n uniform float32 numbers in [0, 1) from a 64-bit seed, counter-based so that every engine draws the same
    (csrc/cuda/dropout.cu computes the same): number i is the top 24 bits of splitmix64's output for index i + 1 of
    the stream `seed`, mix(seed + (i + 1) * 0x9E3779B97F4A7C15), times 2^-24."""
    z = np.uint64(seed) + np.arange(1, n + 1, dtype=np.uint64) * GOLDEN_GAMMA    # wraps mod 2^64, as in C
    z = (z ^ (z >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
    z = (z ^ (z >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
    z ^= z >> np.uint64(31)
    return (z >> np.uint64(40)).astype(np.float32) * np.float32(2.0 ** -24)


def conv_output_size(h, w, size, stride_x, stride_y, pad):
    """Darknet's convolutional_out_height/width: (h + 2*pad - size)/stride + 1, dilation ignored."""
    return (h + 2 * pad - size) // stride_y + 1, (w + 2 * pad - size) // stride_x + 1


class _Geometry:
    """Where the windows of one convolution read the input, as a zero-padded (and possibly cropped) copy of
    extent (ext_h, ext_w) whose element (0, 0) is input element (-pad*dilation, -pad*dilation)."""

    def __init__(self, c, h, w, size, stride_x, stride_y, pad, dilation):
        self.c, self.h, self.w, self.k = c, h, w, size
        self.sx, self.sy, self.d = stride_x, stride_y, dilation
        self.out_h, self.out_w = conv_output_size(h, w, size, stride_x, stride_y, pad)
        if self.out_h < 1 or self.out_w < 1:
            raise ValueError(f"conv2d: a {size}x{size} kernel does not fit a {h}x{w} input with pad {pad}")
        self.off = pad * dilation
        self.ext_h = (self.out_h - 1) * stride_y + (size - 1) * dilation + 1
        self.ext_w = (self.out_w - 1) * stride_x + (size - 1) * dilation + 1
        # input rows/columns that land inside the extent
        self.in_h = max(0, min(h, self.ext_h - self.off))
        self.in_w = max(0, min(w, self.ext_w - self.off))
        self.plain = self.off == 0 and self.ext_h == h and self.ext_w == w

    def pad(self, xp, img):
        """img (..., c, h, w) -> (..., c, ext_h, ext_w): zeros around, rows past the extent dropped."""
        if self.plain:
            return img
        out = xp.zeros(img.shape[:-2] + (self.ext_h, self.ext_w), dtype=img.dtype)
        o = self.off
        out[..., o:o + self.in_h, o:o + self.in_w] = img[..., :self.in_h, :self.in_w]
        return out

    def unpad(self, xp, padded):
        """The adjoint of pad: the gradient of the padded copy back onto the input."""
        if self.plain:
            return padded
        out = xp.zeros(padded.shape[:-2] + (self.h, self.w), dtype=padded.dtype)
        o = self.off
        out[..., :self.in_h, :self.in_w] = padded[..., o:o + self.in_h, o:o + self.in_w]
        return out

    def tap(self, ky, kx):
        """The slice of the padded image that kernel tap (ky, kx) reads for every output position."""
        y0, x0 = ky * self.d, kx * self.d
        return (Ellipsis, slice(y0, y0 + (self.out_h - 1) * self.sy + 1, self.sy),
                slice(x0, x0 + (self.out_w - 1) * self.sx + 1, self.sx))

    @property
    def ext_matches_C(self):
        """Whether darknet_py._C's symmetric-padding geometry (im2col_gemm) gives exactly this output size."""
        eff = (self.k - 1) * self.d + 1
        return ((self.h + 2 * self.off - eff) // self.sy + 1 == self.out_h and
                (self.w + 2 * self.off - eff) // self.sx + 1 == self.out_w and
                self.h + 2 * self.off - eff >= 0 and self.w + 2 * self.off - eff >= 0)


class _Gemm:
    """np.matmul for the NumPy paths (training, float64, grouped convolutions), with BLAS single-threaded while
    the C++ kernels find the cores busy with other processes (_C.contended(), csrc/parallel.h): measured on the
    shared 2-core machine, OpenBLAS's 2-thread GEMM ran 4-7x slower than 1 thread whenever other processes kept
    the cores busy (its threads busy-wait for each other). Inference convolutions run on the C++ GEMM
    (csrc/gemm.h) instead. Without threadpoolctl, plain np.matmul."""

    def __init__(self):
        self.blas = None
        try:
            from threadpoolctl import ThreadpoolController
            # numpy's own BLAS (scipy may bring a second one, which numpy does not call)
            controllers = ThreadpoolController().select(user_api="blas").lib_controllers
            self.blas = next((c for c in controllers if "numpy" in c.filepath), controllers[0] if controllers else None)
        except ImportError:
            pass

    def __call__(self, a, b, out):
        if self.blas is None or not _kernels().contended():
            return np.matmul(a, b, out=out)
        threads = self.blas.get_num_threads()
        self.blas.set_num_threads(1)
        try:
            return np.matmul(a, b, out=out)
        finally:
            self.blas.set_num_threads(threads)


_gemm = None


def matmul(a, b, out):
    """out[...] = a @ b (np.matmul), BLAS single-threaded while the machine is contended (_Gemm)."""
    global _gemm
    if _gemm is None:
        _gemm = _Gemm()
    return _gemm(a, b, out)


def _round_up(n, multiple):
    return -(-n // multiple) * multiple


WINOGRAD_TILE = {"winograd4": 4, "winograd2": 2}
WINOGRAD_ENV = "DARKNET_PY_WINOGRAD"
WINOGRAD_MODES = ("cached", "uncached", "off")


def winograd_mode():
    """DARKNET_PY_WINOGRAD: "cached" (default: transformed weights kept, (P + 9)/9 times the 3x3 weights held,
    P = 36 or 16), "uncached" (transformed again at every forward: no memory held, slower) or "off" (im2col)."""
    from .errors import DarknetError
    mode = os.environ.get(WINOGRAD_ENV, "cached").strip().lower() or "cached"
    if mode not in WINOGRAD_MODES:
        raise DarknetError(f"{WINOGRAD_ENV}: expected one of {', '.join(WINOGRAD_MODES)}; got '{mode}'")
    return mode


@functools.lru_cache(maxsize=None)
def _fused_activations(ext):
    return frozenset(ext.fused_activations())


def _float32(a):
    """A C-contiguous float32 array for the C++ kernels (None stays None), whatever the ops dtype."""
    return None if a is None else np.ascontiguousarray(a, np.float32)


_C = None


def _array_owner(a):
    """The NumPy array whose memory `a` views (a itself if it is not a view of one)."""
    while isinstance(a.base, np.ndarray):
        a = a.base
    return a


def _kernels():
    """darknet_py._C, imported on first use: without it `import darknet_py` still works, and the first kernel
    call raises DarknetBuildError, which the CLI prints as one line. Kept once imported (an import statement costs
    about a microsecond per call, several times per layer)."""
    global _C
    if _C is None:
        from ._ext import _C as kernels
        _C = kernels
    return _C


BN_EPSILON = .00001   # darknet's: x_hat = (x - mean) / sqrt(variance + .00001)
BN_MOMENTUM = .01     # rolling statistics: rolling = .99 * rolling + .01 * batch statistic


def inference_batchnorm_affine(scales, biases, rolling_mean, rolling_variance, xp):
    """Inference batch normalization then scales and biases as one per-channel map z * scale + shift (darknet's
    fuse_conv_batchnorm): (scale, shift) = (scales / sqrt(rolling_variance + .00001), biases - rolling_mean *
    scale), in the arrays' own dtype and array module xp."""
    scale = scales / xp.sqrt(rolling_variance + BN_EPSILON)
    return scale, biases - rolling_mean * scale


def _channel_axes(x):
    """For x (batch, channels, ...): the axes a per-channel statistic reduces, the shape that broadcasts a
    (channels,) array against x, and the values per channel."""
    return (0,) + tuple(range(2, x.ndim)), (1, -1) + (1,) * (x.ndim - 2), x.size // max(1, x.shape[1])


def check_statistics_count(count):
    if count < 2:
        raise ValueError(f"batch normalization in training needs at least 2 values per channel; got {count}")


class NumpyOps:
    """CPU backend. Float32 inference runs on the C++ kernels of darknet_py._C where they cover the case
    (ungrouped and depthwise convolutions with an elementwise activation: own GEMM, Winograd, depthwise kernel;
    max pooling, route concatenation, activations); training, float64, grouped convolutions and the other
    layers' work run on NumPy with BLAS GEMMs."""

    name = "cpu"
    xp = np
    weights_on_device = False   # layer.weights stay the NumPy arrays they are
    # the layer table's memory lines (table.py)
    weight_cache_label = "Winograd weights cache"
    scratch_label = "im2col/Winograd buffers, temporaries"
    memory_note = None

    @staticmethod
    def reserved_memory():
        """[(what, bytes)] the engine holds whatever the network: none on the CPU."""
        return []

    def __init__(self, dtype=np.float32):
        self.dtype = np.dtype(dtype)   # float64 only for finite-difference gradient checks
        self.winograd = winograd_mode()
        self._winograd_cache = {}
        self._conv_plans = {}   # conv2d_affine_activation's dispatch per shapes and settings

    def asarray(self, x):
        return np.ascontiguousarray(x, dtype=self.dtype)

    def available_memory(self):
        """Bytes of host RAM a new allocation can use (memory.py; None if unknown)."""
        from .memory import host_available_bytes
        return host_available_bytes()

    def to_numpy(self, x):
        return x

    def synchronize(self):
        """Wait for queued work (none: NumPy runs synchronously)."""

    def track_peak(self):
        """Nothing to start: the kernel keeps the process's peak resident memory (memory_stats)."""

    @staticmethod
    def memory_stats():
        """{"peak_bytes": the process's peak resident memory so far} (resource.getrusage; None where unknown)."""
        try:
            import resource
            return {"peak_bytes": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024}
        except (ImportError, OSError):
            return {"peak_bytes": None}

    # -- convolution ----------------------------------------------------------------------------------
    def im2col(self, img, g, out=None):
        """img (c, h, w) -> columns (c*size*size, out_h*out_w), darknet's row order (channel, ky, kx)."""
        c, k = img.shape[0], g.k
        padded = g.pad(np, img)
        if out is None or out.size != c * k * k * g.out_h * g.out_w:
            out = np.empty((c * k * k, g.out_h * g.out_w), dtype=img.dtype)
        else:
            out = out.reshape(c * k * k, g.out_h * g.out_w)
        windows = sliding_window_view(padded, (g.ext_h - (g.out_h - 1) * g.sy, g.ext_w - (g.out_w - 1) * g.sx),
                                      axis=(1, 2))
        windows = windows[:, ::g.sy, ::g.sx, ::g.d, ::g.d]          # (c, out_h, out_w, k, k)
        np.copyto(out.reshape(c, k, k, g.out_h, g.out_w), windows.transpose(0, 3, 4, 1, 2))
        return out

    def col2im(self, cols, c, g):
        """The adjoint of im2col: columns (c*size*size, out_h*out_w) summed back onto an image (c, h, w)."""
        k = g.k
        padded = np.zeros((c, g.ext_h, g.ext_w), dtype=cols.dtype)
        view = cols.reshape(c, k, k, g.out_h, g.out_w)
        for ky in range(k):
            for kx in range(k):
                padded[g.tap(ky, kx)] += view[:, ky, kx]
        return g.unpad(np, padded)

    def conv2d(self, x, w, stride_x=1, stride_y=1, pad=0, dilation=1, groups=1):
        """Darknet's convolution (see the module docstring) of x (batch, c, h, w) with w (filters, c/groups,
        size, size), without bias: (batch, filters, out_h, out_w)."""
        batch, c, h, width = x.shape
        filters, cg, k, _ = w.shape
        g = _Geometry(c, h, width, k, stride_x, stride_y, pad, dilation)
        fg = filters // groups
        out = np.empty((batch, filters, g.out_h, g.out_w), dtype=x.dtype)
        path = self.conv_path(c, filters, k, stride_x, stride_y, pad, dilation, groups, g.out_h, g.out_w, None, True)
        if path == "pointwise":
            # pointwise: a plain matmul over (subsampled) pixels, no im2col
            xs = x if stride_x == stride_y == 1 else x[:, :, ::stride_y, ::stride_x]
            xs = xs.reshape(batch, groups, cg, g.out_h * g.out_w)
            out4 = out.reshape(batch, groups, fg, g.out_h * g.out_w)      # a view: out is contiguous
            for j in range(groups):
                matmul(w[j * fg:(j + 1) * fg, :, 0, 0], xs[:, j], out4[:, j])
            return out
        if path == "depthwise-taps":
            # depthwise: sum over kernel taps of shifted slices times per-channel weights
            padded = g.pad(np, x)
            out.fill(0)
            term = np.empty_like(out)
            for ky in range(k):
                for kx in range(k):
                    np.multiply(padded[g.tap(ky, kx)], w[:, 0, ky, kx][:, None, None], out=term)
                    out += term
            return out
        wmat = w.reshape(filters, cg * k * k)
        work = None
        for b in range(batch):
            for j in range(groups):
                work = self.im2col(x[b, j * cg:(j + 1) * cg], g, work)
                matmul(wmat[j * fg:(j + 1) * fg], work, out[b, j * fg:(j + 1) * fg].reshape(fg, -1))
        return out

    def _fused(self, dtype, activation):
        """darknet_py._C when it computes `activation` on `dtype` arrays, else None."""
        if dtype != np.float32:
            return None
        ext = _kernels()
        return ext if activation in _fused_activations(ext) else None

    def affine_activation(self, z, scale, shift, activation):
        """activation(z * scale[c] + shift[c]) per channel c (axis 1); scale None means 1. Overwrites z, which
        must not be needed afterwards; returns the result (z itself, or a new array)."""
        ext = self._fused(z.dtype, activation)
        if ext is not None and z.flags.c_contiguous:
            ext.affine_activate(z, _float32(scale), _float32(shift), activation)
            return z
        per_channel = (1, -1) + (1,) * (z.ndim - 2)
        if scale is not None:
            z *= scale.reshape(per_channel)
        z += shift.reshape(per_channel)
        return activate(z, activation, np)

    def concat(self, pieces):
        """np.concatenate(pieces, axis=1) of (batch, n_i) arrays; float32 pieces with contiguous rows are copied on
        the kernels' threads."""
        if all(p.dtype == np.float32 and (p.size == 0 or p.shape[1] <= 1 or p.strides[1] == 4) for p in pieces):
            return _kernels().concat(pieces)
        return np.concatenate(pieces, axis=1)

    def activate(self, x, activation):
        """activation(x) as a new array (x itself for linear); the normalize_channels family works across axis 1."""
        return activate(x, activation, np)

    def activate_backward(self, x, dy, activation):
        """d(loss)/dx from the pre-activation x and dy = d(loss)/d(activation(x)): a new array (dy for linear)."""
        return activate_backward(x, dy, activation, np)

    def activate_(self, z, activation):
        """z = activation(z) in place: the C++ kernel for a C-contiguous float32 z, NumPy otherwise."""
        ext = self._fused(z.dtype, activation)
        if ext is not None and z.flags.c_contiguous:
            ext.affine_activate(z.reshape(1, 1, -1), None, np.zeros(1, np.float32), activation)
        else:
            z[...] = activate(z, activation, np)

    def conv2d_affine_activation(self, x, w, scale, shift, activation, stride_x=1, stride_y=1, pad=0, dilation=1,
                                 groups=1):
        """Inference: activation(conv2d(x, w) * scale[f] + shift[f]) per filter f, without keeping the
        pre-activation (scale None means 1: a plain bias)."""
        # the dispatch depends only on shapes and settings: worked out once per key (~2 us a convolution)
        key = (x.shape, x.dtype, w.shape, activation, stride_x, stride_y, pad, dilation, groups, self.winograd,
               self.WINOGRAD_TILES, self.WINOGRAD_MIN_CHANNELS)
        plan = self._conv_plans.get(key)
        if plan is None:
            plan = self._conv_plans[key] = self._conv_plan(x, w, activation, stride_x, stride_y, pad, dilation, groups)
        path, out_h, out_w, g = plan
        if path == "depthwise":
            return _kernels().depthwise_conv2d(_float32(x), _float32(w), stride_y, stride_x, pad * dilation,
                                               dilation, out_h, out_w, _float32(scale), _float32(shift), activation)
        if path.startswith("winograd"):
            return self._winograd_conv(x, w, scale, shift, activation, pad, WINOGRAD_TILE[path])
        if g is not None:
            return self._gemm_conv(x, w, scale, shift, activation, g, path, groups)
        z = self.conv2d(x, w, stride_x, stride_y, pad, dilation, groups)
        return self.affine_activation(z, scale, shift, activation)

    def _conv_plan(self, x, w, activation, stride_x, stride_y, pad, dilation, groups):
        """(path, out_h, out_w, geometry) of conv2d_affine_activation; the geometry only for the C++ GEMM paths."""
        batch, c, h, width = x.shape
        filters, _, size, _ = w.shape
        out_h, out_w = conv_output_size(h, width, size, stride_x, stride_y, pad)
        path = self.conv_path(c, filters, size, stride_x, stride_y, pad, dilation, groups, out_h, out_w, activation,
                              False, x.dtype)
        gemm = path in ("pointwise", "im2col") and self._fused(x.dtype, activation) is not None
        return path, out_h, out_w, _Geometry(c, h, width, size, stride_x, stride_y, pad, dilation) if gemm else None

    def _gemm_conv(self, x, w, scale, shift, activation, g, path, groups):
        """A pointwise or im2col convolution in the C++ GEMM (csrc/gemm.h), every group in one call, epilogue
        fused, on the kernels' threads (no BLAS threads competing with them); im2col columns are built a slice at
        a time."""
        ext = _kernels()
        batch, filters = x.shape[0], w.shape[0]
        w, scale, shift = _float32(w), _float32(scale), _float32(shift)
        if path == "pointwise":
            xs = x if g.sx == g.sy == 1 else x[:, :, ::g.sy, ::g.sx]
            columns = np.ascontiguousarray(xs, np.float32).reshape(batch, x.shape[1], g.out_h * g.out_w)
            out = ext.gemm(w.reshape(filters, -1), columns, scale, shift, activation, groups)
            return out.reshape(batch, filters, g.out_h, g.out_w)
        if g.ext_matches_C:
            return ext.im2col_gemm(_float32(x), w, g.sy, g.sx, g.off, g.d, scale, shift, activation, groups)
        return ext.im2col_gemm(_float32(g.pad(np, x)), w, g.sy, g.sx, 0, g.d, scale, shift, activation, groups)

    # Winograd (csrc/winograd.cpp) for inference 3x3 stride-1 convolutions: P GEMMs of (filters x channels) @
    # (channels x tiles) replace one of (filters x 9*channels) @ (9*channels x pixels), F(4x4, 3x3) (P = 36, 4x
    # fewer multiplications) or F(2x2, 3x3) (P = 16, 2.25x), whichever costs less by _winograd_cost: the GEMMs run
    # over the tiles rounded up to whole vectors, so on small maps F(2x2) wastes less (7x7: 16 tiles, against 4 4x4
    # tiles padded to 16). Below WINOGRAD_MIN_CHANNELS the transforms cost more than they save. The transformed
    # weights (P/9 times the weights) are cached per layer unless self.winograd says otherwise (winograd_mode:
    # DARKNET_PY_WINOGRAD=cached|uncached|off).
    WINOGRAD_MIN_CHANNELS = 16
    WINOGRAD_TILES = (4, 2)           # the candidates, best first on a tie
    # Reading a transformed weight costs about as much as 32 multiply-adds: they come from memory at every forward
    # (yolov4-tiny's are 4x its 24 MB in F(4x4)). Measured per layer on a 2-core Intel host (2026-12-06), F(2x2)
    # beat F(4x4) on every 26x26 and 13x13 layer of yolov4-tiny (13x13 512->512: 5.6 vs 6.3 ms) and lost on
    # 52x52 and larger; 8 chose F(4x4) for all of them.
    WINOGRAD_WEIGHT_COST = 32

    def conv_path(self, c, filters, size, stride_x, stride_y, pad, dilation, groups, out_h, out_w, activation,
                  train, dtype=np.float32):
        """The algorithm that computes this convolution, the one dispatch of conv2d, conv2d_backward and
        conv2d_affine_activation (and of conv_memory, so that the layer table counts what runs): "pointwise" (a
        matmul, no im2col), "depthwise" (C++ kernel, inference), "depthwise-taps" (NumPy), "winograd4" /
        "winograd2" (inference, F(4x4, 3x3) / F(2x2, 3x3)) or "im2col"."""
        if size == 1 and pad == 0:
            return "pointwise"
        fused = not train and self._fused(np.dtype(dtype), activation) is not None
        if groups == c == filters:
            return "depthwise" if fused and filters > 1 else "depthwise-taps"
        if (fused and self.winograd != "off" and size == 3 and stride_x == stride_y == 1 and dilation == 1 and
                groups == 1 and min(c, filters) >= self.WINOGRAD_MIN_CHANNELS):
            return f"winograd{min(self.WINOGRAD_TILES, key=lambda tile: self._winograd_cost(tile, out_h, out_w))}"
        return "im2col"

    def conv_memory(self, layer, batch, train):
        """(path, cache_bytes, scratch_bytes) of a convolutional layer's forward at `batch` (and its backward
        in training), from its shapes (c, h, w, filters, size, stride_x, stride_y, padding, dilation, groups,
        out_h, out_w, activation): cache_bytes stay allocated from the first inference on (Winograd's
        transformed weights and the copy that checks they are current); scratch_bytes are what the layer needs
        while it runs beyond its output, C++ per-thread buffers included. Scratch is freed after the layer, except
        Winograd's transformed input and products: they live in a workspace that keeps the largest size used until
        clear_caches(), per calling thread: the largest of them stays held while later layers run (the table
        adds the largest scratch of any one layer; its allowance for temporaries covers the overlap)."""
        c, filters, k, groups = layer.c, layer.filters, layer.size, layer.groups
        path = self.conv_path(c, filters, k, layer.stride_x, layer.stride_y, layer.padding, layer.dilation, groups,
                              layer.out_h, layer.out_w, layer.activation, train, self.dtype)
        item = self.dtype.itemsize
        g = _Geometry(c // groups if path == "im2col" else c, layer.h, layer.w, k, layer.stride_x, layer.stride_y,
                      layer.padding, layer.dilation)
        padded = 0 if g.plain else g.c * g.ext_h * g.ext_w * item
        pixels = layer.out_h * layer.out_w
        twice = 2 if train else 1                   # backward: the gradient of each buffer as well
        fused = not train and self._fused(self.dtype, layer.activation) is not None
        if path == "pointwise":
            strided = not layer.stride_x == layer.stride_y == 1
            copy = twice * batch * c * pixels * item if strided else 0
            # _gemm_conv: each thread's panel of the columns and tile of the output
            return path, 0, copy + (_kernels().num_threads() * _kernels().gemm_thread_bytes(c // groups, pixels)
                                    if fused else 0)
        if path == "depthwise":
            return path, 0, _kernels().num_threads() * _kernels().depthwise_thread_bytes(
                layer.h, layer.w, k, layer.stride_y, layer.stride_x, layer.padding * layer.dilation, layer.dilation,
                layer.out_h, layer.out_w)
        if path == "depthwise-taps":
            return path, 0, twice * batch * padded + batch * filters * pixels * item
        if path == "im2col":
            if fused:
                # _gemm_conv: a slice of the columns per thread, and a padded copy of the batch where _C's symmetric
                # padding does not give darknet's geometry
                copy = 0 if g.ext_matches_C else batch * padded
                return path, 0, copy + _kernels().num_threads() * _kernels().gemm_thread_bytes(g.c * k * k, pixels)
            return path, 0, twice * (g.c * k * k * pixels * item + padded)
        tile = WINOGRAD_TILE[path]
        points = (tile + 2) ** 2
        tiles_h, tiles_w = -(-layer.out_h // tile), -(-layer.out_w // tile)
        ext = _kernels()
        row = _round_up(batch * tiles_h * tiles_w, ext.WINOGRAD_COLUMN_ALIGN)
        packed_filters = _round_up(filters, ext.PACK_ROWS)
        transforms = points * (c + packed_filters) * row * 4           # the transformed input and the products
        weights, transformed = filters * c * 9 * 4, points * packed_filters * c * 4
        width = tile * tiles_w
        # input_transform: the padded plane and one row of input tiles; output_transform: (tile+2) + tile rows
        per_thread = max((tile * tiles_h + 2) * (width + 2) + points * tiles_w, (2 * tile + 2) * width) * 4
        scratch = transforms + ext.num_threads() * per_thread
        if self.winograd == "uncached":
            return path, 0, scratch + transformed
        return path, transformed + weights, scratch     # the check against the copy allocates nothing

    def _winograd_cost(self, tile, out_h, out_w):
        """Time of one image's Winograd GEMMs per filter and channel, in multiply-adds: P points, each over the
        tiles rounded up to the GEMM's column alignment, plus reading the point's weight."""
        tiles = -(-out_h // tile) * -(-out_w // tile)
        return (tile + 2) ** 2 * (_round_up(tiles, _kernels().WINOGRAD_COLUMN_ALIGN) + self.WINOGRAD_WEIGHT_COST)

    @staticmethod
    def _winograd_transform(w, tile):
        """G w G^T of the 3x3 weights, packed for the GEMM (_C.winograd_weights; C++, in double, on the kernels'
        threads, straight into the result: no temporaries)."""
        return _kernels().winograd_weights(_float32(w), tile)

    def _winograd_weights(self, w, tile):
        """The transformed weights; with self.winograd == "cached", kept per weights array and tile. The cache
        entry keeps a copy of the weights and is used only while they are unchanged (weights are updated in
        place by training and tests), and is dropped with the array."""
        if self.winograd == "uncached":
            return self._winograd_transform(w, tile)
        owner = _array_owner(w)
        key = (id(owner), w.ctypes.data, w.shape, tile)
        cached = self._winograd_cache.get(key)
        if cached is not None and self._unchanged(cached[0], w):
            return cached[1]
        if cached is None:
            weakref.finalize(owner, self._winograd_cache.pop, key, None)
        else:
            del self._winograd_cache[key]      # free the stale transform before building the new one
        transformed = self._winograd_transform(w, tile)
        self._winograd_cache[key] = (None if self._frozen(w) else w.copy(), transformed)
        return transformed

    @staticmethod
    def _frozen(w):
        """Whether the array w views is read-only and owns its memory (Network.freeze_weights): nothing can write
        into it, nor into any view of it, unless its flag is set back first."""
        owner = _array_owner(w)
        return owner.base is None and not owner.flags.writeable

    @classmethod
    def _unchanged(cls, copy, w):
        """Whether w still holds the bytes of copy (a C-contiguous copy of it): a byte comparison on the
        kernels' threads, which allocates nothing; np.array_equal (and its boolean array) only for a
        non-contiguous w. copy None: w was frozen when the cache entry was made, and is unchanged while it
        stays so."""
        if copy is None:
            return cls._frozen(w)
        if not w.flags.c_contiguous:
            return np.array_equal(copy, w)
        return _kernels().same_bytes(copy, w)

    def clear_caches(self):
        """Free the cached Winograd weights and this thread's Winograd workspace (both rebuilt by the next
        inference that needs them)."""
        self._winograd_cache.clear()
        _kernels().release_workspace()

    def _winograd_conv(self, x, w, scale, shift, activation, pad, tile):
        return _kernels().winograd_conv(_float32(x), self._winograd_weights(w, tile), w.shape[0], pad, tile,
                                        _float32(scale), _float32(shift), activation)

    def maxpool2d(self, x, size, stride_x, stride_y, offset, out_h, out_w):
        """Inference max pooling: the maximum over each size x size window of x (batch, c, h, w) whose (0, 0)
        is input element (-offset, -offset), positions outside ignored (-FLT_MAX for an empty window)."""
        if x.dtype == np.float32:
            return _kernels().maxpool2d(np.ascontiguousarray(x), size, stride_y, stride_x, offset, out_h, out_w)
        lowest = np.finfo(np.float32).min
        ext_h, ext_w = (out_h - 1) * stride_y + size, (out_w - 1) * stride_x + size
        padded = np.full(x.shape[:2] + (ext_h, ext_w), lowest, dtype=x.dtype)
        in_h, in_w = max(0, min(x.shape[2], ext_h - offset)), max(0, min(x.shape[3], ext_w - offset))
        padded[:, :, offset:offset + in_h, offset:offset + in_w] = x[:, :, :in_h, :in_w]
        out = np.full(x.shape[:2] + (out_h, out_w), lowest, dtype=x.dtype)
        for ky in range(size):
            for kx in range(size):
                tap = padded[:, :, ky:ky + (out_h - 1) * stride_y + 1:stride_y,
                             kx:kx + (out_w - 1) * stride_x + 1:stride_x]
                np.copyto(out, tap, where=tap > out)   # darknet's strict comparison: NaNs never win
        return out

    def conv2d_backward(self, x, w, dy, stride_x=1, stride_y=1, pad=0, dilation=1, groups=1, need_dx=True):
        """Gradients of conv2d: (dx, dw) for d(loss)/d(output) dy; dx is None when need_dx is false."""
        batch, c, h, width = x.shape
        filters, cg, k, _ = w.shape
        g = _Geometry(c, h, width, k, stride_x, stride_y, pad, dilation)
        fg = filters // groups
        npix = g.out_h * g.out_w
        dy = np.ascontiguousarray(dy, dtype=x.dtype)
        dw = np.zeros(w.shape, dtype=x.dtype)
        dx = None
        path = self.conv_path(c, filters, k, stride_x, stride_y, pad, dilation, groups, g.out_h, g.out_w, None, True)
        if path == "pointwise":
            strided = not stride_x == stride_y == 1
            xs = x[:, :, ::stride_y, ::stride_x] if strided else x
            xs = np.ascontiguousarray(xs).reshape(batch, groups, cg, npix)
            d = dy.reshape(batch, groups, fg, npix)
            dxs = np.empty((batch, groups, cg, npix), dtype=x.dtype) if need_dx else None
            for j in range(groups):
                wj = w[j * fg:(j + 1) * fg, :, 0, 0]                        # (fg, cg)
                # sum over images of dy_b @ x_b^T, as one GEMM over (images x pixels)
                dw[j * fg:(j + 1) * fg, :, 0, 0] = np.tensordot(d[:, j], xs[:, j], axes=([0, 2], [0, 2]))
                if need_dx:
                    np.matmul(wj.T, d[:, j], out=dxs[:, j])
            if need_dx:
                dxs = dxs.reshape(batch, c, g.out_h, g.out_w)
                if strided:
                    dx = np.zeros_like(x)
                    dx[:, :, ::stride_y, ::stride_x] = dxs
                else:
                    dx = dxs
            return dx, dw
        if path == "depthwise-taps":
            padded = g.pad(np, x)
            dpadded = np.zeros_like(padded) if need_dx else None
            term = np.empty_like(dy) if need_dx else None
            for ky in range(k):
                for kx in range(k):
                    tap = g.tap(ky, kx)
                    dw[:, 0, ky, kx] = np.einsum("bchw,bchw->c", dy, padded[tap])
                    if need_dx:
                        np.multiply(dy, w[:, 0, ky, kx][:, None, None], out=term)
                        dpadded[tap] += term
            if need_dx:
                dx = g.unpad(np, dpadded)
            return dx, dw
        wmat = w.reshape(filters, cg * k * k)
        dwmat = dw.reshape(filters, cg * k * k)
        if need_dx:
            dx = np.empty_like(x)
        work = None
        for b in range(batch):
            for j in range(groups):
                work = self.im2col(x[b, j * cg:(j + 1) * cg], g, work)
                dyj = dy[b, j * fg:(j + 1) * fg].reshape(fg, npix)
                dwmat[j * fg:(j + 1) * fg] += dyj @ work.T
                if need_dx:
                    dx[b, j * cg:(j + 1) * cg] = self.col2im(wmat[j * fg:(j + 1) * fg].T @ dyj, cg, g)
        return dx, dw

    def linear(self, x, w):
        """x @ w.T for x (batch, inputs) and w (outputs, inputs): [connected]'s product, a new (batch, outputs)
        array. float32 on the kernels' threads (a batch of fewer than 8 as dot products): BLAS's threads would keep
        spinning after the call, on the cores the next layers' kernels use."""
        if x.dtype == w.dtype == np.float32:
            return np.ascontiguousarray(_kernels().gemm(np.ascontiguousarray(w), np.ascontiguousarray(x.T)).T)
        return x @ w.T

    def linear_backward(self, x, w, dz, need_dx=True):
        """Gradients of linear: (dx, dw) = (dz @ w, dz.T @ x) for dz = d(loss)/d(x @ w.T); dx is None when need_dx
        is false."""
        return (dz @ w if need_dx else None), dz.T @ x

    # -- batch normalization (the NumPy reference of CudaOps' kernels) ---------------------------------------------
    def batchnorm_affine(self, scales, biases, rolling_mean, rolling_variance):
        """Inference batch normalization then scales and biases as one per-channel map z * scale + shift
        (darknet's fuse_conv_batchnorm): (scale, shift) = (scales / sqrt(rolling_variance + .00001), biases -
        rolling_mean * scale); float32 in one C++ call (the NumPy expression costs ~13 us a layer)."""
        if scales.dtype == biases.dtype == rolling_mean.dtype == rolling_variance.dtype == np.float32:
            contiguous = np.ascontiguousarray
            return _kernels().fold_batchnorm(contiguous(scales), contiguous(biases), contiguous(rolling_mean),
                                             contiguous(rolling_variance))
        return inference_batchnorm_affine(scales, biases, rolling_mean, rolling_variance, np)

    def batchnorm_forward(self, x, scales, biases, rolling_mean, rolling_variance, train, activation="linear"):
        """Darknet's batch normalization of x (batch, channels, ...) per channel (axis 1), then scales, biases and
        the activation (layers/batchnorm.py has the formulas): (output, cache for batchnorm_backward).
        scales, biases: `channels` values. rolling_mean, rolling_variance: the layer's arrays of `channels` values
        (any shape). train: normalizes with the statistics of x over the batch and spatial axes (M >= 2 values per
        channel, variance divided by M - 1) and updates the rolling arrays in place, rolling = (1 - BN_MOMENTUM) *
        rolling + BN_MOMENTUM * statistic; else normalizes with the rolling statistics."""
        axes, per_channel, count = _channel_axes(x)
        if train:
            check_statistics_count(count)
            mean = np.mean(x, axis=axes)
            centered = x - mean.reshape(per_channel)
            variance = np.sum(centered * centered, axis=axes) / (count - 1)
            for rolling, statistic in ((rolling_mean, mean), (rolling_variance, variance)):
                new = (1 - BN_MOMENTUM) * self.asarray(rolling).reshape(statistic.shape) + BN_MOMENTUM * statistic
                rolling.reshape(statistic.shape)[...] = new
        else:
            variance = self.asarray(rolling_variance).reshape(-1)
            centered = x - self.asarray(rolling_mean).reshape(per_channel)
        inv_std = 1 / np.sqrt(variance + BN_EPSILON)
        xhat = centered * inv_std.reshape(per_channel)
        z = xhat * scales.reshape(per_channel) + biases.reshape(per_channel)
        return self.activate(z, activation), (train, xhat, inv_std, scales, z, activation)

    def batchnorm_backward(self, delta, cache):
        """Gradients of the batchnorm_forward that made `cache`, for delta = d(loss)/d(its output): (dx, dscales,
        dbiases). In training the gradient flows through the batch mean and the M - 1 variance."""
        train, xhat, inv_std, scales, z, activation = cache
        dz = self.activate_backward(z, delta, activation)
        axes, per_channel, count = _channel_axes(dz)
        dbiases = np.sum(dz, axis=axes)
        dscales = np.sum(dz * xhat, axis=axes)
        dxhat = dz * scales.reshape(per_channel)
        if train:
            mean_term = np.mean(dxhat, axis=axes)
            var_term = np.sum(dxhat * xhat, axis=axes) / (count - 1)
            dx = (dxhat - mean_term.reshape(per_channel) - xhat * var_term.reshape(per_channel)) * \
                inv_std.reshape(per_channel)
        else:
            dx = dxhat * inv_std.reshape(per_channel)
        return dx, dscales, dbiases

    def channel_sum(self, x):
        """The sums of x (batch, channels, ...) over every axis but the channel axis 1: (channels,) (the bias
        gradient of a layer without batch normalization)."""
        return np.sum(x, axis=_channel_axes(x)[0])

    # -- pooling, resampling, routing, shortcut -----------------------------------------------------------------------
    # Windowed pooling ([maxpool], [local_avgpool]): output (i, j) of each (batch, channel) plane covers input rows
    # i*stride_y - offset + n and columns j*stride_x - offset + m, n, m < size (pool_extent). The NumPy code pads to
    # the extent the windows reach and slices one tap (n, m) of every window at a time.
    @staticmethod
    def _pool_pad(x, fill, size, stride_x, stride_y, offset, out_h, out_w):
        h, w = x.shape[2:]
        ext_h, ext_w, in_h, in_w = pool_extent(h, w, size, stride_x, stride_y, offset, out_h, out_w)
        if offset == 0 and (ext_h, ext_w) == (in_h, in_w) == (h, w):
            return x
        padded = np.full(x.shape[:2] + (ext_h, ext_w), fill, dtype=x.dtype)
        padded[:, :, offset:offset + in_h, offset:offset + in_w] = x[:, :, :in_h, :in_w]
        return padded

    @staticmethod
    def _pool_unpad(padded, h, w, size, stride_x, stride_y, offset, out_h, out_w):
        ext_h, ext_w, in_h, in_w = pool_extent(h, w, size, stride_x, stride_y, offset, out_h, out_w)
        if offset == 0 and (ext_h, ext_w) == (in_h, in_w) == (h, w):
            return padded
        dx = np.zeros(padded.shape[:2] + (h, w), dtype=padded.dtype)
        dx[:, :, :in_h, :in_w] = padded[:, :, offset:offset + in_h, offset:offset + in_w]
        return dx

    def maxpool2d_argmax(self, x, size, stride_x, stride_y, offset, out_h, out_w):
        """Training max pooling: (out, argmax). out is maxpool2d's: darknet's first strictly greater value in scan
        order (row n outer, column m inner) from -FLT_MAX, so ties and NaNs keep the earlier value and an empty
        window gives -FLT_MAX. argmax is what maxpool2d_backward needs to send each output's gradient to that one
        input (here the winning taps of two separable passes; CudaOps: the winner's index in its plane)."""
        lowest = x.dtype.type(-FLT_MAX)
        padded = self._pool_pad(x, lowest, size, stride_x, stride_y, offset, out_h, out_w)
        # Separably, with darknet's result: the first maximum in (row n, column m) order is, in the first row
        # whose maximum is the window's, that row's first maximum. Pass 1: each padded row's maximum over the m
        # taps of every output column; pass 2: the maximum of those over the n rows of every output row.
        # Strict `>` from -FLT_MAX in both passes ignores NaNs and values <= -FLT_MAX, as darknet's scan does.
        rows = np.full(padded.shape[:3] + (out_w,), lowest, dtype=x.dtype)
        row_arg = np.full(rows.shape, -1, dtype=np.int32)
        better = np.empty(rows.shape, dtype=bool)
        for m in range(size):
            val = padded[..., m:m + (out_w - 1) * stride_x + 1:stride_x]
            np.greater(val, rows, out=better)
            np.copyto(rows, val, where=better)
            np.copyto(row_arg, m, where=better)
        best = np.full(x.shape[:2] + (out_h, out_w), lowest, dtype=x.dtype)
        arg = np.full(best.shape, -1, dtype=np.int32)
        better = np.empty(best.shape, dtype=bool)
        for n in range(size):
            val = rows[..., n:n + (out_h - 1) * stride_y + 1:stride_y, :]
            np.greater(val, best, out=better)
            np.copyto(best, val, where=better)
            np.copyto(arg, n, where=better)
        return best, (arg, row_arg)

    def maxpool2d_backward(self, dy, argmax, size, stride_x, stride_y, offset, h, w):
        """d(loss)/dx (batch, c, h, w) of maxpool2d_argmax for dy (batch, c, out_h, out_w): each output's
        gradient goes to the input that won its window (summed where windows overlap), none for an empty one."""
        arg, row_arg = argmax
        out_h, out_w = dy.shape[2:]
        zero = dy.dtype.type(0)
        # back through the two passes of forward: to the row maxima, then to the padded input
        drows = np.zeros(row_arg.shape, dtype=dy.dtype)
        for n in range(size):
            drows[..., n:n + (out_h - 1) * stride_y + 1:stride_y, :] += np.where(arg == n, dy, zero)
        ext_w = pool_extent(h, w, size, stride_x, stride_y, offset, out_h, out_w)[1]
        dpadded = np.zeros(drows.shape[:3] + (ext_w,), dtype=dy.dtype)
        for m in range(size):
            dpadded[..., m:m + (out_w - 1) * stride_x + 1:stride_x] += np.where(row_arg == m, drows, zero)
        return self._pool_unpad(dpadded, h, w, size, stride_x, stride_y, offset, out_h, out_w)

    def maxpool_depth(self, x, out_channels):
        """maxpool_depth: (out, argmax) for x (batch, c, h, w); output channel g (< out_channels) is the first
        maximum over input channels g, g + out_channels, g + 2*out_channels, ... at each position (-FLT_MAX where
        nothing beats it); argmax (batch, out_channels, h, w) int32 holds the winning round r (input channel
        g + r*out_channels), -1 for none."""
        lowest = x.dtype.type(-FLT_MAX)
        best = np.full((x.shape[0], out_channels) + x.shape[2:], lowest, dtype=x.dtype)
        arg = np.full(best.shape, -1, dtype=np.int32)
        for r, start, count in depth_chunks(x.shape[1], out_channels):
            val = x[:, start:start + count]
            better = val > best[:, :count]
            best[:, :count] = np.where(better, val, best[:, :count])
            arg[:, :count] = np.where(better, np.int32(r), arg[:, :count])
        return best, arg

    def maxpool_depth_backward(self, dy, argmax, channels):
        """d(loss)/dx (batch, channels, h, w) of maxpool_depth: each output's gradient to its winning channel."""
        dx = np.zeros((dy.shape[0], channels) + dy.shape[2:], dtype=dy.dtype)
        zero = dy.dtype.type(0)
        for r, start, count in depth_chunks(channels, dy.shape[1]):
            dx[:, start:start + count] = np.where(argmax[:, :count] == r, dy[:, :count], zero)
        return dx

    def local_avgpool2d(self, x, size, stride_x, stride_y, offset, out_h, out_w):
        """[local_avgpool]: each window's sum of in-bounds values (added in scan order) divided by their count;
        NaN (darknet's 0/0) for a window with none. x (batch, c, h, w) -> (batch, c, out_h, out_w)."""
        padded = self._pool_pad(x, x.dtype.type(0), size, stride_x, stride_y, offset, out_h, out_w)
        total = np.zeros(x.shape[:2] + (out_h, out_w), dtype=x.dtype)
        for n in range(size):                     # darknet's summation order: row n, then column m
            for m in range(size):
                total += padded[..., n:n + (out_h - 1) * stride_y + 1:stride_y,
                                m:m + (out_w - 1) * stride_x + 1:stride_x]
        count = window_counts(x.shape[2], x.shape[3], size, stride_x, stride_y, offset, out_h, out_w)
        out = total / np.maximum(count, 1).astype(x.dtype)
        empty = count == 0
        if empty.any():
            out[:, :, empty] = np.nan
        return out

    def local_avgpool2d_backward(self, dy, size, stride_x, stride_y, offset, h, w):
        """d(loss)/dx (batch, c, h, w) of local_avgpool2d: each window's dy / count to each of its in-bounds
        inputs, summed where windows overlap."""
        out_h, out_w = dy.shape[2:]
        count = window_counts(h, w, size, stride_x, stride_y, offset, out_h, out_w)
        dy = dy / np.maximum(count, 1).astype(dy.dtype)
        ext_h, ext_w = pool_extent(h, w, size, stride_x, stride_y, offset, out_h, out_w)[:2]
        dpadded = np.zeros(dy.shape[:2] + (ext_h, ext_w), dtype=dy.dtype)
        for n in range(size):
            for m in range(size):
                dpadded[..., n:n + (out_h - 1) * stride_y + 1:stride_y, m:m + (out_w - 1) * stride_x + 1:stride_x] += dy
        return self._pool_unpad(dpadded, h, w, size, stride_x, stride_y, offset, out_h, out_w)

    def avgpool(self, x):
        """Global average pooling: x (batch, c, h, w) -> (batch, c, 1, 1), the mean of each plane (float32: on the
        kernels' threads)."""
        if x.dtype == np.float32:
            return _kernels().global_avgpool(np.ascontiguousarray(x))
        return np.sum(x, axis=(2, 3), keepdims=True) / x.dtype.type(x.shape[2] * x.shape[3])

    def avgpool_backward(self, dy, h, w):
        """d(loss)/dx (batch, c, h, w) of avgpool for dy of batch * c values: dy / (h*w) at every position."""
        dy = dy.reshape(dy.shape[0], -1, 1, 1) / dy.dtype.type(h * w)
        return np.ascontiguousarray(np.broadcast_to(dy, dy.shape[:2] + (h, w)))

    def upsample(self, x, stride, scale):
        """[upsample]: x (b, c, h, w) -> (b, c, h*stride, w*stride), every value repeated stride x stride times,
        times scale. The adjoint of downsample."""
        scale = x.dtype.type(scale)
        scaled = x if scale == 1 else x * scale      # (x * 1 is x: the default scale skips a pass)
        # np.repeat along each axis: 3x faster than a broadcast into a (b, c, h, stride, w, stride) view
        return np.repeat(np.repeat(scaled, stride, axis=3), stride, axis=2)

    def downsample(self, x, stride, scale):
        """[upsample] with a negative stride: x (b, c, h*stride, w*stride) -> (b, c, h, w), the sum of
        scale * value over each stride x stride block, added in row-major order (darknet: a scaled sum, not a
        mean). The adjoint of upsample."""
        b, c, hs, ws = x.shape
        blocks = x.reshape(b, c, hs // stride, stride, ws // stride, stride)
        out = np.zeros((b, c, hs // stride, ws // stride), dtype=x.dtype)
        scale = x.dtype.type(scale)
        for dy in range(stride):
            for dx in range(stride):
                out += blocks[:, :, :, dy, :, dx] * scale
        return out

    def reorg(self, x, stride, channels, h, w, to_big):
        """darknet's reorg_cpu on each image of x (batch, ...) for its "small" buffer (channels, h, w) and "big"
        one (channels / stride^2, h*stride, w*stride) (reorg_permutation has the map): to_big reads x as small
        and returns big, else reads big and returns small. Each direction is the other's inverse (and so its
        adjoint)."""
        view, perm = reorg_permutation(channels, h, w, stride, to_big)
        out = x.reshape((x.shape[0],) + view).transpose(perm)
        s = stride
        shape = (channels // (s * s), h * s, w * s) if to_big else (channels, h, w)
        return out.reshape((x.shape[0],) + shape)

    def route(self, pieces, outputs):
        """[route]: (batch, outputs), the columns src[:, start:start + count] of each (src, start, count) of
        `pieces` (src (batch, n)) side by side in order, then zeros up to `outputs` columns. One piece that is
        contiguous in memory (batch 1, or all of src: a [route] that only selects a group of channels) is returned
        as a view of src, without a copy (layer outputs are never written in place)."""
        if len(pieces) == 1:
            src, start, count = pieces[0]
            if count == outputs and (src.shape[0] == 1 or count == src.shape[1]):
                return src[:, start:start + count]
        out = self.concat([src[:, start:start + count] for src, start, count in pieces])
        if out.shape[1] < outputs:
            out = np.concatenate([out, np.zeros((out.shape[0], outputs - out.shape[1]), dtype=out.dtype)], 1)
        return out

    def route_backward(self, dy, pieces):
        """The adjoint of route, added in place: for each (delta, start, count) of `pieces` (delta (batch, n),
        C-contiguous, in route's order), delta[:, start:start + count] += its columns of dy (batch, outputs)."""
        offset = 0
        for delta, start, count in pieces:
            delta[:, start:start + count] += dy[:, offset:offset + count]
            offset += count

    def shortcut_weights(self, raw, normalization):
        """[shortcut] weights (n+1, 1 or c), one row per summand, normalized over the rows of each column:
        "none" raw itself; "relu" relu(w) / (eps + sum relu(w)); "softmax" e^(w - max) / (eps + sum e^(w - max)),
        eps = .0001, the maximum of the column."""
        eps = raw.dtype.type(SHORTCUT_WEIGHTS_EPS)
        if normalization == "relu":
            r = np.maximum(raw, 0)
            return r / (eps + np.sum(r, axis=0, keepdims=True))
        if normalization == "softmax":
            e = np.exp(raw - np.max(raw, axis=0, keepdims=True))
            return e / (eps + np.sum(e, axis=0, keepdims=True))
        return raw

    def shortcut_weights_backward(self, raw, normalized, grad, normalization):
        """d(loss)/d(raw) from grad = d(loss)/d(normalized) of shortcut_weights(raw, normalization), through relu's
        mask, the softmax, its eps and the subtracted maximum (the first maximal weight of each column)."""
        if normalization == "none":
            return grad
        dot = np.sum(grad * normalized, axis=0, keepdims=True)
        eps = raw.dtype.type(SHORTCUT_WEIGHTS_EPS)
        if normalization == "relu":
            s = eps + np.sum(np.maximum(raw, 0), axis=0, keepdims=True)
            return np.where(raw > 0, (grad - dot) / s, raw.dtype.type(0))
        e = np.exp(raw - np.max(raw, axis=0, keepdims=True))
        s = eps + np.sum(e, axis=0, keepdims=True)
        g = normalized * (grad - dot)
        # the subtracted maximum m: d wn_k / d m = -wn_k * eps / s, to the first maximal weight of each column
        first = np.argmax(raw, axis=0)
        onehot = np.arange(raw.shape[0]).reshape(-1, 1) == first.reshape(1, -1)
        return g - onehot * (dot * eps / s)

    def shortcut(self, x, sources, weights):
        """[shortcut] before its activation: z = w_0 x + sum_k w_(k+1) sources[k], x (batch, c, h, w), source k
        (batch, c_k, h, w) added to the first min(c, c_k) channels only; weights None (all 1) or normalized
        weights (n+1, 1 or c) (a row per summand: one factor, or one per channel). A new array."""
        c = x.shape[1]
        if weights is None and all(src.shape == x.shape and src.dtype == x.dtype == np.float32 for src in sources):
            # the plain residual sum, on the kernels' threads in one pass (the same additions, in the same order)
            return _kernels().add([np.ascontiguousarray(x)] + [np.ascontiguousarray(src) for src in sources])
        z = x * channel_factor(weights[0], c) if weights is not None else x.copy()
        for k, src in enumerate(sources):
            m = min(c, src.shape[1])
            z[:, :m] += src[:, :m] if weights is None else src[:, :m] * channel_factor(weights[k + 1], m)
        return z

    def shortcut_backward(self, dz, x, sources, weights, deltas):
        """Gradients of shortcut for dz = d(loss)/dz: adds w_(k+1) dz (common channels) into deltas[k] (arrays of
        sources[k]'s shape that write through to the source layers' deltas) and returns (dx, dweights): dweights
        = d(loss)/d(weights) of weights' shape (per row, per channel or in total), None without weights."""
        c = x.shape[1]
        dx = dz * channel_factor(weights[0], c) if weights is not None else dz
        per_channel = weights is not None and weights.shape[1] > 1
        grad = np.zeros(weights.shape, dtype=dz.dtype) if weights is not None else None
        if grad is not None:
            grad[0] = np.sum(dz * x, axis=(0, 2, 3)) if per_channel else np.sum(dz * x)
        for k, (src, delta) in enumerate(zip(sources, deltas)):
            m = min(c, src.shape[1])
            delta[:, :m] += dz[:, :m] if weights is None else dz[:, :m] * channel_factor(weights[k + 1], m)
            if grad is not None:
                prod = dz[:, :m] * src[:, :m]
                if per_channel:
                    grad[k + 1, :m] = np.sum(prod, axis=(0, 2, 3))
                else:
                    grad[k + 1] = np.sum(prod)
        return dx, grad

    def multiply(self, a, b):
        """a * b for a (batch, c, h, w) and b of a's shape, (batch, c, 1, 1) or (batch, 1, h, w): a new array (per
        channel in float32, squeeze-and-excitation's scaling: on the kernels' threads)."""
        if a.dtype == b.dtype == np.float32 and b.shape == a.shape[:2] + (1, 1):
            return _kernels().scale_planes(np.ascontiguousarray(a), np.ascontiguousarray(b))
        return a * b

    def add_product(self, out, a, b):
        """out += a * b in place, with multiply's broadcasting; out C-contiguous with a's size (any shape)."""
        out.reshape(a.shape)[...] += a * b

    def sum_products(self, a, b, axis):
        """The sum of a * b (both (batch, c, h, w)) over axis 1 (-> (batch, h, w)) or axes (2, 3) (-> (batch, c))."""
        return np.sum(a * b, axis=axis)

    @staticmethod
    def _crop_slices(w, top, left, height, width, flip):
        rows = slice(top, top + height)
        if flip:   # output column j reads input column w - 1 - left - j
            start = w - left - 1
            return rows, slice(start, start - width if start - width >= 0 else None, -1)
        return rows, slice(left, left + width)

    def crop(self, x, top, left, height, width, flip, scale, shift):
        """[crop]: (batch, c, height, width) = x[:, :, top + i, column(j)] * scale + shift, column(j) = left + j,
        or with flip w - 1 - left - j."""
        rows, cols = self._crop_slices(x.shape[3], top, left, height, width, flip)
        return x[:, :, rows, cols] * x.dtype.type(scale) + x.dtype.type(shift)

    def crop_backward(self, dy, top, left, flip, scale, h, w):
        """d(loss)/dx (batch, c, h, w) of crop for dy (batch, c, height, width): scale * dy where crop read, else 0."""
        rows, cols = self._crop_slices(w, top, left, dy.shape[2], dy.shape[3], flip)
        dx = np.zeros(dy.shape[:2] + (h, w), dtype=dy.dtype)
        dx[:, :, rows, cols] = dy * dy.dtype.type(scale)
        return dx


    # -- heads, losses, dropout, softmax, optimizer -------------------------------------------------------------------
    # The NumPy reference of CudaOps' kernels (csrc/cuda/softmax.cu, cost.cu, dropout.cu, heads.cu, optimizer.cu),
    # after darknet's src/blas.c softmax_cpu, softmax_x_ent_cpu, l2_cpu, smooth_l1_cpu, forward_dropout_layer, the
    # CPU activations of forward_yolo_layer / forward_region_layer, update_*_layer and adam_update.
    def softmax(self, x, temperature=1.0, out=None):
        """Darknet's softmax along the last axis of x: exp(x/t - max/t) / (sum of those), t = temperature. Written
        into `out` (x's shape; may be x) or a new array; returns it."""
        t = x.dtype.type(temperature)
        if t == 1:   # the same values without two divisions by 1 (classifiers' default)
            e = np.exp(x - np.max(x, axis=-1, keepdims=True))
        else:
            e = np.exp(x / t - np.max(x, axis=-1, keepdims=True) / t)
        y = e / np.sum(e, axis=-1, keepdims=True)
        if out is None:
            return y
        out[...] = y
        return out

    def softmax_backward(self, y, dy, temperature=1.0, out=None):
        """d loss / d x = y * (dy - sum(dy * y)) / t along the last axis, for y = softmax(x, t) and dy = d loss / d y.
        Written into `out` (y's shape; may be dy) or a new array; returns it."""
        dx = y * (dy - np.sum(dy * y, axis=-1, keepdims=True)) / y.dtype.type(temperature)
        if out is None:
            return dx
        out[...] = dx
        return out

    def softmax_cross_entropy(self, y, truth):
        """(cost, grad) of a softmax output y against truth (same shape): cost = sum of -log(y) where truth != 0
        (a Python float), grad = y - truth (d cost / d softmax input for one-hot truth)."""
        cost = float(-np.sum(np.log(np.where(truth != 0, y, 1))))
        return cost, y - truth

    def cost_loss(self, x, truth, cost_type, scale):
        """(cost, grad) of the [cost] layer (layers/cost.py) for x against truth (same shape): diff = truth - x
        ("masked": 0 where truth is -1234); sse: cost = sum diff^2, grad = scale * -diff; "smooth": where |diff| >= 1
        the cost is 2|diff| - 1 and grad scale * -sign(diff). cost is a Python float."""
        diff = truth - x
        if cost_type == "masked":
            diff = np.where(truth == SECRET_NUM, x.dtype.type(0), diff)
        error = diff * diff
        if cost_type == "smooth":
            large = np.abs(diff) >= 1
            error = np.where(large, 2 * np.abs(diff) - 1, error)
            diff = np.where(large, np.sign(diff), diff)
        return float(np.sum(error)), x.dtype.type(scale) * -diff

    def dropout(self, x, probability, seed):
        """x * scale where dropout_uniform(seed) >= probability, else 0 (scale = 1/(1 - probability), 0 for
        probability 1), as a new array: the mask of `seed` is the same on every engine, so backward passes its
        gradient through the same call."""
        keep = dropout_uniform(seed, x.size).reshape(x.shape) >= np.float32(probability)
        p = float(np.float32(probability))
        scale = x.dtype.type(1.0 / (1.0 - p)) if p < 1 else x.dtype.type(0)
        return np.where(keep, x * scale, x.dtype.type(0))

    def head_activation(self, x, logistic, scaled, alpha, beta):
        """A [yolo]-style head's activations: a copy of x (batch, anchors, values, h, w) with the logistic on the
        values `logistic` selects, then v*alpha + beta on those `scaled` selects (each a list of slices or indexes
        of the values axis)."""
        out = np.array(x, copy=True)
        for image in out:
            for anchor in image:
                for sl in logistic:
                    self.activate_(anchor[sl], "logistic")     # (values, h, w) of one anchor: contiguous
        for sl in scaled:
            out[:, :, sl] = out[:, :, sl] * alpha + beta
        return out

    def head_activation_backward(self, x, dy, logistic, scaled, alpha):
        """d loss / d x of head_activation for dy = d loss / d output (a new array)."""
        dx = dy.copy()
        for sl in scaled:
            dx[:, :, sl] = dx[:, :, sl] * alpha
        for sl in logistic:
            dx[:, :, sl] = activate_backward(x[:, :, sl], dx[:, :, sl], "logistic", np)
        return dx

    @staticmethod
    def _region_rows(x, anchors):
        """x (batch, anchors*values, h, w) -> (batch, h*w, anchors, values): darknet's flatten(), a view."""
        batch, channels = x.shape[:2]
        return x.reshape(batch, channels, -1).transpose(0, 2, 1).reshape(batch, -1, anchors, channels // anchors)

    def region_activation(self, x, anchors, softmax):
        """A [region] head's output for x (batch, anchors*values, h, w): darknet's transposed layout (batch, h*w,
        anchors, values), a new array, with the logistic on value 4 (objectness) and, with softmax, a softmax over
        values 5.. (the classes)."""
        t = self._region_rows(x, anchors)
        out = np.array(t, copy=True)
        out[..., 4] = activate(t[..., 4], "logistic", np)
        if softmax:
            self.softmax(t[..., 5:], out=out[..., 5:])
        return out

    def region_activation_backward(self, x, y, dy, anchors, softmax):
        """d loss / d x (x's shape, a new array) of region_activation for its output y and dy = d loss / d y (both
        (batch, h*w, anchors, values))."""
        t = self._region_rows(x, anchors)
        dt = np.array(dy, copy=True)
        dt[..., 4] = activate_backward(t[..., 4], dy[..., 4], "logistic", np)
        if softmax:
            self.softmax_backward(y[..., 5:], dy[..., 5:], out=dt[..., 5:])
        batch, channels = x.shape[:2]
        return np.ascontiguousarray(dt.reshape(batch, -1, channels).transpose(0, 2, 1)).reshape(x.shape)

    def sgd_update(self, w, grad, velocity, rate, momentum, decay, clip):
        """Darknet's SGD step on w, in place (training.py): s = velocity + grad (+ decay * w where decay != 0);
        w -= rate * s; velocity = momentum * s (in place); then w = min(clip, max(-clip, w)) where clip != 0. rate
        and decay come already divided / multiplied by the images per iteration."""
        s = velocity + grad
        if decay:
            s = s + decay * w
        w -= rate * s
        if clip:
            np.clip(w, -clip, clip, out=w)
        np.multiply(s, momentum, out=velocity)

    def adam_update(self, w, grad, m, v, rate, beta1, beta2, eps, t, decay, clip):
        """Darknet's Adam step on w, m and v in place (training.py): g = grad + decay * w; m = beta1*m + (1-beta1)*g;
        v = beta2*v + (1-beta2)*g^2; w -= rate * m/(1 - beta1^t) / (sqrt(v/(1 - beta2^t)) + eps); then the clip
        of sgd_update."""
        g = grad + decay * w
        m[...] = beta1 * m + (1 - beta1) * g
        v[...] = beta2 * v + (1 - beta2) * g * g
        w -= rate * (m / (1 - beta1 ** t)) / (np.sqrt(v / (1 - beta2 ** t)) + eps)
        if clip:
            np.clip(w, -clip, clip, out=w)


# -- pooling, resampling, routing, shortcut: geometry shared by NumpyOps, CudaOps and the layers' ONNX export --------
FLT_MAX = float(np.finfo(np.float32).max)
SHORTCUT_WEIGHTS_EPS = 0.0001


def pool_extent(h, w, size, stride_x, stride_y, offset, out_h, out_w):
    """(ext_h, ext_w, in_h, in_w) of windowed pooling: the padded extent the windows reach (its (0, 0) is input
    element (-offset, -offset)) and the input rows and columns inside it."""
    ext_h = (out_h - 1) * stride_y + size
    ext_w = (out_w - 1) * stride_x + size
    return ext_h, ext_w, max(0, min(h, ext_h - offset)), max(0, min(w, ext_w - offset))


def window_counts(h, w, size, stride_x, stride_y, offset, out_h, out_w):
    """In-bounds taps of each pooling window, (out_h, out_w) integers (0 for a window outside the input)."""
    def along(length, out_len, stride):
        start = np.arange(out_len) * stride - offset
        return np.maximum(np.minimum(start + size, length) - np.maximum(start, 0), 0)
    return np.outer(along(h, out_h, stride_y), along(w, out_w, stride_x))


def channel_factor(w, c):
    """A [shortcut] weights row (1 or c values) as a factor for a (batch, c, h, w) array's first c channels."""
    return w[:c].reshape(1, -1, 1, 1) if w.shape[0] > 1 else w.reshape(1, 1, 1, 1)


def depth_chunks(channels, out_channels):
    """maxpool_depth: (r, first channel, count) of each run of out_channels consecutive input channels; input
    channel g + r*out_channels goes to output channel g (the last run may be shorter)."""
    for r in range(-(-channels // out_channels)):
        yield r, r * out_channels, min(out_channels, channels - r * out_channels)


def reorg_permutation(channels, h, w, stride, to_big):
    """darknet's reorg_cpu (src/blas.c) as a reshape-transpose-reshape of one image (batch axis 0 included in
    the permutation). Small (k, j, i), channels x h x w, is big (k % ic, j*s + (k / ic) / s, i*s + (k / ic) % s),
    ic x h*s x w*s, ic = channels / s^2: small viewed as (s, s, ic, h, w) is big viewed as (ic, h, s, w, s), axes
    (dy, dx, c, j, i) <-> (c, j, dy, i, dx). Returns the view of the input image and the axis permutation that
    makes it the output: to_big reads small and writes big, else the reverse."""
    s = stride
    ic = channels // (s * s)
    if to_big:
        return (s, s, ic, h, w), (0, 3, 4, 1, 5, 2)
    return (ic, h, s, w, s), (0, 3, 5, 1, 2, 4)


def get_ops(device="cpu"):
    """The ops of `device`: "cpu" (NumpyOps), "cuda" / "cuda:N" (CudaOps on a GPU, CuPy arrays) or "cuda-emulated"
    (CudaOps with its kernels run on the CPU: slow, for tests and debugging)."""
    if device in (None, "cpu"):
        return NumpyOps()
    if isinstance(device, str) and device.startswith("cuda"):
        from .cuda_backend import CudaOps
        return CudaOps(device)
    from .errors import DarknetError
    raise DarknetError(f"device '{device}': expected cpu, cuda, cuda:N or cuda-emulated")
