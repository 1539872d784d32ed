"""Darknet's image operations (src/image.c) on float32 arrays laid out as darknet's `image`: (C, H, W), RGB,
values in [0, 1]. Vectorised with NumPy; the arithmetic follows darknet's (float32, its rounding and
coordinate conventions) so that crops, resizes and colour jitter land on the same pixels.

One deliberate difference: darknet's resize_image computes the last output row from a float32 product that
can round just below the last input row, which leaves that row nearly black for ~4% of size pairs; we take the
last input row there, as darknet already does for the last column.
"""
import math

import numpy as np
from PIL import Image, ImageOps

from .errors import DarknetDataError

# Pillow modes holding more than 8 bits of grey: divisor that maps them onto [0, 1].
_HIGH_DEPTH = {"I;16": 65535.0, "I;16B": 65535.0, "I;16L": 65535.0, "I;16N": 65535.0, "I": 65535.0, "F": 1.0}


def load_image(path, channels=3):
    """Decode `path` into float32 (channels, H, W) RGB (or grey for channels=1) in [0, 1].

    As darknet's OpenCV loader (IMREAD_COLOR / IMREAD_GRAYSCALE): the EXIF orientation is applied, alpha is
    dropped (not composited), palettes are expanded, grey images are replicated to RGB, colour images become
    grey with the ITU-R 601 weights for channels=1. 16-bit grey keeps its precision (/65535).
    Unreadable, truncated or corrupt files raise DarknetDataError naming the path."""
    if channels not in (1, 3):
        raise DarknetDataError(f"{path}: images load with 1 or 3 channels; the network asks for {channels}")
    try:
        with Image.open(path) as opened:
            image = ImageOps.exif_transpose(opened)   # decodes the whole file: truncation shows up here
            return _to_chw(image, channels)
    except Exception as e:   # Pillow reports bad files with many exception types (OSError, SyntaxError, ...)
        raise DarknetDataError(f"{path}: cannot read image: {e or type(e).__name__}") from None


def _to_chw(image, channels):
    if image.mode in _HIGH_DEPTH:
        grey = np.clip(np.asarray(image, dtype=np.float32) / np.float32(_HIGH_DEPTH[image.mode]), 0, 1)
        return np.repeat(grey[None], channels, axis=0)
    pixels = np.asarray(image.convert("L" if channels == 1 else "RGB"))
    pixels = pixels[None] if channels == 1 else pixels.transpose(2, 0, 1)
    return np.divide(pixels, 255, dtype=np.float32)


# -- geometry --------------------------------------------------------------------------------------------
def resize_image(im, w, h):
    """darknet's resize_image: separable bilinear with corners aligned (scale (in-1)/(out-1)), no
    anti-aliasing; a copy when the size is unchanged."""
    if im.shape[1:] == (h, w):
        return im.copy()
    return _resize_axis(_resize_axis(im, w, axis=2), h, axis=1)


def _resize_axis(im, size, axis):
    n = im.shape[axis]
    if n == size:
        return im
    scale = np.float32(n - 1) / np.float32(size - 1) if size > 1 else np.float32(0)
    position = np.arange(size, dtype=np.float32) * scale
    low = position.astype(np.int64)
    frac = position - np.trunc(position)   # float32, as darknet's `sx - ix`
    low[-1], frac[-1] = n - 1, 0   # the last output pixel is the last input pixel
    high = np.minimum(low + 1, n - 1)
    shape = [1, 1, 1]
    shape[axis] = size
    frac = frac.reshape(shape)
    return (1 - frac) * np.take(im, low, axis=axis) + frac * np.take(im, high, axis=axis)


def resize_min(im, size):
    """darknet's resize_min: the shorter side becomes `size` (integer arithmetic); the same array when the
    size does not change."""
    _, h, w = im.shape
    if w < h:
        h, w = (h * size) // w, size
    else:
        w, h = (w * size) // h, size
    return im if (h, w) == im.shape[1:] else resize_image(im, w, h)


def crop_image(im, dx, dy, w, h):
    """darknet's crop_image: a w x h window at (dx, dy); coordinates outside the image repeat the edge."""
    _, height, width = im.shape
    rows = np.clip(np.arange(h) + dy, 0, height - 1)
    cols = np.clip(np.arange(w) + dx, 0, width - 1)
    return im[:, rows][:, :, cols]


def center_crop_input(im, w, h):
    """What darknet's classifier predict/valid feed the network: resize_min(im, w), then a centred w x h crop
    (C integer division for the offsets)."""
    resized = resize_min(im, w)
    _, rh, rw = resized.shape
    return crop_image(resized, int((rw - w) / 2), int((rh - h) / 2), w, h)


def crop_coordinates(im_w, im_h, rad, scale, w, h, dx, dy, aspect):
    """Source coordinates (rx, ry), each (h, w), that darknet's rotate_crop_image samples for output pixel
    (x, y): a rotation by `rad` about the image centre, a zoom by `scale` (x stretched by `aspect`), and a shift
    (dx, dy) in output pixels."""
    u = ((np.arange(w) - w / 2.0) / scale * aspect + dx / scale * aspect)[None, :]   # double, as darknet
    v = ((np.arange(h) - h / 2.0) / scale + dy / scale)[:, None]
    cos, sin = math.cos(rad), math.sin(rad)
    rx = (cos * u - sin * v + im_w / 2.0).astype(np.float32)
    ry = (sin * u + cos * v + im_h / 2.0).astype(np.float32)
    return rx, ry


def rotate_crop_image(im, rad, scale, w, h, dx, dy, aspect):
    """darknet's rotate_crop_image: bilinear samples at crop_coordinates, zero outside the image."""
    _, height, width = im.shape
    rx, ry = crop_coordinates(width, height, rad, scale, w, h, dx, dy, aspect)
    return bilinear_sample(im, rx, ry)


def bilinear_sample(im, rx, ry):
    """darknet's bilinear_interpolate at every (rx, ry): the four neighbours floor/floor+1, zero outside."""
    channels, height, width = im.shape
    flat = im.reshape(channels, -1)
    x0, y0 = np.floor(rx), np.floor(ry)
    fx, fy = rx - x0, ry - y0
    x0, y0 = x0.astype(np.int64), y0.astype(np.int64)
    out = np.zeros((channels,) + rx.shape, dtype=np.float32)
    for yi, wy in ((y0, 1 - fy), (y0 + 1, fy)):
        y_inside = (yi >= 0) & (yi < height)
        row = np.clip(yi, 0, height - 1) * width
        for xi, wx in ((x0, 1 - fx), (x0 + 1, fx)):
            weight = wy * wx * (y_inside & (xi >= 0) & (xi < width))
            out += np.take(flat, row + np.clip(xi, 0, width - 1), axis=1) * weight
    return out


def flip_image(im):
    """darknet's flip_image: a left-right mirror (returned as a new array)."""
    return im[:, :, ::-1].copy()


# -- colour ----------------------------------------------------------------------------------------------
def rgb_to_hsv(im):
    """darknet's rgb_to_hsv on a (3, H, W) array: H in [0, 1) (sixths of the circle), S, V in [0, 1]."""
    r, g, b = im[0], im[1], im[2]
    high = np.maximum(np.maximum(r, g), b)
    delta = high - np.minimum(np.minimum(r, g), b)
    with np.errstate(divide="ignore", invalid="ignore"):
        s = np.where(high == 0, 0, delta / high)
        hue = np.where(r == high, (g - b) / delta, np.where(g == high, 2 + (b - r) / delta, 4 + (r - g) / delta))
    hue = np.where(delta == 0, 0, hue)   # grey: darknet divides 0 by 0 here, harmless since S is 0
    hue = np.where(hue < 0, hue + 6, hue) / 6
    return np.stack([hue, s, high]).astype(np.float32)


def hsv_to_rgb(hsv):
    """darknet's hsv_to_rgb (the sector from floor(6 H), sector 6 and above as sector 5)."""
    hue, s, v = hsv[0] * 6, hsv[1], hsv[2]
    sector = np.floor(hue)
    f = hue - sector
    p, q, t = v * (1 - s), v * (1 - s * f), v * (1 - s * (1 - f))
    choices = [(v, t, p), (q, v, p), (p, v, t), (p, q, v), (t, p, v)]
    conditions = [sector == k for k in range(5)]
    rgb = [np.select(conditions, [c[i] for c in choices], default=(v, p, q)[i]) for i in range(3)]
    grey = s == 0
    return np.stack([np.where(grey, v, channel) for channel in rgb]).astype(np.float32)


def distort_image(im, hue, saturation, exposure):
    """darknet's distort_image: in HSV, S *= saturation, V *= exposure, H += hue (wrapped), then back to RGB
    and clipped to [0, 1]. Grey images (one channel) only scale by exposure."""
    if im.shape[0] < 3:
        return np.clip(im * np.float32(exposure), 0, 1)
    hsv = rgb_to_hsv(im)
    hsv[1] *= np.float32(saturation)
    hsv[2] *= np.float32(exposure)
    h = hsv[0] + np.float32(hue)
    hsv[0] = np.where(h > 1, h - 1, np.where(h < 0, h + 1, h))
    return np.clip(hsv_to_rgb(hsv), 0, 1)


# -- blur (darknet's classifier `blur` option: OpenCV GaussianBlur) ----------------------------------------
_SMALL_GAUSSIANS = {1: [1.0], 3: [0.25, 0.5, 0.25], 5: [0.0625, 0.25, 0.375, 0.25, 0.0625],
                    7: [0.03125, 0.109375, 0.21875, 0.28125, 0.21875, 0.109375, 0.03125]}


def gaussian_kernel(ksize):
    """OpenCV's getGaussianKernel(ksize, sigma=0): its fixed table up to 7, else sigma from ksize."""
    if ksize in _SMALL_GAUSSIANS:
        return np.array(_SMALL_GAUSSIANS[ksize], dtype=np.float64)
    sigma = 0.3 * ((ksize - 1) * 0.5 - 1) + 0.8
    x = np.arange(ksize) - (ksize - 1) / 2
    kernel = np.exp(-x * x / (2 * sigma * sigma))
    return kernel / kernel.sum()


def gaussian_blur(im, ksize):
    """cv2.GaussianBlur(im, (ksize, ksize), 0) per channel, borders reflected without repeating the edge."""
    kernel = gaussian_kernel(ksize).astype(np.float32)
    r = ksize // 2
    out = im
    for axis in (2, 1):
        pad = [(0, 0)] * 3
        pad[axis] = (r, r)
        padded = np.pad(out, pad, mode="reflect")
        n = out.shape[axis]
        taps = (padded[:, i:i + n] if axis == 1 else padded[:, :, i:i + n] for i in range(ksize))
        out = sum(k * tap for k, tap in zip(kernel, taps))
    return out.astype(np.float32)
