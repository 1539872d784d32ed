"""[reorg3d]: space-to-depth (or, nominally, depth-to-space with reverse=1) by `stride`, darknet's
make_reorg_layer: out = w/stride x h/stride x c*stride^2 (reverse: w*stride x h*stride x c/stride^2).

Compute. Both reorg layers call src/blas.c reorg_cpu(x, W, H, C, batch, stride, forward, out), whose loop runs
over a "small" C x H x W buffer and a "big" C/s^2 x H*s x W*s buffer (s = stride): small element (k, j, i) is
big element (k % (C/s^2), j*s + (k / (C/s^2)) / s, i*s + (k / (C/s^2)) % s). forward=0 copies big -> small
(space-to-depth), forward=1 small -> big (depth-to-space). The layers pass:
- [reorg3d] (forward_reorg_layer): (W, H, C) = the layer's OUTPUT dims, forward = reverse. Without reverse that
  is the true space-to-depth: out[(dy*s + dx)*c + ch, y, x] = in[ch, y*s + dy, x*s + dx] (ONNX SpaceToDepth's
  order). With reverse=1 the dims passed are the output's (c/s^2, h*s, w*s), not the input's, so the input
  buffer is read as if it were c/s^2 x h*s x w*s and scattered into a c/s^4 x h*s^2 x w*s^2 buffer: NOT the
  inverse of reorg3d (darknet quirk, reproduced; it needs c divisible by s^4, else darknet divides by zero or
  writes out of bounds, and darknet_py refuses).
- [reorg] (forward_reorg_old_layer, reorg.py): (W, H, C) = the layer's INPUT dims, forward = reverse. With
  reverse=1 that is the true depth-to-space; without it the input is read as if it were c/s^2 x h*s x w*s: the
  YOLOv2 reorg order (needs c divisible by s^2).
Each is a permutation of the values of one image (ops.reorg); backward (darknet calls reorg_cpu the other way)
applies its inverse to the gradient.
"""
from . import register
from .base import Layer, fmt_shape
from ..backend import reorg_permutation
from ..errors import DarknetError


class Reorganize(Layer):
    """Shape logic shared by [reorg3d] and [reorg] (they differ in element order and printing)."""

    def configure(self, s, ctx):
        self.stride = s.get_int("stride", 1, minimum=1)
        self.reverse = s.get_int("reverse", 0)
        st = self.stride
        if self.reverse:
            if self.c % (st * st):
                raise s.error("stride", f"expected stride^2={st * st} to divide the {self.c} input channels (reverse=1)")
            self.out_w, self.out_h, self.out_c = self.w * st, self.h * st, self.c // (st * st)
        else:
            if self.w % st or self.h % st:
                raise s.error("stride", f"expected stride={st} to divide the {self.w}x{self.h} input")
            self.out_w, self.out_h, self.out_c = self.w // st, self.h // st, self.c * st * st

    # -- compute ------------------------------------------------------------------------------------
    def reorg_call(self):
        """(W, H, C) and the `forward` flag this layer's forward passes to reorg_cpu."""
        raise NotImplementedError

    def _channel_problem(self):
        """Why darknet cannot run this layer's reorg_cpu call (stride^2 must divide its channel count), or None."""
        (W, H, C), _ = self.reorg_call()
        s = self.stride
        if C % (s * s) or C == 0:
            return f"darknet's reorg_cpu is called with {C} channels and stride {s}, which {s * s} does not divide"
        return None

    def _view(self):
        """reorg_cpu as a reshape-transpose-reshape (backend.reorg_permutation): the view of one input image and
        the axis permutation (batch axis 0 included) that makes it the output."""
        (W, H, C), forward = self.reorg_call()
        return reorg_permutation(C, H, W, self.stride, forward)

    def _check_channels(self):
        problem = self._channel_problem()
        if problem:
            raise DarknetError(f"layer {self.index} {self.kind}: {problem} (darknet divides by zero or reads out "
                               f"of bounds here); input {self.w} x {self.h} x {self.c}, reverse={self.reverse}")

    def forward(self, x, net):
        self._check_channels()
        (W, H, C), forward = self.reorg_call()
        out = net.ops.reorg(x, self.stride, C, H, W, bool(forward))
        return out.reshape(x.shape[0], self.out_c, self.out_h, self.out_w)

    def backward(self, x, net):
        self._check_channels()
        (W, H, C), forward = self.reorg_call()   # the inverse permutation: reorg_cpu the other way
        return net.ops.reorg(self.delta, self.stride, C, H, W, not forward).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        problem = self._channel_problem()
        if problem:
            raise graph.unsupported(self, "stride", self.stride, f"{problem} (the CPU engine refuses it too)")
        view, perm = self._view()
        name = graph.reshape(graph.input(self)[0], view)
        name = graph.op("Transpose", [name], "reorg", perm=list(perm))
        return graph.reshape(name, (self.out_c, self.out_h, self.out_w)), (self.out_c, self.out_h, self.out_w)


@register("reorg3d")
class Reorg3d(Reorganize):
    kind = "reorg3d"

    def reorg_call(self):
        return (self.out_w, self.out_h, self.out_c), self.reverse

    def row(self):
        return f"reorg                    /{self.stride:2d} {fmt_shape(self.w, self.h, self.c)} -> {fmt_shape(*self.output_shape)}"
