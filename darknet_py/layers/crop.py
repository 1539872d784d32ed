"""[crop]: crops (and in training jitters) the input to crop_width x crop_height (darknet parse_crop:
crop_height=1, crop_width=1, flip=0, angle=0, saturation=1, exposure=1, shift=0, noadjust=0).

Compute (forward_crop_layer):
- out = in[c, row + dh, col + dw] * 2 - 1 (the [0, 1] image mapped to [-1, 1]); with noadjust=1, * 1 + 0;
- inference: dh = (h - crop_height)/2, dw = (w - crop_width)/2 (integer division), no flip;
- training: dh, dw uniform in [0, h - crop_height] and [0, w - crop_width], and with flip=1 a coin flip mirrors
  the columns (col = w - dw - j - 1); one draw per forward, shared by the whole batch (`self.rng`, settable).
  angle, saturation, exposure and shift are not used by darknet's CPU forward, nor here.
Backward: the gradient of that map (scale * delta at the cropped positions). Known darknet difference:
backward_crop_layer is empty, so darknet sends no gradient through a [crop] layer.
"""
import numpy as np

from . import register
from .base import Layer
from .batchnorm import image_input


@register("crop")
class Crop(Layer):
    kind = "crop"

    def configure(self, s, ctx):
        self.crop_height = s.get_int("crop_height", 1, minimum=1)
        self.crop_width = s.get_int("crop_width", 1, minimum=1)
        if self.crop_height > self.h or self.crop_width > self.w:
            raise s.error("crop_width", f"expected a crop within the {self.w}x{self.h} input; "
                                        f"got {self.crop_width}x{self.crop_height}")
        self.flip = s.get_int("flip", 0)
        self.angle = s.get_float("angle", 0.0)
        self.saturation = s.get_float("saturation", 1.0)
        self.exposure = s.get_float("exposure", 1.0)
        self.noadjust = s.get_int("noadjust", 0)
        self.shift = s.get_float("shift", 0.0)
        self.out_w, self.out_h = self.crop_width, self.crop_height
        self.rng = np.random.default_rng()

    def row(self):
        return f"Crop Layer: {self.h} x {self.w} -> {self.crop_height} x {self.crop_width} x {self.c} image"

    # -- compute ------------------------------------------------------------------------------------
    def _window(self, train):
        """(dh, dw, flip) for this forward, as darknet draws them."""
        if not train:
            return (self.h - self.crop_height) // 2, (self.w - self.crop_width) // 2, False
        flip = bool(self.flip) and bool(self.rng.integers(2))
        dh = int(self.rng.integers(self.h - self.crop_height + 1))
        dw = int(self.rng.integers(self.w - self.crop_width + 1))
        return dh, dw, flip

    def _slices(self):
        dh, dw, flip = self._crop
        rows = slice(dh, dh + self.crop_height)
        if flip:   # output column j reads input column w - dw - 1 - j
            start = self.w - dw - 1
            cols = slice(start, start - self.crop_width if start - self.crop_width >= 0 else None, -1)
        else:
            cols = slice(dw, dw + self.crop_width)
        return rows, cols

    def _affine(self, dtype):
        return (dtype.type(1), dtype.type(0)) if self.noadjust else (dtype.type(2), dtype.type(-1))

    def forward(self, x, net):
        x = image_input(self, x)
        self._crop = self._window(net.train)
        rows, cols = self._slices()
        scale, trans = self._affine(x.dtype)
        return x[:, :, rows, cols] * scale + trans

    def backward(self, x, net):
        xp = net.ops.xp
        dy = self.delta.reshape(x.shape[0], self.c, self.out_h, self.out_w)
        rows, cols = self._slices()
        scale, _ = self._affine(dy.dtype)
        dx = xp.zeros((x.shape[0], self.c, self.h, self.w), dtype=dy.dtype)
        dx[:, :, rows, cols] = dy * scale
        return dx.reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        dh, dw, _ = self._window(False)
        x = graph.slice(graph.image_input(self), 2, dh, dh + self.crop_height)
        x = graph.slice(x, 3, dw, dw + self.crop_width)
        scale, trans = self._affine(np.dtype(np.float32))
        out = x if self.noadjust else graph.add(graph.mul(x, scale), trans)
        return out, (self.c, self.out_h, self.out_w)
