"""Input validation shared by the metric families: each check raises
:class:`liftcam.engine.errors.InputError` with a message that says what was wrong."""
from __future__ import annotations

import numbers

import numpy as np

from liftcam.engine.errors import InputError


def _check_int(name: str, value, minimum: int = 1) -> int:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise InputError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise InputError(f"{name} must be an integer >= {minimum}, got {value}")
    return int(value)


def _check_float_array(name: str, a, ndim: int, layout: str) -> np.ndarray:
    if not isinstance(a, np.ndarray):
        try:
            a = np.asarray(a)
        except Exception as exc:  # ragged lists etc.
            raise InputError(f"{name} must be an array {layout}: {exc}") from None
    real = np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)
    if a.dtype == bool or not real:
        raise InputError(f"{name} must hold real numbers (float), got dtype {a.dtype}")
    if a.ndim != ndim:
        hint = " (for one item, add a leading axis: x[None])" if a.ndim == ndim - 1 else ""
        raise InputError(f"{name} must have shape {layout}, got shape {a.shape}{hint}")
    if a.shape[0] == 0:
        raise InputError(f"{name} is an empty batch (shape {a.shape}); pass at least one item")
    if a.size == 0:
        raise InputError(f"{name} has a zero-sized axis (shape {a.shape})")
    if not np.isfinite(a).all():
        bad = np.unique(np.nonzero(~np.isfinite(a))[0])
        raise InputError(f"{name} holds NaN or Inf (items {bad[:10].tolist()})")
    return a


def _check_images(images) -> np.ndarray:
    images = _check_float_array("images", images, 4, "(N, C, H, W)")
    if not np.issubdtype(images.dtype, np.floating):
        raise InputError(
            "images must be a floating array (normalised tensors), "
            f"got dtype {images.dtype}")
    return images


def _check_maps(maps, shape_nhw, *, unit_range: bool, nonnegative: bool = False,
                name="maps") -> np.ndarray:
    m = maps if isinstance(maps, np.ndarray) else np.asarray(maps)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    m = _check_float_array(name, m, 3, "(N, H, W)")
    if shape_nhw is not None and m.shape != tuple(shape_nhw):
        raise InputError(
            f"{name} must have shape (N, H, W) = {tuple(shape_nhw)} to match the images, "
            f"got {m.shape}")
    m = m.astype(np.float64, copy=False)
    if unit_range:
        # float32 min-max normalisation may overshoot by an ulp: tolerate 1e-6, then clip
        if m.min() < -1e-6 or m.max() > 1.0 + 1e-6:
            raise InputError(
                f"{name} must lie in [0, 1] (got min {m.min():.6g}, max {m.max():.6g}); "
                "min-max normalise them first"
            )
        m = np.clip(m, 0.0, 1.0)
    if nonnegative and m.min() < 0.0:
        raise InputError(f"{name} must be non-negative (got min {m.min():.6g})")
    return m


def _check_targets(targets, n: int) -> np.ndarray:
    if isinstance(targets, (bool, np.bool_)):
        raise InputError(f"targets must be integer class indices, got {targets!r}")
    t = np.asarray(targets)
    if t.dtype == bool or not np.issubdtype(t.dtype, np.integer):
        raise InputError(f"targets must be integer class indices, got dtype {t.dtype}")
    if t.ndim == 0:
        t = np.full(n, int(t), dtype=np.int64)
    if t.shape != (n,):
        raise InputError(
            f"targets must have shape (N,) = ({n},) or be one int, got shape {t.shape}")
    if (t < 0).any():
        raise InputError(f"targets must be >= 0, got {t[t < 0][:10].tolist()}")
    return t.astype(np.int64)


def _check_masks(masks, shape_nhw) -> np.ndarray:
    m = masks if isinstance(masks, np.ndarray) else np.asarray(masks)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    if m.ndim != 3:
        hint = " (for one item, add a leading axis: x[None])" if m.ndim == 2 else ""
        raise InputError(f"masks must have shape (N, H, W), got shape {m.shape}{hint}")
    if m.shape != tuple(shape_nhw):
        raise InputError(f"masks must have the maps' shape {tuple(shape_nhw)}, got {m.shape}")
    if m.dtype != bool:
        if not (np.issubdtype(m.dtype, np.integer) or np.issubdtype(m.dtype, np.floating)):
            raise InputError(f"masks must be bool or 0/1 numbers, got dtype {m.dtype}")
        if not np.isin(m, (0, 1)).all():
            raise InputError("masks must be binary (bool, or numbers that are all 0 or 1)")
        m = m.astype(bool)
    empty = ~m.reshape(m.shape[0], -1).any(axis=1)
    if empty.any():
        raise InputError(
            f"masks of items {np.nonzero(empty)[0][:10].tolist()} are empty; "
            "the object's region is needed (drop those items)"
        )
    return m
