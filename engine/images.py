"""Images in and overlays out. Run time: numpy + Pillow only.

Loading
-------
:func:`load_image` (a file) and :func:`decode_image` (bytes in memory) read JPEG, PNG, WebP,
TIFF, BMP (and whatever else Pillow decodes, e.g. GIF: the first frame) and always return an
8-bit ``RGB`` ``PIL.Image``:

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
:class:`liftcam.engine.errors.InputError` naming the file and what was wrong; too many pixels
(``max_pixels``, or the bomb guard) its subclass ``ImageTooLargeError``.

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
from typing import Sequence, Tuple

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from liftcam.engine.errors import ImageTooLargeError, InputError

__all__ = [
    "load_image",
    "decode_image",
    "to_rgb",
    "preprocess",
    "validate_preprocessing",
    "PREPROCESSING_KEYS",
]

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
#: 8000 x 5000. The overlay is blended in float32 blocks of OVERLAY_BLOCK_PIXELS rows, so the
#: full-size arrays are uint8 or one float32 map. Measured on an 8000 x 5000 image (2 cores,
#: place_map + overlay + PNG encoding, the pipeline's path; tests/test_hostile.py holds a
#: bound): peak RSS +0.59 GB over the decoded image, 0.9 GB for the process (it was +2.15 GB
#: with full-size float copies), 10 s.
DEFAULT_MAX_PIXELS = 40_000_000
#: the largest side a bundle's preprocessing may ask for (resize, resize_shorter,
#: center_crop), and the most pixels an image may be resized to
MAX_SIDE = 8192
MAX_RESIZED_PIXELS = MAX_SIDE * MAX_SIDE


def load_image(path, background=(0, 0, 0), max_pixels=DEFAULT_MAX_PIXELS) -> Image.Image:
    """Read an image file as an 8-bit RGB ``PIL.Image`` with EXIF orientation applied.

    Transparent images are composited over ``background`` (black by default). Images with
    more than ``max_pixels`` pixels (None: no cap but Pillow's bomb guard) are refused from
    their header, before decoding (:class:`ImageTooLargeError`). Raises :class:`InputError`
    naming the file for anything unreadable."""
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
    return _decode(p, size, what, background, max_pixels)


def decode_image(data, name: str = "image data", background=(0, 0, 0),
                 max_pixels=DEFAULT_MAX_PIXELS) -> Image.Image:
    """:func:`load_image` for an encoded image held in memory (``bytes``, e.g. an upload):
    the same decoding, conversions and checks; errors name ``name``."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise InputError(f"image data must be bytes, got {type(data).__name__}")
    return _decode(io.BytesIO(data), len(data), name, background, max_pixels)


def _decode(source, size: int, what: str, background, max_pixels) -> Image.Image:
    """The decoding and checks :func:`load_image` and :func:`decode_image` share."""
    if size == 0:
        raise InputError(f"{what} is empty (0 bytes)")
    try:
        with Image.open(source) as im:
            if max_pixels is not None and im.width * im.height > max_pixels:
                raise ImageTooLargeError(
                    f"has {im.width}x{im.height} = {im.width * im.height:,} pixels, over the "
                    f"limit of {max_pixels:,} (max_pixels, --max-pixels); downscale it or "
                    "raise the limit")
            im.load()  # Pillow decodes lazily: force the decode (and its errors) here
            im = ImageOps.exif_transpose(im)
            im.load()
            rgb = to_rgb(im, background)
            rgb.load()
    except InputError as e:
        raise type(e)(f"{what}: {e}") from e
    except Image.DecompressionBombError as e:
        raise ImageTooLargeError(
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
    if max(v) > MAX_SIDE:
        raise InputError(f"preprocessing[{key!r}] {list(v)} is over the limit of {MAX_SIDE} "
                         "pixels a side")
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
        if not _is_int(s) or s <= 0 or s > MAX_SIDE:
            raise InputError(f"preprocessing['resize_shorter'] must be an int in 1..{MAX_SIDE}, "
                             f"got {s!r}")
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


def preprocess(images: Sequence[Image.Image], preprocessing: dict,
               layout: str = "NCHW") -> np.ndarray:
    """Resize / crop / scale / normalise images into a ``float32 (N, 3, H, W)`` array, or
    ``(N, H, W, 3)`` with ``layout="NHWC"`` (a bundle's ``layout``).

    ``images``: a non-empty list of PIL images (non-RGB modes are converted with
    :func:`to_rgb`). ``preprocessing``: see the module docstring."""
    if layout not in ("NCHW", "NHWC"):
        raise InputError(f"layout must be 'NCHW' or 'NHWC', got {layout!r}")
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
            if new_short * new_long > MAX_RESIZED_PIXELS:
                raise InputError(f"images[{i}] ({w}x{h}) would be resized to {new_short}x"
                                 f"{new_long}, over {MAX_RESIZED_PIXELS:,} pixels; its aspect "
                                 "ratio is too extreme for resize_shorter")
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
    if layout == "NHWC":
        return np.ascontiguousarray(batch, dtype=np.float32)
    return np.ascontiguousarray(batch.transpose(0, 3, 1, 2), dtype=np.float32)
