"""A procedural image set whose ground truth is known pixel by pixel.

Each image holds exactly ONE object whose shape decides the class, drawn at a
random position, scale, rotation and colour over a textured background (smooth
noise, stripes or a gradient), plus distractor clutter (thin lines, small blobs,
partial arcs) that belongs to no class and never touches the object (every
clutter item is rejected if it comes within 2 pixels of the object).

The object's boolean mask is returned with the image, so explanation maps can
be scored against where the evidence really is (e.g. the fraction of a CAM's
mass that falls inside the mask, or a pointing game).

Run time code: numpy + Pillow only. Deterministic: everything is drawn from the
``numpy.random.Generator`` passed in (or seeded from ``seed``), so the same seed
gives bit-identical arrays on every platform.

API::

    CLASSES                                    # tuple of class names, index = label
    make_dataset(n, seed, size=64)             # -> images uint8 (n,H,W,3), labels int64 (n,),
                                               #    masks bool (n,H,W)
    make_image(rng, label, size=64)            # -> image uint8 (H,W,3), mask bool (H,W)
    make_image(rng, label, size, return_spec=True)  # -> image, mask, ObjectSpec
    object_mask(spec, size)                    # redraw the object alone: bool (H,W)

Rendering is hard-edged (no anti-aliasing): the object's pixels are exactly the
mask, and inside the mask every pixel is the object's colour plus a small
per-pixel noise (|noise| <= NOISE_AMPLITUDE, clipped to [0, 255]).
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Tuple

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

__all__ = [
    "CLASSES",
    "NOISE_AMPLITUDE",
    "ObjectSpec",
    "make_dataset",
    "make_image",
    "object_mask",
    "object_polygons",
]

CLASSES: Tuple[str, ...] = (
    "circle",
    "square",
    "triangle",
    "star",
    "cross",
    "ring",
    "diamond",   # a rhombus with axes 1 : 0.55 (so no rotation of a square is a diamond)
    "hexagon",
)

#: Largest absolute per-pixel noise added to the whole image (object included).
NOISE_AMPLITUDE = 6

# Object radius (centre to farthest point) as a fraction of the image size.
_R_MIN, _R_MAX = 0.17, 0.30
# Minimum RGB distance between the object's colour and every background colour.
_MIN_CONTRAST = 110.0
_CLUTTER_MARGIN = 2  # pixels of clearance between clutter and object


@dataclass(frozen=True)
class ObjectSpec:
    """Everything needed to redraw the object: class, centre (x, y) in pixels,
    radius in pixels, rotation in radians and RGB colour."""

    label: int
    cx: float
    cy: float
    radius: float
    angle: float
    color: Tuple[int, int, int]


# ----------------------------------------------------------------------------- geometry

def _regular(n: int, r: float, phase: float = 0.0):
    return [(r * math.cos(phase + 2 * math.pi * i / n), r * math.sin(phase + 2 * math.pi * i / n))
            for i in range(n)]


def _unit_outline(label: int, r: float):
    """Outline(s) of the class's shape centred at 0, before rotation.

    Returns (outer polygons, hole polygons) as lists of point lists; circle and
    ring return None for the caller to draw ellipses."""
    name = CLASSES[label]
    if name == "square":
        h = r / math.sqrt(2.0)
        return [[(-h, -h), (h, -h), (h, h), (-h, h)]]
    if name == "triangle":
        return [_regular(3, r, -math.pi / 2)]
    if name == "star":
        pts = []
        for i in range(10):
            rr = r if i % 2 == 0 else 0.45 * r
            a = -math.pi / 2 + math.pi * i / 5
            pts.append((rr * math.cos(a), rr * math.sin(a)))
        return [pts]
    if name == "cross":
        w = 0.33 * r
        return [[(-w, -r), (w, -r), (w, -w), (r, -w), (r, w), (w, w), (w, r), (-w, r), (-w, w),
                 (-r, w), (-r, -w), (-w, -w)]]
    if name == "diamond":
        return [[(0.0, -r), (0.55 * r, 0.0), (0.0, r), (-0.55 * r, 0.0)]]
    if name == "hexagon":
        return [_regular(6, r)]
    return None  # circle, ring


def object_polygons(spec: ObjectSpec):
    """The object's polygon(s) in image coordinates, or None for circle/ring."""
    outline = _unit_outline(spec.label, spec.radius)
    if outline is None:
        return None
    c, s = math.cos(spec.angle), math.sin(spec.angle)
    return [[(spec.cx + x * c - y * s, spec.cy + x * s + y * c) for x, y in poly]
            for poly in outline]


def _draw_object(draw: ImageDraw.ImageDraw, spec: ObjectSpec, fill) -> None:
    name = CLASSES[spec.label]
    r, cx, cy = spec.radius, spec.cx, spec.cy
    if name in ("circle", "ring"):
        draw.ellipse([cx - r, cy - r, cx + r, cy + r], fill=fill)
        if name == "ring":
            ri = 0.55 * r
            draw.ellipse([cx - ri, cy - ri, cx + ri, cy + ri], fill=0)
        return
    for poly in object_polygons(spec):
        draw.polygon(poly, fill=fill)


def object_mask(spec: ObjectSpec, size: int = 64) -> np.ndarray:
    """Redraw the object alone (no background, no clutter): bool (size, size)."""
    layer = Image.new("L", (size, size), 0)
    _draw_object(ImageDraw.Draw(layer), spec, 255)
    return np.asarray(layer) > 0


# ----------------------------------------------------------------------------- backgrounds

def _random_color(rng: np.random.Generator) -> np.ndarray:
    return rng.integers(0, 256, size=3).astype(np.float64)


def _background(rng: np.random.Generator, size: int):
    """A textured background as a float (H,W,3) image mixing two colours, and the colours."""
    c1 = _random_color(rng)
    # keep the two background colours moderately close so an object colour far from both exists
    c2 = np.clip(c1 + rng.uniform(-90, 90, size=3), 0, 255)
    kind = rng.integers(0, 3)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float64) / size
    if kind == 0:  # smooth noise: a coarse random grid upsampled bilinearly
        g = int(rng.integers(3, 9))
        coarse = (rng.random((g, g)) * 255).astype(np.uint8)
        t = np.asarray(Image.fromarray(coarse).resize((size, size), Image.BILINEAR),
                       dtype=np.float64) / 255.0
    elif kind == 1:  # stripes
        a = rng.uniform(0, math.pi)
        freq = rng.uniform(3, 9)
        phase = rng.uniform(0, 2 * math.pi)
        t = 0.5 + 0.5 * np.sin(2 * math.pi * freq * (xx * math.cos(a) + yy * math.sin(a)) + phase)
        if rng.random() < 0.5:  # hard stripes
            t = (t > 0.5).astype(np.float64)
    else:  # linear gradient
        a = rng.uniform(0, 2 * math.pi)
        p = xx * math.cos(a) + yy * math.sin(a)
        t = (p - p.min()) / max(p.max() - p.min(), 1e-9)
    img = c1[None, None, :] * (1 - t[..., None]) + c2[None, None, :] * t[..., None]
    return img, (c1, c2)


def _dist_to_segment(p: np.ndarray, a: np.ndarray, b: np.ndarray) -> float:
    ab = b - a
    denom = float(ab @ ab)
    u = 0.0 if denom == 0 else float(np.clip((p - a) @ ab / denom, 0.0, 1.0))
    return float(np.linalg.norm(p - (a + u * ab)))


def _object_color(rng: np.random.Generator, bg_colors) -> Tuple[int, int, int]:
    a, b = bg_colors
    best, best_d = None, -1.0
    for _ in range(200):
        col = _random_color(rng)
        d = _dist_to_segment(col, a, b)
        if d >= _MIN_CONTRAST:
            return tuple(int(v) for v in col)
        if d > best_d:
            best, best_d = col, d
    # fallback (rare): the farthest candidate found
    return tuple(int(v) for v in best)


# ----------------------------------------------------------------------------- clutter

def _clutter_layer(rng: np.random.Generator, size: int, width_scale: float):
    """One clutter item drawn on an L layer: returns the layer as bool (H,W)."""
    layer = Image.new("L", (size, size), 0)
    d = ImageDraw.Draw(layer)
    kind = rng.integers(0, 3)
    if kind == 0:  # line
        x0, y0 = rng.uniform(0, size, size=2)
        length = rng.uniform(0.15, 0.45) * size
        a = rng.uniform(0, 2 * math.pi)
        w = int(rng.integers(1, 3) * width_scale)
        d.line([(x0, y0), (x0 + length * math.cos(a), y0 + length * math.sin(a))], fill=255,
               width=max(w, 1))
    elif kind == 1:  # small blob
        x0, y0 = rng.uniform(0, size, size=2)
        rx, ry = rng.uniform(0.02, 0.05, size=2) * size
        d.ellipse([x0 - rx, y0 - ry, x0 + rx, y0 + ry], fill=255)
    else:  # partial arc
        x0, y0 = rng.uniform(0, size, size=2)
        r = rng.uniform(0.06, 0.18) * size
        start = rng.uniform(0, 360)
        extent = rng.uniform(60, 200)
        w = int(rng.integers(1, 3) * width_scale)
        d.arc([x0 - r, y0 - r, x0 + r, y0 + r], start, start + extent, fill=255, width=max(w, 1))
    return np.asarray(layer) > 0


# ----------------------------------------------------------------------------- public API

def _check_size(size) -> int:
    if isinstance(size, bool) or not isinstance(size, (int, np.integer)) or size < 16:
        raise ValueError(f"size must be an int >= 16, got {size!r}")
    return int(size)


def make_image(rng: np.random.Generator, label: int, size: int = 64, return_spec: bool = False):
    """Draw one image of class ``label``.

    Returns ``(image uint8 (size,size,3), mask bool (size,size))``, plus the
    :class:`ObjectSpec` when ``return_spec`` is true (``object_mask(spec, size)``
    equals ``mask``)."""
    size = _check_size(size)
    label = int(label)
    if not 0 <= label < len(CLASSES):
        raise ValueError(f"label must be in [0, {len(CLASSES)}), got {label}")

    bg, bg_colors = _background(rng, size)

    radius = rng.uniform(_R_MIN, _R_MAX) * size
    margin = radius + 2.0  # at least one background pixel between object and border
    cx = rng.uniform(margin, size - margin)
    cy = rng.uniform(margin, size - margin)
    angle = rng.uniform(0, 2 * math.pi)
    color = _object_color(rng, bg_colors)
    spec = ObjectSpec(label, float(cx), float(cy), float(radius), float(angle), color)
    mask = object_mask(spec, size)

    # clutter: keep out of the object's neighbourhood
    k = 2 * _CLUTTER_MARGIN + 1
    keep_out = np.asarray(
        Image.fromarray(mask.astype(np.uint8) * 255).filter(ImageFilter.MaxFilter(k))) > 0
    img = bg
    n_clutter = int(rng.integers(2, 6))
    width_scale = max(size / 64.0, 1.0)
    for _ in range(n_clutter):
        for _attempt in range(10):
            item = _clutter_layer(rng, size, width_scale)
            if item.any() and not (item & keep_out).any():
                break
        else:
            continue
        ccol = _random_color(rng)
        img = np.where(item[..., None], ccol[None, None, :], img)

    img = np.where(mask[..., None], np.asarray(color, dtype=np.float64)[None, None, :], img)
    noise = rng.integers(-NOISE_AMPLITUDE, NOISE_AMPLITUDE + 1, size=img.shape)
    image = np.clip(np.rint(img) + noise, 0, 255).astype(np.uint8)
    if return_spec:
        return image, mask, spec
    return image, mask


def make_dataset(n: int, seed: int, size: int = 64):
    """``n`` images with balanced labels (counts differ by at most one), shuffled.

    Returns ``images uint8 (n,size,size,3), labels int64 (n,), masks bool (n,size,size)``.
    Same ``(n, seed, size)`` → identical arrays."""
    size = _check_size(size)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 0:
        raise ValueError(f"n must be an int >= 0, got {n!r}")
    n = int(n)
    rng = np.random.default_rng(seed)
    labels = rng.permutation(np.arange(n, dtype=np.int64) % len(CLASSES))
    images = np.empty((n, size, size, 3), dtype=np.uint8)
    masks = np.empty((n, size, size), dtype=bool)
    for i in range(n):
        images[i], masks[i] = make_image(rng, int(labels[i]), size)
    return images, labels, masks
