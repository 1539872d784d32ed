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
from . import register
from .base import Layer, darknet_float, fmt_shape
from .batchnorm import image_input
from ..backend import FLT_MAX, depth_chunks, pool_extent


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
    @property
    def offset(self):
        """The windows' (0, 0) is input element (-offset, -offset): darknet's -l.pad / 2 with l.pad >= 0."""
        return self.padding // 2

    def _windows(self):
        """The ops' window arguments (size, stride_x, stride_y, offset) after the input."""
        return self.size, self.stride_x, self.stride_y, self.offset

    def _onnx_padded(self, graph, fill):
        """This layer's input padded with `fill` (and cropped) to the extent the windows reach (pool_extent)."""
        off = self.offset
        ext_h, ext_w = pool_extent(self.h, self.w, self.size, self.stride_x, self.stride_y, off, self.out_h,
                                   self.out_w)[:2]
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
        x = image_input(self, x)
        if self.maxpool_depth:
            out, self._arg = net.ops.maxpool_depth(x, self.out_c)
            return out
        if not net.train:   # inference needs no argmax: the ops kernel (backward recomputes it if ever called)
            self._arg = None
            return net.ops.maxpool2d(x, *self._windows(), self.out_h, self.out_w)
        out, self._arg = net.ops.maxpool2d_argmax(x, *self._windows(), self.out_h, self.out_w)
        return out

    def backward(self, x, net):
        ops = net.ops
        dy = self.delta.reshape(x.shape[0], self.out_c, self.out_h, self.out_w)
        if self.maxpool_depth:
            return ops.maxpool_depth_backward(dy, self._arg, self.c).reshape(x.shape)
        if self._arg is None:
            self._arg = ops.maxpool2d_argmax(image_input(self, x), *self._windows(), self.out_h, self.out_w)[1]
        return ops.maxpool2d_backward(dy, self._arg, *self._windows(), self.h, self.w).reshape(x.shape)

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
        for _, start, count in depth_chunks(self.c, oc):
            chunk = graph.slice(x, 1, start, start + count)
            if best is None:
                best = chunk if count == oc else graph.pad_channels(chunk, oc - count, -FLT_MAX)
            elif count == oc:
                best = graph.op("Max", [best, chunk], "max")
            else:
                head = graph.op("Max", [graph.slice(best, 1, 0, count), chunk], "max")
                best = graph.concat([head, graph.slice(best, 1, count, None)], 1)
        return best
