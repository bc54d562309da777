"""Images in and overlays out. Run time: numpy + Pillow only.

Loading
-------
:func:`load_image` (a file; :func:`load_image_bytes`: the same from memory) reads JPEG,
PNG, WebP, TIFF, BMP (and whatever else Pillow decodes, e.g. GIF: the first frame) and always
returns an 8-bit ``RGB`` ``PIL.Image``:

- the EXIF ``Orientation`` tag is applied (``PIL.ImageOps.exif_transpose``);
- ``L``/``1``/``P``/``CMYK``/``YCbCr``/... are converted with Pillow's ``convert("RGB")``;
- images with transparency (``RGBA``, ``LA``, ``PA``, ``P`` with a transparency
  entry, premultiplied ``RGBa``/``La``) are alpha-composited over a solid
  background, **black** by default (``background=(0, 0, 0)``; pass
  ``(255, 255, 255)`` for white). Over black this equals ``rgb * alpha / 255``;
- 16-bit grayscale (``I;16``, ``I;16B``, ``I;16L``, ``I;16N``) and 32-bit ``I``
  images are taken to hold 16-bit values (0..65535; ``I`` is clipped to that
  range) and scaled to 8 bits with rounding: ``round(v / 257)``, so 65535 → 255;
- ``F`` (32-bit float) images: values in [0, 1] when their maximum is ≤ 1,
  otherwise in [0, 255]; clipped, NaN → 0.

Every failure (missing, zero-byte, not an image, corrupt, truncated, a
decompression bomb beyond ``PIL.Image.MAX_IMAGE_PIXELS`` (Pillow's error
threshold, twice that value), an unsupported mode) raises
:class:`liftcam.engine.errors.InputError` naming the file and what was wrong.

Preprocessing
-------------
:func:`preprocess` turns a list of images into one ``float32 (N, 3, H, W)`` array.
The ``preprocessing`` dict (as stored in a bundle's manifest) may hold:

``resize``: ``[H, W]``
    resize every image to exactly H×W (aspect ratio not kept).
``resize_shorter``: ``S``
    resize so the shorter side is S, keeping the aspect ratio; the longer side is
    ``int(S * long / short)`` (torchvision's ``Resize(S)``). Not with ``resize``.
``center_crop``: ``[H, W]``
    after resizing, cut the centre H×W (top = ``round((h - H) / 2)``, left likewise;
    an image smaller than the crop is zero-padded first, as torchvision's ``CenterCrop``).
``resize_mode``: ``"bilinear"`` (default), ``"nearest"``, ``"bicubic"``, ``"lanczos"``,
    ``"box"`` or ``"hamming"``: Pillow's resampling filter (Pillow antialiases when
    shrinking, as torchvision does on PIL images).
``scale``: number > 0, default ``255.0``: pixels are divided by it first.
``mean``, ``std``: three numbers each, defaults ``[0, 0, 0]`` and ``[1, 1, 1]`` (std > 0):
    ``x[c] = (pixel[c] / scale - mean[c]) / std[c]``. They are listed in the order of
    the OUTPUT channels (so for ``"BGR"`` give them in B, G, R order).
``channel_order``: ``"RGB"`` (default) or ``"BGR"``.

Without ``resize``/``resize_shorter``+``center_crop`` every image must already have
the same size. Unknown keys or bad values raise ``InputError``.

Overlays
--------
:func:`colormap_jet` is OpenCV's ``COLORMAP_JET`` (its exact 256-entry table, as RGB)
applied to ``uint8(255 * x)``; :func:`overlay` blends the map over the image at the
image's original size exactly like pytorch-grad-cam's ``show_cam_on_image``.

Atomic file writers live in :mod:`liftcam.engine.atomic`.
"""
from __future__ import annotations

import io
import os
from numbers import Real
from pathlib import Path
from typing import Optional, Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from liftcam.engine.errors import InputError
from liftcam.engine.tail import interpolation_matrix, upsample_bilinear

__all__ = [
    "load_image",
    "load_image_bytes",
    "to_rgb",
    "preprocess",
    "validate_preprocessing",
    "PREPROCESSING_KEYS",
    "resize_map",
    "colormap_jet",
    "overlay",
]

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


# ----------------------------------------------------------------------------- loading

_ALPHA_MODES = ("RGBA", "LA", "PA", "RGBa", "La")
_I16_MODES = ("I;16", "I;16B", "I;16L", "I;16N", "I;16S")


def _check_background(background) -> Tuple[int, int, int]:
    try:
        bg = tuple(int(v) for v in background)
    except TypeError:
        raise InputError(f"background must be three ints in 0..255, got {background!r}") from None
    if len(bg) != 3 or any(not 0 <= v <= 255 for v in bg):
        raise InputError(f"background must be three ints in 0..255, got {background!r}")
    return bg


def to_rgb(img: Image.Image, background=(0, 0, 0)) -> Image.Image:
    """Convert a loaded PIL image of any mode to 8-bit RGB (rules in the module docstring).

    Does not apply EXIF orientation (:func:`load_image` does)."""
    if not isinstance(img, Image.Image):
        raise InputError(f"expected a PIL.Image.Image, got {type(img).__name__}")
    bg = _check_background(background)
    mode = img.mode
    if mode == "RGB":
        return img
    if mode in _I16_MODES or mode == "I":
        a = np.asarray(img).astype(np.int64)
        a = np.clip(a, 0, 65535)
        a8 = ((a * 2 + 257) // 514).astype(np.uint8)  # round(v / 257), halves up
        return Image.fromarray(a8).convert("RGB")
    if mode == "F":
        a = np.asarray(img, dtype=np.float64)
        a = np.where(np.isfinite(a), a, 0.0)
        if a.size and a.max() <= 1.0:
            a = a * 255.0
        a8 = np.clip(np.rint(a), 0, 255).astype(np.uint8)
        return Image.fromarray(a8).convert("RGB")
    if mode == "P" and "transparency" in img.info:
        img, mode = img.convert("RGBA"), "RGBA"
    if mode in _ALPHA_MODES:
        rgba = img.convert("RGBA")
        base = Image.new("RGBA", rgba.size, bg + (255,))
        return Image.alpha_composite(base, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except (ValueError, OSError) as e:
        raise InputError(f"cannot convert an image of mode {mode!r} to RGB: {e}") from e


#: default cap on the pixels of one input image (``max_pixels``, ``--max-pixels``): about
#: 8000 x 5000. Decoding, preprocessing and the full-size overlay of an image cost about
#: 40 bytes per pixel, so this bounds one image's memory to ~1.6 GB.
DEFAULT_MAX_PIXELS = 40_000_000


def load_image(path, background=(0, 0, 0), max_pixels=DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image file as an 8-bit RGB ``PIL.Image`` with EXIF orientation applied.

    Transparent images are composited over ``background`` (black by default). Images with
    more than ``max_pixels`` pixels (None: no cap but Pillow's bomb guard) are refused from
    their header, before decoding. Raises :class:`InputError` naming the file for anything
    unreadable."""
    try:
        p = Path(os.fspath(path))
    except TypeError:
        raise InputError(f"image path must be a str or os.PathLike, "
                         f"got {type(path).__name__}") from None
    what = f"image file {str(p)!r}"
    if not p.exists():
        raise InputError(f"{what} does not exist")
    if not p.is_file():
        raise InputError(f"image path {str(p)!r} is not a regular file")
    try:
        size = p.stat().st_size
    except OSError as e:
        raise InputError(f"cannot read {what}: {e}") from e
    if size == 0:
        raise InputError(f"{what} is empty (0 bytes)")
    return _decode(p, what, background, max_pixels)


def load_image_bytes(data, background=(0, 0, 0), max_pixels=DEFAULT_MAX_PIXELS,
                     name=None) -> Image.Image:
    """:func:`load_image` for an encoded image held in memory (``bytes``, ``bytearray`` or
    ``memoryview``: a PNG/JPEG/... file's contents). Same decoding, checks and errors; ``name``
    (e.g. where the bytes came from) is used in messages."""
    what = f"image {name!r}" if name is not None else "image bytes"
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) == 0:
        raise InputError(f"{what} is empty (0 bytes)")
    return _decode(io.BytesIO(bytes(data)), what, background, max_pixels)


def _decode(src, what: str, background, max_pixels) -> Image.Image:
    """Decode ``src`` (a path or a binary file object) to RGB; every failure becomes an
    InputError starting with ``what`` (e.g. "image file 'x.png'")."""
    try:
        with Image.open(src) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise InputError(f"has {im.width}x{im.height} = {im.width * im.height:,} "
                                 f"pixels, over the limit of {max_pixels:,} (max_pixels, "
                                 "--max-pixels); downscale it or raise the limit")
            im.load()  # Pillow decodes lazily: force the decode (and its errors) here
            im = ImageOps.exif_transpose(im)
            im.load()
            rgb = to_rgb(im, background)
            rgb.load()
    except InputError as e:
        raise InputError(f"{what}: {e}") from e
    except Image.DecompressionBombError as e:
        raise InputError(
            f"{what} is too large to decode safely (decompression bomb guard, "
            f"PIL.Image.MAX_IMAGE_PIXELS={Image.MAX_IMAGE_PIXELS}): {e}") from e
    except UnidentifiedImageError as e:
        raise InputError(f"{what} is not an image Pillow can identify "
                         f"(unknown format or not an image)") from e
    except PermissionError as e:
        raise InputError(f"{what} cannot be read: {e}") from e
    except (OSError, SyntaxError, ValueError, EOFError, IndexError, KeyError, TypeError,
            MemoryError, RuntimeError) as e:
        msg = str(e) or type(e).__name__
        if "truncated" in msg.lower():
            raise InputError(f"{what} is truncated: {msg}") from e
        raise InputError(f"{what} is corrupt or unreadable: {msg}") from e
    return rgb


# ----------------------------------------------------------------------------- preprocessing

PREPROCESSING_KEYS = ("resize", "resize_shorter", "center_crop", "resize_mode", "scale",
                      "mean", "std", "channel_order")
_RESAMPLE = {
    "nearest": Image.NEAREST,
    "bilinear": Image.BILINEAR,
    "bicubic": Image.BICUBIC,
    "lanczos": Image.LANCZOS,
    "box": Image.BOX,
    "hamming": Image.HAMMING,
}


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _is_num(v) -> bool:
    return isinstance(v, (Real, np.floating, np.integer)) and not isinstance(v, (bool, np.bool_))


def _hw(key, v):
    if not isinstance(v, (list, tuple)) or len(v) != 2 or not all(_is_int(x) and x > 0 for x in v):
        hint = " (for the shorter side use resize_shorter)" if _is_int(v) else ""
        raise InputError(f"preprocessing[{key!r}] must be [H, W] with positive ints, "
                         f"got {v!r}{hint}")
    return int(v[0]), int(v[1])


def _triple(key, v, positive=False):
    if (not isinstance(v, (list, tuple, np.ndarray)) or len(v) != 3
            or not all(_is_num(x) and np.isfinite(x) for x in v)):
        raise InputError(f"preprocessing[{key!r}] must be three finite numbers, got {v!r}")
    if positive and not all(x > 0 for x in v):
        raise InputError(f"preprocessing[{key!r}] must be > 0, got {v!r}")
    return tuple(float(x) for x in v)


def validate_preprocessing(preprocessing) -> dict:
    """Check a preprocessing dict and return it normalised (defaults filled in).

    Raises InputError on unknown keys or bad values."""
    if not isinstance(preprocessing, dict):
        raise InputError(f"preprocessing must be a dict, got {type(preprocessing).__name__}")
    unknown = sorted(set(preprocessing) - set(PREPROCESSING_KEYS))
    if unknown:
        raise InputError(f"unknown preprocessing key(s) {unknown}; "
                         f"known keys: {list(PREPROCESSING_KEYS)}")
    p = preprocessing
    out = {"resize": None, "resize_shorter": None, "center_crop": None}
    if p.get("resize") is not None and p.get("resize_shorter") is not None:
        raise InputError("preprocessing: give either 'resize' or 'resize_shorter', not both")
    if p.get("resize") is not None:
        out["resize"] = _hw("resize", p["resize"])
    if p.get("resize_shorter") is not None:
        s = p["resize_shorter"]
        if not _is_int(s) or s <= 0:
            raise InputError(f"preprocessing['resize_shorter'] must be a positive int, got {s!r}")
        out["resize_shorter"] = int(s)
    if p.get("center_crop") is not None:
        out["center_crop"] = _hw("center_crop", p["center_crop"])
    mode = p.get("resize_mode", "bilinear")
    if mode not in _RESAMPLE:
        raise InputError(f"preprocessing['resize_mode'] must be one of {list(_RESAMPLE)}, "
                         f"got {mode!r}")
    out["resize_mode"] = mode
    scale = p.get("scale", 255.0)
    if not _is_num(scale) or not np.isfinite(scale) or scale <= 0:
        raise InputError(f"preprocessing['scale'] must be a finite number > 0, got {scale!r}")
    out["scale"] = float(scale)
    out["mean"] = _triple("mean", p.get("mean", (0.0, 0.0, 0.0)))
    out["std"] = _triple("std", p.get("std", (1.0, 1.0, 1.0)), positive=True)
    order = p.get("channel_order", "RGB")
    if order not in ("RGB", "BGR"):
        raise InputError(f"preprocessing['channel_order'] must be 'RGB' or 'BGR', got {order!r}")
    out["channel_order"] = order
    return out


def _center_crop(a: np.ndarray, ch: int, cw: int) -> np.ndarray:
    """torchvision CenterCrop on an (h, w, 3) uint8 array: zero-pad if smaller, then crop."""
    h, w = a.shape[:2]
    if ch > h or cw > w:
        pt, pl = (ch - h) // 2 if ch > h else 0, (cw - w) // 2 if cw > w else 0
        pb, pr = (ch - h + 1) // 2 if ch > h else 0, (cw - w + 1) // 2 if cw > w else 0
        a = np.pad(a, ((pt, pb), (pl, pr), (0, 0)))
        h, w = a.shape[:2]
    top = int(round((h - ch) / 2.0))
    left = int(round((w - cw) / 2.0))
    return a[top:top + ch, left:left + cw]


def preprocess(images: Sequence[Image.Image], preprocessing: dict) -> np.ndarray:
    """Resize / crop / scale / normalise images into a ``float32 (N, 3, H, W)`` array.

    ``images``: a non-empty list of PIL images (non-RGB modes are converted with
    :func:`to_rgb`). ``preprocessing``: see the module docstring."""
    p = validate_preprocessing(preprocessing)
    if isinstance(images, Image.Image):
        images = [images]
    if not isinstance(images, (list, tuple)):
        raise InputError(f"images must be a list of PIL images, got {type(images).__name__}")
    if len(images) == 0:
        raise InputError("images is empty: need at least one image")
    resample = _RESAMPLE[p["resize_mode"]]
    arrays = []
    for i, img in enumerate(images):
        if not isinstance(img, Image.Image):
            raise InputError(f"images[{i}] is a {type(img).__name__}, not a PIL.Image.Image")
        if img.width == 0 or img.height == 0:
            raise InputError(f"images[{i}] has zero size {img.size}")
        img = to_rgb(img)
        if p["resize"] is not None:
            h, w = p["resize"]
            if img.size != (w, h):
                img = img.resize((w, h), resample)
        elif p["resize_shorter"] is not None:
            s = p["resize_shorter"]
            w, h = img.size
            short, long = (w, h) if w <= h else (h, w)
            new_short, new_long = s, int(s * long / short)
            nw, nh = (new_short, new_long) if w <= h else (new_long, new_short)
            if (nw, nh) != (w, h):
                img = img.resize((nw, nh), resample)
        a = np.asarray(img, dtype=np.uint8)
        if p["center_crop"] is not None:
            a = _center_crop(a, *p["center_crop"])
        arrays.append(a)
    shapes = {a.shape for a in arrays}
    if len(shapes) != 1:
        raise InputError(f"images have different sizes {sorted(s[:2] for s in shapes)} and the "
                         f"preprocessing has no resize/center_crop to make them equal")
    batch = np.stack(arrays).astype(np.float32)              # (N, H, W, 3)
    if p["channel_order"] == "BGR":
        batch = batch[..., ::-1]
    mean = np.asarray(p["mean"], dtype=np.float32)
    std = np.asarray(p["std"], dtype=np.float32)
    batch = (batch / np.float32(p["scale"]) - mean) / std
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)


# ----------------------------------------------------------------------------- maps and overlays

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
    heat = np.float32(colormap_jet(m)) / 255
    img = np.float32(np.asarray(rgb)) / 255
    image_weight = 1.0 - float(alpha)
    out = (1 - image_weight) * heat + image_weight * img
    peak = np.max(out)
    if peak > 0:
        out = out / peak
    return Image.fromarray(np.uint8(255 * out))
