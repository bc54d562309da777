"""Localisation metrics: the pointing game ([EB] §5.1) and its energy-based variant
([Score-CAM] §4.3).

References and shared conventions: see :mod:`liftcam.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liftcam.metrics._checks import _check_int, _check_maps, _check_masks


@dataclass(frozen=True)
class PointingResult:
    """Pointing game: ``hits`` (N,) bool, ``accuracy`` = hits.mean(), ``points``
    (N, 2) the (row, col) of each map's maximum (first in raster order on ties)."""

    hits: np.ndarray
    accuracy: float
    points: np.ndarray


@dataclass(frozen=True)
class EnergyResult:
    """Energy pointing game: ``per_image`` (N,) in [0, 1], ``mean``; ``empty`` (N,)
    bool marks all-zero maps, whose energy is defined as 0."""

    per_image: np.ndarray
    mean: float
    empty: np.ndarray


def pointing_game(maps, masks, tolerance: int = 0) -> PointingResult:
    """Pointing game ([EB] §5.1). Higher is better.

    A hit when the map's maximum lies in the object mask dilated by ``tolerance``
    pixels, i.e. some mask pixel lies within Euclidean distance ``tolerance`` of the
    maximum ([EB] uses 15 px). When the maximum is attained at several pixels the
    first in raster order is used (np.argmax; as TorchRay does). Masks must be
    binary and non-empty.
    """
    maps = _check_maps(maps, None, unit_range=False)
    masks = _check_masks(masks, maps.shape)
    tol = _check_int("tolerance", tolerance, minimum=0)
    n, h, w = maps.shape
    flat_arg = maps.reshape(n, -1).argmax(axis=1)
    rows, cols = np.divmod(flat_arg, w)
    dr = np.arange(-tol, tol + 1)
    disc = (dr[:, None] ** 2 + dr[None, :] ** 2) <= tol * tol  # (2t+1, 2t+1)
    hits = np.zeros(n, dtype=bool)
    for i in range(n):
        r, c = rows[i], cols[i]
        r0, r1, c0, c1 = max(r - tol, 0), min(r + tol + 1, h), max(c - tol, 0), min(c + tol + 1, w)
        window = masks[i, r0:r1, c0:c1]
        d = disc[r0 - (r - tol):r1 - (r - tol), c0 - (c - tol):c1 - (c - tol)]
        hits[i] = bool((window & d).any())
    return PointingResult(hits, float(hits.mean()), np.stack([rows, cols], axis=1))


def energy_pointing_game(maps, masks) -> EnergyResult:
    """Energy-based pointing game ([Score-CAM] §4.3). Higher is better.

    proportion_i = Σ map_i · mask_i / Σ map_i: the share of the map's energy inside
    the object's mask (Score-CAM uses the bounding box as mask). Maps must be
    non-negative (CAMs are in [0, 1]; the ratio does not depend on the scale). An
    all-zero map gives 0, not NaN, and is flagged in ``empty``.
    """
    maps = _check_maps(maps, None, unit_range=False, nonnegative=True)
    masks = _check_masks(masks, maps.shape)
    n = maps.shape[0]
    total = maps.reshape(n, -1).sum(axis=1)
    inside = (maps * masks).reshape(n, -1).sum(axis=1)
    empty = total <= 0
    per = np.divide(inside, total, out=np.zeros(n), where=~empty)
    return EnergyResult(per, float(per.mean()), empty)
