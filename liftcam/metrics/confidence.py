"""Average Drop, Increase in Confidence and Average Drop in Deletion ([GradCAM++] §4.1,
[LIFT-CAM] §5).

References and shared conventions: see :mod:`liftcam.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from liftcam.metrics._checks import _check_images, _check_int, _check_maps, _check_targets
from liftcam.metrics.perturb import Baseline, Predict, _evaluate, _resolve_baseline, _take_baseline


@dataclass(frozen=True)
class ConfidenceResult:
    """Average Drop, Increase in Confidence or Average Drop in Deletion.

    ``value`` is the metric in percent and equals ``per_image.mean()``.
    ``per_image`` (N,) float64: the per-image term in percent (for IC: 100 or 0).
    ``original`` (N,): Y, the target's probability on the image.
    ``perturbed`` (N,): O (or D for ADD), the probability on the perturbed image.
    """

    value: float
    per_image: np.ndarray
    original: np.ndarray
    perturbed: np.ndarray


def _confidence_probs(predict, images, maps, targets, baseline, batch_size, blur_sigma, kinds):
    """Y and the probabilities for each requested kind ('keep': x·m + b·(1-m),
    'delete': x·(1-m) + b·m), in one stream of (1 + len(kinds)) * N evaluations."""
    batch_size = _check_int("batch_size", batch_size)
    images = _check_images(images)
    n = images.shape[0]
    maps = _check_maps(maps, (n,) + images.shape[2:], unit_range=True)
    targets = _check_targets(targets, n)
    base = _resolve_baseline(baseline, images, blur_sigma)
    m32 = maps.astype(np.float32)[:, None]  # (N,1,H,W)
    n_blocks = 1 + len(kinds)

    def build(idx):
        block, img = np.divmod(idx, n)
        x = images[img].astype(np.float32)
        for j, kind in enumerate(kinds, start=1):
            sel = block == j
            if not sel.any():
                continue
            keep = m32[img[sel]] if kind == "keep" else 1.0 - m32[img[sel]]
            b = _take_baseline(base, img[sel])
            x[sel] = x[sel] * keep + b * (1.0 - keep)
        return x

    probs = _evaluate(predict, n_blocks * n, build, np.tile(targets, n_blocks), batch_size)
    return probs[:n], [probs[j * n:(j + 1) * n] for j in range(1, n_blocks)]


def _result(score, y, o) -> ConfidenceResult:
    per = score(y, o)
    return ConfidenceResult(float(per.mean()), per, y, o)


def _increase(y: np.ndarray, o: np.ndarray) -> np.ndarray:
    """100 where the probability rose (strictly), else 0."""
    return np.where(o > y, 100.0, 0.0)


def _drop(y: np.ndarray, o: np.ndarray) -> np.ndarray:
    """max(0, Y - O) / Y * 100, with 0/0 := 0 (a zero Y cannot drop)."""
    num = np.maximum(0.0, y - o)
    return np.divide(num, y, out=np.zeros_like(num), where=y > 0) * 100.0


def average_drop(predict: Predict, images, maps, targets, batch_size: int = 64,
                 baseline: Baseline = 0.0, blur_sigma: float = 5.0) -> ConfidenceResult:
    """Average Drop % ([GradCAM++] §4.1; as used in [LIFT-CAM] §5). Lower is better.

    Y_i = softmax(predict(x_i))[c_i], O_i = the same on x_i·m_i + b·(1 − m_i) (the
    map broadcast over channels). Average Drop = mean_i max(0, Y_i − O_i)/Y_i · 100.
    2N model evaluations in ceil(2N / batch_size) calls.
    """
    y, (o,) = _confidence_probs(predict, images, maps, targets, baseline, batch_size,
                                blur_sigma, ("keep",))
    return _result(_drop, y, o)


def increase_in_confidence(predict: Predict, images, maps, targets, batch_size: int = 64,
                           baseline: Baseline = 0.0, blur_sigma: float = 5.0) -> ConfidenceResult:
    """% Increase in Confidence ([GradCAM++] §4.1; [LIFT-CAM] §5). Higher is better.

    IC = mean_i 1[O_i > Y_i] · 100 with Y, O as in :func:`average_drop` (a strict
    inequality: equal probabilities are no increase).
    """
    y, (o,) = _confidence_probs(predict, images, maps, targets, baseline, batch_size,
                                blur_sigma, ("keep",))
    return _result(_increase, y, o)


def average_drop_in_deletion(predict: Predict, images, maps, targets, batch_size: int = 64,
                             baseline: Baseline = 0.0, blur_sigma: float = 5.0) -> ConfidenceResult:
    """Average Drop in Deletion, ADD ([LIFT-CAM] §5). Higher is better.

    The complement of Average Drop: the explained region is removed instead of kept.
    D_i = softmax(predict(x_i·(1 − m_i) + b·m_i))[c_i];
    ADD = mean_i max(0, Y_i − D_i)/Y_i · 100. (``perturbed`` holds D.)
    """
    y, (d,) = _confidence_probs(predict, images, maps, targets, baseline, batch_size,
                                blur_sigma, ("delete",))
    return _result(_drop, y, d)


def confidence_metrics(predict: Predict, images, maps, targets, batch_size: int = 64,
                       baseline: Baseline = 0.0, blur_sigma: float = 5.0) -> dict:
    """Average Drop, IC and ADD together, sharing Y: 3N evaluations instead of 6N.

    Returns {"average_drop": ConfidenceResult, "increase_in_confidence": ...,
    "average_drop_in_deletion": ...}, each equal to its own function's result.
    """
    y, (o, d) = _confidence_probs(predict, images, maps, targets, baseline, batch_size, blur_sigma,
                                  ("keep", "delete"))
    return {
        "average_drop": _result(_drop, y, o),
        "increase_in_confidence": _result(_increase, y, o),
        "average_drop_in_deletion": _result(_drop, y, d),
    }
