"""Deletion and insertion curves and their area under the curve ([RISE] §4.1).

References and shared conventions: see :mod:`liftcam.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from liftcam.engine.errors import InputError
from liftcam.metrics._checks import _check_images, _check_int, _check_maps, _check_targets
from liftcam.metrics.perturb import Baseline, Predict, _evaluate, _resolve_baseline, _take_baseline

DEFAULT_STEPS = 32


@dataclass(frozen=True)
class CurveResult:
    """A deletion or insertion curve per image and its area.

    ``auc`` (N,): trapezoidal area under each curve over x in [0, 1].
    ``mean``: ``auc.mean()``.
    ``curves`` (N, steps + 1): the target's softmax probability after each step.
    ``fractions`` (steps + 1,): x of each point, the fraction of pixels removed
    (deletion) or revealed (insertion); 0 first, 1 last.
    """

    auc: np.ndarray
    mean: float
    curves: np.ndarray
    fractions: np.ndarray


def trapezoid_auc(curves, fractions) -> np.ndarray:
    """Area under curve(s) (..., S+1) sampled at ``fractions`` (S+1,), trapezoidal rule.

    With equally spaced fractions on [0, 1] this is RISE's
    (sum(p) − p_0/2 − p_S/2) / S.
    """
    p = np.asarray(curves, dtype=np.float64)
    x = np.asarray(fractions, dtype=np.float64)
    if x.ndim != 1 or p.shape[-1] != x.shape[0] or x.shape[0] < 2:
        raise InputError(
            "curves (..., S+1) and fractions (S+1,) with S >= 1 needed, "
            f"got {p.shape}, {x.shape}")
    return (np.diff(x) * (p[..., 1:] + p[..., :-1]) / 2.0).sum(axis=-1)


def _pixel_ranks(maps: np.ndarray) -> np.ndarray:
    """rank[i, r, c] = position of pixel (r, c) in image i's order of decreasing map
    value; ties keep raster (row-major) order, i.e. the earlier pixel goes first."""
    n = maps.shape[0]
    flat = maps.reshape(n, -1)
    order = np.argsort(-flat, axis=1, kind="stable")
    ranks = np.empty_like(order)
    np.put_along_axis(ranks, order, np.arange(flat.shape[1])[None].repeat(n, 0), axis=1)
    return ranks.reshape(maps.shape)


def _causal_curve(mode, predict, images, maps, targets, steps, batch_size, baseline, blur_sigma):
    batch_size = _check_int("batch_size", batch_size)
    images = _check_images(images)
    n, _, h, w = images.shape
    steps = min(DEFAULT_STEPS, h * w) if steps is None else _check_int("steps", steps)
    maps = _check_maps(maps, (n, h, w), unit_range=False)
    targets = _check_targets(targets, n)
    n_pix = h * w
    if steps > n_pix:
        raise InputError(f"steps ({steps}) cannot exceed the number of pixels per image ({n_pix})")
    base = _resolve_baseline(baseline, images, blur_sigma)
    ranks = _pixel_ranks(maps)
    # pixels changed at each step
    counts = np.round(np.arange(steps + 1) * n_pix / steps).astype(np.int64)
    fractions = counts / n_pix
    n_points = steps + 1

    def build(idx):
        img, step = np.divmod(idx, n_points)
        changed = (ranks[img] < counts[step][:, None, None])[:, None]  # (b,1,H,W): the top-k pixels
        x = images[img].astype(np.float32)
        b = np.broadcast_to(_take_baseline(base, img), x.shape)
        if mode == "deletion":
            return np.where(changed, b, x)
        return np.where(changed, x, b)

    probs = _evaluate(predict, n * n_points, build, np.repeat(targets, n_points), batch_size)
    curves = probs.reshape(n, n_points)
    auc = trapezoid_auc(curves, fractions)
    return CurveResult(auc, float(auc.mean()), curves, fractions)


def deletion_auc(predict: Predict, images, maps, targets, steps: Optional[int] = None,
                 batch_size: int = 64,
                 baseline: Baseline = "zero", blur_sigma: float = 5.0) -> CurveResult:
    """Deletion metric ([RISE] §4.1). Lower is better.

    Pixels are ordered by decreasing map value (ties: stable, raster order first).
    ``steps`` defaults to min(32, H·W); RISE's 224-pixels-per-step on 224² images
    is ``steps=224``. At step s = 0..steps the first round(s·H·W/steps) pixels of that order are
    replaced by the baseline (all channels), and the target's softmax probability is
    recorded; the AUC is the trapezoidal area over x = pixels removed / (H·W) ∈ [0, 1].
    The N·(steps+1) perturbed images are evaluated in one stream of batches.
    Default baseline "zero" (RISE deletes to black; 0 here is the normalised mean).
    """
    return _causal_curve("deletion", predict, images, maps, targets, steps, batch_size,
                         baseline, blur_sigma)


def insertion_auc(predict: Predict, images, maps, targets, steps: Optional[int] = None,
                  batch_size: int = 64,
                  baseline: Baseline = "blur", blur_sigma: float = 5.0) -> CurveResult:
    """Insertion metric ([RISE] §4.1). Higher is better.

    Starts from the baseline image (default "blur": the image blurred by
    :func:`gaussian_blur` with ``blur_sigma``, as RISE does) and reveals the pixels of
    the original image in order of decreasing map value (ties: raster order), in
    ``steps`` equal steps; curve and AUC as in :func:`deletion_auc`.
    """
    return _causal_curve("insertion", predict, images, maps, targets, steps, batch_size,
                         baseline, blur_sigma)
