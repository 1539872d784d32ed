"""[crop]: crops (and in training jitters) the input to crop_width x crop_height (darknet parse_crop:
crop_height=1, crop_width=1, flip=0, angle=0, saturation=1, exposure=1, shift=0, noadjust=0)."""
from . import register
from .base import Layer


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

    def row(self):
        return f"Crop Layer: {self.h} x {self.w} -> {self.crop_height} x {self.crop_width} x {self.c} image"
