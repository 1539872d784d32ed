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

    def _affine(self):
        """(scale, shift): the [0, 1] image to [-1, 1], or unchanged with noadjust."""
        return (1.0, 0.0) if self.noadjust else (2.0, -1.0)

    def forward(self, x, net):
        self._crop = self._window(net.train)
        dh, dw, flip = self._crop
        scale, shift = self._affine()
        return net.ops.crop(image_input(self, x), dh, dw, self.crop_height, self.crop_width, flip, scale, shift)

    def backward(self, x, net):
        dh, dw, flip = self._crop
        dy = self.delta.reshape(x.shape[0], self.c, self.out_h, self.out_w)
        return net.ops.crop_backward(dy, dh, dw, flip, self._affine()[0], self.h, self.w).reshape(x.shape)

    # -- ONNX export (onnx_export.py) ---------------------------------------------------------------
    def to_onnx(self, graph):
        dh, dw, _ = self._window(False)
        x = graph.slice(graph.image_input(self), 2, dh, dh + self.crop_height)
        x = graph.slice(x, 3, dw, dw + self.crop_width)
        scale, shift = self._affine()
        out = x if self.noadjust else graph.add(graph.mul(x, np.float32(scale)), np.float32(shift))
        return out, (self.c, self.out_h, self.out_w)
