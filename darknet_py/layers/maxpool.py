"""[maxpool] / [max]: max pooling, also across channels (maxpool_depth); [local_avgpool] shares the geometry.

Darknet facts (parse_maxpool, make_maxpool_layer): stride=1, stride_x/stride_y default to stride,
size defaults to stride, padding defaults to size-1 (total, split evenly: offset -padding/2);
output (w + padding - size)/stride_x + 1; with maxpool_depth the output is w x h x out_channels.
BFLOPS = size*size*c*out_h*out_w / 1e9.

Compute (src/maxpool_layer.c forward_maxpool_layer, backward_maxpool_layer, forward_local_avgpool_layer):
- window (i, j) reads input rows -padding/2 + i*stride_y + n and columns -padding/2 + j*stride_x + m, n, m < size;
  positions outside the input count as -FLT_MAX (so a window entirely outside gives -FLT_MAX and no gradient);
- the maximum is the first strictly greater value in scan order (n outer, m inner): ties and NaNs keep the
  earlier value, and backward sends the whole gradient to that one input (darknet's `indexes`);
- maxpool_depth: output channel g is the maximum over input channels g, g+out_channels, g+2*out_channels, ...
  at the same position (first maximum in increasing channel order); size/stride/padding are ignored;
- [local_avgpool] divides the sum of the in-bounds values by their count (0/0 = NaN for a window entirely
  outside the input, as in darknet).
Known darknet differences, not reproduced:
- darknet's CPU backward_local_avgpool_layer divides the gradient by size*size, not by the count its forward
  divided by, so border windows get a gradient that is not the derivative of the forward; here it is;
- the AVX inference path (forward_maxpool_layer_avx in a build with AVX, stride_x == stride_y == 1, not
  training) handles 8 outputs of a row at once and tests whether a tap lies inside the image for the first of
  them only, skipping the tap for all 8: in the first 8-wide block of every row (it runs when out_w > size+7),
  outputs 1..7 lose the in-image taps that are left of the image for output 0 (checked by compiling darknet's
  function: a 32-wide size=5 stride=1 pool differs at 24 of 192 outputs; yolov4's SPP at 608x608, size 5 and 9
  on 19x19, is affected). The scalar loop (training, stride > 1, or no AVX) and the GPU compute the plain
  maximum, which is what is computed here;
- maxpool_zero_nonmax is applied only by darknet's GPU forward; like darknet's CPU, it is ignored here
  (antialiasing is refused when the network is built).
"""
import numpy as np

from . import register
from .base import Layer, darknet_float, fmt_shape
from .batchnorm import image_input

FLT_MAX = float(np.finfo(np.float32).max)


def _tap(n, m, out_h, out_w, sy, sx):
    """The slice of the padded image that window tap (n, m) reads for every output position."""
    return (Ellipsis, slice(n, n + (out_h - 1) * sy + 1, sy), slice(m, m + (out_w - 1) * sx + 1, sx))


def _valid_counts(length, out_len, offset, stride, size):
    """For each output index along one axis: how many of its `size` taps fall inside [0, length)."""
    start = np.arange(out_len) * stride - offset
    first = np.maximum(start, 0)
    last = np.minimum(start + size, length)
    return np.maximum(last - first, 0)


class Pooling(Layer):
    """Windowed pooling shared by [maxpool] and [local_avgpool] (darknet builds both with make_maxpool_layer)."""

    label = None
    depth_options = False

    def configure(self, s, ctx):
        stride = s.get_int("stride", 1, minimum=1)
        self.stride_x = s.get_int("stride_x", stride, minimum=1)
        self.stride_y = s.get_int("stride_y", stride, minimum=1)
        self.size = s.get_int("size", stride, minimum=1)
        self.padding = s.get_int("padding", self.size - 1, minimum=0)
        self.maxpool_depth = 0
        if self.depth_options:
            self.maxpool_depth = s.get_int("maxpool_depth", 0)
            self.out_channels = s.get_int("out_channels", 1, minimum=1)
            if s.get_int("antialiasing", 0):
                raise s.error("antialiasing", "antialiasing is not supported by darknet_py yet")
            self.zero_nonmax = s.get_int("maxpool_zero_nonmax", 0)
        if self.maxpool_depth:
            self.out_c = self.out_channels
        else:
            self.out_w = (self.w + self.padding - self.size) // self.stride_x + 1
            self.out_h = (self.h + self.padding - self.size) // self.stride_y + 1
            if self.out_w < 1 or self.out_h < 1:
                raise s.error("size", f"expected size <= input + padding; got size={self.size} on a "
                                      f"{self.w}x{self.h} input with padding {self.padding}")

    @property
    def bflops(self):
        return darknet_float(self.size * self.size * self.c * self.out_h * self.out_w / 1e9)

    # -- compute ------------------------------------------------------------------------------------
    def _geometry(self):
        """(offset, padded height, padded width, input rows kept, input columns kept): the padded copy's
        element (0, 0) is input element (-offset, -offset); it is as large as the windows reach."""
        off = self.padding // 2                      # darknet: -l.pad / 2 with l.pad >= 0
        ext_h = (self.out_h - 1) * self.stride_y + self.size
        ext_w = (self.out_w - 1) * self.stride_x + self.size
        in_h = max(0, min(self.h, ext_h - off))
        in_w = max(0, min(self.w, ext_w - off))
        return off, ext_h, ext_w, in_h, in_w

    def _pad(self, x, fill, xp):
        off, ext_h, ext_w, in_h, in_w = self._geometry()
        if off == 0 and (ext_h, ext_w) == (in_h, in_w) == (self.h, self.w):
            return x
        padded = xp.full(x.shape[:2] + (ext_h, ext_w), fill, dtype=x.dtype)
        padded[:, :, off:off + in_h, off:off + in_w] = x[:, :, :in_h, :in_w]
        return padded

    def _unpad(self, padded, xp):
        off, ext_h, ext_w, in_h, in_w = self._geometry()
        if off == 0 and (ext_h, ext_w) == (in_h, in_w) == (self.h, self.w):
            return padded
        dx = xp.zeros(padded.shape[:2] + (self.h, self.w), dtype=padded.dtype)
        dx[:, :, :in_h, :in_w] = padded[:, :, off:off + in_h, off:off + in_w]
        return dx

    def _taps(self):
        """The padded image's slice for each window tap, row n outer, column m inner."""
        for n in range(self.size):
            for m in range(self.size):
                yield _tap(n, m, self.out_h, self.out_w, self.stride_y, self.stride_x)

    def _onnx_padded(self, graph, fill):
        """This layer's input padded with `fill` (and cropped) to the extent the windows reach, as _pad does."""
        off, ext_h, ext_w, _, _ = self._geometry()
        return graph.pad_crop(graph.image_input(self), off, off, ext_h - self.h - off, ext_w - self.w - off, fill)

    def row(self):
        k = self.size
        if self.maxpool_depth:
            head = f"{self.label}-depth         {k:2d}x{k:2d}/{self.stride_x:2d}   "
        elif self.stride_x == self.stride_y:
            head = f"{self.label}               {k:2d}x{k:2d}/{self.stride_x:2d}   "
        else:
            head = f"{self.label}              {k:2d}x{k:2d}/{self.stride_x:2d}x{self.stride_y:2d} "
        return head + f"{fmt_shape(self.w, self.h, self.c)} -> {fmt_shape(*self.output_shape)} {self.bflops:5.3f} BF"


@register("maxpool", "max")
class MaxPool(Pooling):
    kind = "maxpool"
    label = "max"
    depth_options = True

    def forward(self, x, net):
        xp = net.ops.xp
        x = image_input(self, x)
        lowest = x.dtype.type(-FLT_MAX)
        if self.maxpool_depth:
            return self._forward_depth(x, lowest, xp)
        if not net.train:   # inference needs no argmax: the ops kernel (backward recomputes it if ever called)
            self._arg = None
            return net.ops.maxpool2d(x, self.size, self.stride_x, self.stride_y, self._geometry()[0], self.out_h,
                                     self.out_w)
        return self._forward_argmax(x, lowest, xp)

    def _forward_argmax(self, x, lowest, xp):
        padded = self._pad(x, lowest, xp)
        # Separably, with darknet's result: the first maximum in (row n, column m) order is, in the first row
        # whose maximum is the window's, that row's first maximum. Pass 1: each padded row's maximum over the m
        # taps of every output column; pass 2: the maximum of those over the n rows of every output row.
        # Strict `>` from -FLT_MAX in both passes ignores NaNs and values <= -FLT_MAX, as darknet's scan does.
        sx, sy, k = self.stride_x, self.stride_y, self.size
        rows = xp.full(padded.shape[:3] + (self.out_w,), lowest, dtype=x.dtype)
        row_arg = xp.full(rows.shape, -1, dtype=xp.int32)
        better = xp.empty(rows.shape, dtype=bool)
        for m in range(k):
            val = padded[..., m:m + (self.out_w - 1) * sx + 1:sx]
            xp.greater(val, rows, out=better)
            xp.copyto(rows, val, where=better)
            xp.copyto(row_arg, m, where=better)
        best = xp.full(x.shape[:2] + (self.out_h, self.out_w), lowest, dtype=x.dtype)
        arg = xp.full(best.shape, -1, dtype=xp.int32)
        better = xp.empty(best.shape, dtype=bool)
        for n in range(k):
            val = rows[..., n:n + (self.out_h - 1) * sy + 1:sy, :]
            xp.greater(val, best, out=better)
            xp.copyto(best, val, where=better)
            xp.copyto(arg, n, where=better)
        self._arg, self._row_arg = arg, row_arg
        return best

    def _depth_chunks(self):
        """maxpool_depth: (r, first channel, count) of each run of out_channels consecutive input channels;
        input channel g + r*out_channels goes to output channel g (the last run may be shorter)."""
        oc = self.out_c
        for r in range(-(-self.c // oc)):
            yield r, r * oc, min(oc, self.c - r * oc)

    def _forward_depth(self, x, lowest, xp):
        best = xp.full((x.shape[0], self.out_c, self.h, self.w), lowest, dtype=x.dtype)
        arg = xp.full(best.shape, -1, dtype=xp.int32)
        for r, start, count in self._depth_chunks():
            val = x[:, start:start + count]
            better = val > best[:, :count]
            best[:, :count] = xp.where(better, val, best[:, :count])
            arg[:, :count] = xp.where(better, xp.int32(r), arg[:, :count])
        self._arg = arg
        return best

    def backward(self, x, net):
        xp = net.ops.xp
        if self._arg is None:
            self._forward_argmax(image_input(self, x), x.dtype.type(-FLT_MAX), xp)
        dy = self.delta.reshape(self._arg.shape)
        zero = dy.dtype.type(0)
        if self.maxpool_depth:
            dx = xp.zeros((x.shape[0], self.c, self.h, self.w), dtype=dy.dtype)
            for r, start, count in self._depth_chunks():
                dx[:, start:start + count] = xp.where(self._arg[:, :count] == r, dy[:, :count], zero)
            return dx.reshape(x.shape)
        # back through the two passes of forward: to the row maxima, then to the padded input
        sx, sy, k = self.stride_x, self.stride_y, self.size
        drows = xp.zeros(self._row_arg.shape, dtype=dy.dtype)
        for n in range(k):
            drows[..., n:n + (self.out_h - 1) * sy + 1:sy, :] += xp.where(self._arg == n, dy, zero)
        dpadded = xp.zeros(drows.shape[:3] + (self._geometry()[2],), dtype=dy.dtype)
        for m in range(k):
            dpadded[..., m:m + (self.out_w - 1) * sx + 1:sx] += xp.where(self._row_arg == m, drows, zero)
        return self._unpad(dpadded, xp).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        if self.maxpool_depth:
            return self._depth_onnx(graph, graph.image_input(self)), (self.out_c, self.h, self.w)
        x = self._onnx_padded(graph, -FLT_MAX)
        out = graph.op("MaxPool", [x], "maxpool", kernel_shape=[self.size] * 2, strides=[self.stride_y, self.stride_x])
        return out, (self.out_c, self.out_h, self.out_w)

    def _depth_onnx(self, graph, x):
        """Channel g's maximum over channels g, g+out_c, ...: elementwise Max of consecutive channel chunks."""
        oc = self.out_c
        best = None
        for _, start, count in self._depth_chunks():
            chunk = graph.slice(x, 1, start, start + count)
            if best is None:
                best = chunk if count == oc else graph.pad_channels(chunk, oc - count, -FLT_MAX)
            elif count == oc:
                best = graph.op("Max", [best, chunk], "max")
            else:
                head = graph.op("Max", [graph.slice(best, 1, 0, count), chunk], "max")
                best = graph.concat([head, graph.slice(best, 1, count, None)], 1)
        return best
