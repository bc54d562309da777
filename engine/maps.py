"""Maps on images: resizing a map, placing it back on the original image after a resize or
centre crop, the jet colour map and the overlay. Run time: numpy + Pillow only.

:func:`overlay` resizes the map to the image's original size and blends it exactly like
pytorch-grad-cam's ``show_cam_on_image``; every resampling uses the one bilinear rule of
:func:`liftcam.engine.tail.interpolation_matrix`.
"""
from __future__ import annotations

from typing import Optional, Tuple

import numpy as np
from PIL import Image

from liftcam.engine.errors import InputError
from liftcam.engine.images import _is_num, to_rgb, validate_preprocessing
from liftcam.engine.tail import interpolation_matrix, upsample_bilinear

__all__ = ["resize_map", "crop_window", "place_map", "colormap_jet", "overlay"]

#: rows of the overlay are blended in float32 blocks of about this many pixels
#: (see images.DEFAULT_MAX_PIXELS for the measured peak memory)
OVERLAY_BLOCK_PIXELS = 1 << 20

# OpenCV's COLORMAP_JET lookup table (256 entries, RGB, uint8), taken from
# cv2.applyColorMap(arange(256), COLORMAP_JET) with BGR swapped to RGB.
_JET_HEX = (
    "00008000008400008800008c00009000009400009800009c0000a00000a40000a80000ac0000b00000b40000b80000bc"
    "0000c00000c40000c80000cc0000d00000d40000d80000dc0000e00000e40000e80000ec0000f00000f40000f80000fc"
    "0000ff0004ff0008ff000cff0010ff0014ff0018ff001cff0020ff0024ff0028ff002cff0030ff0034ff0038ff003cff"
    "0040ff0044ff0048ff004cff0050ff0054ff0058ff005cff0060ff0064ff0068ff006cff0070ff0074ff0078ff007cff"
    "0080ff0084ff0088ff008cff0090ff0094ff0098ff009cff00a0ff00a4ff00a8ff00acff00b0ff00b4ff00b8ff00bcff"
    "00c0ff00c4ff00c8ff00ccff00d0ff00d4ff00d8ff00dcff00e0ff00e4ff00e8ff00ecff00f0ff00f4ff00f8ff00fcff"
    "02fffe06fffa0afff60efff212ffee16ffea1affe61effe222ffde26ffda2affd62effd232ffce36ffca3affc63effc2"
    "42ffbe46ffba4affb64effb252ffae56ffaa5affa65effa262ff9e66ff9a6aff966eff9272ff8e76ff8a7aff867eff82"
    "82ff7e86ff7a8aff768eff7292ff6e96ff6a9aff669eff62a2ff5ea6ff5aaaff56aeff52b2ff4eb6ff4abaff46beff42"
    "c2ff3ec6ff3acaff36ceff32d2ff2ed6ff2adaff26deff22e2ff1ee6ff1aeaff16eeff12f2ff0ef6ff0afaff06feff01"
    "fffc00fff800fff400fff000ffec00ffe800ffe400ffe000ffdc00ffd800ffd400ffd000ffcc00ffc800ffc400ffc000"
    "ffbc00ffb800ffb400ffb000ffac00ffa800ffa400ffa000ff9c00ff9800ff9400ff9000ff8c00ff8800ff8400ff8000"
    "ff7c00ff7800ff7400ff7000ff6c00ff6800ff6400ff6000ff5c00ff5800ff5400ff5000ff4c00ff4800ff4400ff4000"
    "ff3c00ff3800ff3400ff3000ff2c00ff2800ff2400ff2000ff1c00ff1800ff1400ff1000ff0c00ff0800ff0400ff0000"
    "fc0000f80000f40000f00000ec0000e80000e40000e00000dc0000d80000d40000d00000cc0000c80000c40000c00000"
    "bc0000b80000b40000b00000ac0000a80000a40000a000009c00009800009400009000008c0000880000840000800000"
)
_JET_LUT = np.frombuffer(bytes.fromhex("".join(_JET_HEX)), dtype=np.uint8).reshape(256, 3).copy()
_JET_LUT.setflags(write=False)


def _check_map(cam, name="cam") -> np.ndarray:
    a = np.asarray(cam)
    if a.ndim != 2 or a.shape[0] == 0 or a.shape[1] == 0:
        raise InputError(f"{name} must be a non-empty 2-D array (h, w), got shape {a.shape}")
    if not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
            or a.dtype == np.bool_):
        raise InputError(f"{name} must be numeric, got dtype {a.dtype}")
    a = a.astype(np.float32)
    if not np.isfinite(a).all():
        raise InputError(f"{name} holds NaN or Inf")
    return a


def resize_map(cam: np.ndarray, size_hw: Tuple[int, int]) -> np.ndarray:
    """Bilinear resize of a float map to ``(H, W)`` with the one resampling rule of
    :func:`liftcam.engine.tail.interpolation_matrix` (half-pixel centres, edges clamped; equals
    ``cv2.resize(cam, (W, H), interpolation=INTER_LINEAR)``). Returns float32 (H, W)."""
    a = _check_map(cam)
    h, w = int(size_hw[0]), int(size_hw[1])
    if h <= 0 or w <= 0:
        raise InputError(f"target size must be positive, got {size_hw}")
    if a.shape == (h, w):
        return a.copy()
    return upsample_bilinear(a[None], (h, w))[0]


def crop_window(size_wh, preprocessing) -> Optional[tuple]:
    """Where the model's input came from in an original image of ``size_wh`` = (w, h):
    ``((y0, y1), (x0, x1))`` in original pixel units (floats; may extend past the image when
    the crop is larger than the resized image), or None when the input is the whole image
    stretched (plain ``resize``)."""
    p = validate_preprocessing(preprocessing)
    w, h = int(size_wh[0]), int(size_wh[1])
    if p["center_crop"] is None and p["resize_shorter"] is None:
        return None
    if p["resize"] is not None:
        rh, rw = p["resize"]
    elif p["resize_shorter"] is not None:
        s = p["resize_shorter"]
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)
        rw, rh = (s, new_long) if w <= h else (new_long, s)
    else:
        rw, rh = w, h
    ch, cw = p["center_crop"] if p["center_crop"] is not None else (rh, rw)
    # the crop window in resized coordinates: [y0, y0 + ch) x [x0, x0 + cw)
    y0 = int(round((rh - ch) / 2.0)) if ch <= rh else -((ch - rh) // 2)
    x0 = int(round((rw - cw) / 2.0)) if cw <= rw else -((cw - rw) // 2)
    sy, sx = h / rh, w / rw                       # resized -> original pixel units
    return (y0 * sy, (y0 + ch) * sy), (x0 * sx, (x0 + cw) * sx)


def place_map(cam, size_wh, preprocessing) -> np.ndarray:
    """A map over the model input, placed on the original image of ``size_wh`` = (w, h).

    With a plain ``resize`` the map is stretched over the whole image; with
    ``resize_shorter``/``center_crop`` it covers the region of the image the model saw and
    the rest is 0. float32 (h, w) in [0, 1]."""
    cam = _check_map(cam)
    w, h = int(size_wh[0]), int(size_wh[1])
    win = crop_window(size_wh, preprocessing)
    if win is None:
        return np.clip(resize_map(cam, (h, w)), 0.0, 1.0)
    Ry = interpolation_matrix(cam.shape[0], h, np.float32, window=win[0])
    Rx = interpolation_matrix(cam.shape[1], w, np.float32, window=win[1])
    return np.clip(Ry @ cam @ Rx.T, 0.0, 1.0).astype(np.float32)


def colormap_jet(x: np.ndarray) -> np.ndarray:
    """OpenCV's COLORMAP_JET as RGB: float (H, W) in [0, 1] → uint8 (H, W, 3).

    The index is ``uint8(255 * x)`` (truncated, as pytorch-grad-cam does); values
    outside [0, 1] are clipped first and NaN maps to 0."""
    a = np.asarray(x)
    if not np.issubdtype(a.dtype, np.floating):
        a = a.astype(np.float32)
    # computed in the input's float type, so the index equals np.uint8(255 * x) bit for bit
    a = np.clip(np.where(np.isnan(a), a.dtype.type(0), a), 0, 1)
    idx = (a.dtype.type(255) * a).astype(np.uint8)
    return _JET_LUT[idx]


def overlay(image: Image.Image, cam: np.ndarray, alpha: float = 0.5) -> Image.Image:
    """Blend a CAM over an image, like pytorch-grad-cam's ``show_cam_on_image``.

    ``cam`` (float (h, w) in [0, 1]) is resized bilinearly to the image's ORIGINAL
    size, coloured with :func:`colormap_jet`, and blended:
    ``out = alpha * heatmap + (1 - alpha) * img`` (both in [0, 1]), then divided by
    its maximum and stored as ``uint8(255 * out)``. ``alpha`` is the heatmap's weight,
    i.e. ``show_cam_on_image(img, cam, use_rgb=True, image_weight=1 - alpha)``.
    Returns an RGB ``PIL.Image`` of the image's size."""
    if not isinstance(image, Image.Image):
        raise InputError(f"image must be a PIL.Image.Image, got {type(image).__name__}")
    if not _is_num(alpha) or not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must be a number in [0, 1], got {alpha!r}")
    rgb = to_rgb(image)
    w, h = rgb.size
    m = resize_map(cam, (h, w))
    src = np.asarray(rgb)
    image_weight = 1.0 - float(alpha)
    rows = max(1, OVERLAY_BLOCK_PIXELS // w)
    blocks = [(r, min(r + rows, h)) for r in range(0, h, rows)]

    def blend(r0, r1):          # float32, one block of rows: memory stays O(block)
        heat = np.float32(colormap_jet(m[r0:r1])) / 255
        img = np.float32(src[r0:r1]) / 255
        return (1 - image_weight) * heat + image_weight * img

    peak = max(np.max(blend(r0, r1)) for r0, r1 in blocks)
    out = np.empty((h, w, 3), np.uint8)
    for r0, r1 in blocks:
        block = blend(r0, r1)
        if peak > 0:
            block = block / peak
        out[r0:r1] = np.uint8(255 * block)
    return Image.fromarray(out)
