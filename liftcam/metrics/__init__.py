"""Faithfulness and localisation metrics for class activation maps (numpy only).

Every metric that needs the model takes it as a callable

    predict(x: float32 ndarray (B, C_in, H, W)) -> logits (B, n_classes)

(the engine passes a batched ONNX Runtime call) and a ``batch_size``: images are
sent to ``predict`` in batches of at most ``batch_size`` rows, and the different
perturbations of all images are stacked into one stream so that the number of
calls is ``ceil(total_evaluations / batch_size)``. Probabilities are the softmax of
the logits, computed stably (the maximum logit is subtracted first) in float64.

Conventions shared by all functions
-----------------------------------
- ``images``: floating array (N, C_in, H, W), finite, N >= 1. Images are already
  normalised model inputs, so "absent" pixels are set to a ``baseline`` value (0 by
  default, i.e. the dataset mean after mean/std normalisation).
- ``maps``: floating array (N, H, W) (or (N, 1, H, W)), finite, same H, W as the
  images. Average Drop / IC / ADD require maps in [0, 1] (the engine's maps are
  min-max normalised); deletion / insertion only use the order of the values.
- ``targets``: integer class indices, (N,) or one int for all images; checked
  against the number of classes the model returns.
- ``baseline``: a number, an array broadcastable to (N, C_in, H, W) (a length-C_in
  vector is read as one value per channel), ``"zero"`` or ``"blur"`` (the image
  blurred with a normalised Gaussian, see :func:`gaussian_blur`).

Bad input raises :class:`liftcam.engine.errors.InputError` with a message that
says what was wrong.

References
----------
- [GradCAM++] Chattopadhyay, Sarkar, Howlader, Balasubramanian, "Grad-CAM++:
  Generalized Gradient-based Visual Explanations for Deep Convolutional Networks",
  WACV 2018, §4.1 (Average Drop %, % Increase in Confidence).
- [LIFT-CAM] Jung & Oh, "Towards Better Explanations of Class Activation Mapping",
  ICCV 2021, §5 (Average Drop, Increase in Confidence, Average Drop in Deletion,
  deletion / insertion; closeness of CAM coefficients to SHAP values).
- [RISE] Petsiuk, Das, Saenko, "RISE: Randomized Input Sampling for Explanation of
  Black-box Models", BMVC 2018, §4.1 (deletion and insertion curves and AUC).
- [EB] Zhang, Lin, Brandt, Shen, Sclaroff, "Top-down Neural Attention by
  Excitation Backprop", ECCV 2016, §5.1 (pointing game, 15-pixel tolerance).
- [Score-CAM] Wang et al., "Score-CAM: Score-Weighted Visual Explanations for
  Convolutional Neural Networks", CVPR Workshops 2020, §4.3 (energy-based
  pointing game).
"""
from __future__ import annotations

import math
import numbers
from dataclasses import dataclass
from typing import Callable, Optional, Union

import numpy as np

from liftcam.engine.tail import softmax  # noqa: F401  (re-exported)

from liftcam.engine.errors import InputError

__all__ = [
    "ConfidenceResult",
    "CurveResult",
    "PointingResult",
    "EnergyResult",
    "AgreementResult",
    "softmax",
    "gaussian_blur",
    "average_drop",
    "increase_in_confidence",
    "average_drop_in_deletion",
    "confidence_metrics",
    "deletion_auc",
    "insertion_auc",
    "trapezoid_auc",
    "pointing_game",
    "energy_pointing_game",
    "rankdata",
    "coefficient_agreement",
]

DEFAULT_STEPS = 32

Predict = Callable[[np.ndarray], np.ndarray]
Baseline = Union[float, np.ndarray, str]


# --------------------------------------------------------------------------- results


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


@dataclass(frozen=True)
class AgreementResult:
    """Closeness of CAM coefficients to SHAP values, per image (arrays of shape (N,)).

    pearson, spearman: correlations; 0 where undefined (see ``degenerate``).
    l2_normalised: ||c/||c|| - s/||s|| ||, in [0, 2]; a zero vector is taken as
        the zero direction (so two zero vectors give 0, one gives 1).
    l2_relative: ||c - s|| / ||s||; 0 when both are zero, +inf when only s is.
    topk_overlap: |topk(c) ∩ topk(s)| / k.
    degenerate: True where c or s is constant (correlations undefined, set to 0)
        or s is all zero.
    noise_floor: ||stderr|| / ||s|| (the relative error that SHAP sampling noise
        alone produces; +inf if s is zero) or None without ``shap_stderr``.
    within_2se: fraction of channels with |c - s| <= 2 * stderr, or None.
    mean: dict of the means over images of every per-image array above
        (``degenerate`` gives the fraction of degenerate images).
    """

    pearson: np.ndarray
    spearman: np.ndarray
    l2_normalised: np.ndarray
    l2_relative: np.ndarray
    topk_overlap: np.ndarray
    degenerate: np.ndarray
    noise_floor: Optional[np.ndarray]
    within_2se: Optional[np.ndarray]
    mean: dict


# ------------------------------------------------------------------------ validation


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
    if a.dtype == bool or not (np.issubdtype(a.dtype, np.floating) or np.issubdtype(a.dtype, np.integer)):
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
        raise InputError(f"images must be a floating array (normalised tensors), got dtype {images.dtype}")
    return images


def _check_maps(maps, shape_nhw, *, unit_range: bool, nonnegative: bool = False, name="maps") -> np.ndarray:
    m = maps if isinstance(maps, np.ndarray) else np.asarray(maps)
    if m.ndim == 4 and m.shape[1] == 1:
        m = m[:, 0]
    m = _check_float_array(name, m, 3, "(N, H, W)")
    if shape_nhw is not None and m.shape != tuple(shape_nhw):
        raise InputError(f"{name} must have shape (N, H, W) = {tuple(shape_nhw)} to match the images, got {m.shape}")
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
        raise InputError(f"targets must have shape (N,) = ({n},) or be one int, got shape {t.shape}")
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


# --------------------------------------------------------------------- numeric helpers


def _gaussian_kernel(sigma: float, radius: int) -> np.ndarray:
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    k = np.exp(-0.5 * (x / sigma) ** 2)
    return k / k.sum()


def _convolve_axis(x: np.ndarray, k: np.ndarray, axis: int) -> np.ndarray:
    """Zero-padded 1-D convolution of x along axis with the symmetric kernel k."""
    r = (len(k) - 1) // 2
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    xp = np.pad(x, pad)
    n = x.shape[axis]
    out = np.zeros_like(x)
    for t, w in enumerate(k):
        sl = [slice(None)] * x.ndim
        sl[axis] = slice(t, t + n)
        out += w * xp[tuple(sl)]
    return out


def gaussian_blur(images: np.ndarray, sigma: float = 5.0, radius: Optional[int] = None) -> np.ndarray:
    """Separable Gaussian blur over the last two axes, normalised at the borders.

    The kernel is exp(-d²/2σ²) on [-radius, radius] (default radius = ceil(σ), so
    σ = 5 gives RISE's 11-tap kernel), and each output pixel is divided by the sum of
    the kernel weights that fell inside the image, so a constant image stays
    constant and no black border creeps in. Works for any image size.
    """
    if not (isinstance(sigma, numbers.Real) and sigma > 0 and math.isfinite(sigma)):
        raise InputError(f"blur sigma must be a positive number, got {sigma!r}")
    if radius is None:
        radius = int(math.ceil(sigma))
    radius = _check_int("blur radius", radius, minimum=0)
    x = np.asarray(images, dtype=np.float64)
    if x.ndim < 2:
        raise InputError(f"gaussian_blur needs an array (..., H, W), got shape {x.shape}")
    k = _gaussian_kernel(float(sigma), radius)
    ones = np.ones(x.shape[-2:], dtype=np.float64)
    norm = _convolve_axis(_convolve_axis(ones, k, 0), k, 1)
    y = _convolve_axis(_convolve_axis(x, k, x.ndim - 2), k, x.ndim - 1)
    return y / norm


def _resolve_baseline(baseline: Baseline, images: np.ndarray, blur_sigma: float) -> np.ndarray:
    """The "absent" image, broadcast to images.shape (float32, read-only view allowed)."""
    shape = images.shape
    if isinstance(baseline, str):
        if baseline == "zero":
            return np.zeros((1, 1, 1, 1), dtype=np.float32)
        if baseline == "blur":
            return gaussian_blur(images, sigma=blur_sigma).astype(np.float32)
        raise InputError(f"baseline must be a number, an array, 'zero' or 'blur', got {baseline!r}")
    b = np.asarray(baseline)
    if b.dtype == bool or not (np.issubdtype(b.dtype, np.floating) or np.issubdtype(b.dtype, np.integer)):
        raise InputError(f"baseline must be real numbers, got dtype {b.dtype}")
    if not np.isfinite(b).all():
        raise InputError("baseline holds NaN or Inf")
    if b.ndim == 1 and b.shape[0] == shape[1] and b.shape[0] > 1:
        b = b.reshape(1, -1, 1, 1)  # one value per channel (even when C == W)
    try:
        full = np.broadcast_shapes(b.shape, shape)
    except ValueError:
        full = None
    if full != shape:
        raise InputError(
            f"baseline of shape {b.shape} does not broadcast to the images' shape {shape} "
            f"(use a number, a ({shape[1]},) per-channel vector or an array like the images)"
        )
    while b.ndim < 4:
        b = b[None]
    return b.astype(np.float32)


def _take_baseline(b: np.ndarray, idx: np.ndarray) -> np.ndarray:
    """Rows idx of a baseline that is (1 or N, ...) along the batch axis."""
    return b if b.shape[0] == 1 else b[idx]


def _evaluate(predict: Predict, n_items: int, build: Callable[[np.ndarray], np.ndarray],
              item_targets: np.ndarray, batch_size: int) -> np.ndarray:
    """Target probabilities of n_items virtual inputs, built and sent in chunks.

    build(idx) returns the float32 inputs of items idx; item_targets (n_items,).
    """
    if not callable(predict):
        raise InputError(f"predict must be callable (x -> logits), got {type(predict).__name__}")
    out = np.empty(n_items, dtype=np.float64)
    n_classes = None
    for start in range(0, n_items, batch_size):
        idx = np.arange(start, min(start + batch_size, n_items))
        x = np.ascontiguousarray(build(idx), dtype=np.float32)
        logits = np.asarray(predict(x))
        if logits.ndim != 2 or logits.shape[0] != len(idx):
            raise InputError(
                f"predict must return logits of shape (B, n_classes) = ({len(idx)}, n_classes), "
                f"got shape {logits.shape}"
            )
        if not (np.issubdtype(logits.dtype, np.floating) or np.issubdtype(logits.dtype, np.integer)):
            raise InputError(f"predict returned non-numeric logits (dtype {logits.dtype})")
        if n_classes is None:
            n_classes = logits.shape[1]
        elif logits.shape[1] != n_classes:
            raise InputError(f"predict returned {logits.shape[1]} classes, earlier {n_classes}")
        t = item_targets[idx]
        if (t >= n_classes).any():
            raise InputError(
                f"target class {int(t.max())} is out of range: the model has {n_classes} classes"
            )
        if not np.isfinite(logits).all():
            raise InputError("predict returned NaN or Inf logits")
        out[idx] = softmax(logits)[np.arange(len(idx)), t]
    return out


# --------------------------------------------------- Average Drop, IC, ADD (GradCAM++)


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
    y, (o,) = _confidence_probs(predict, images, maps, targets, baseline, batch_size, blur_sigma, ("keep",))
    per = _drop(y, o)
    return ConfidenceResult(float(per.mean()), per, y, o)


def increase_in_confidence(predict: Predict, images, maps, targets, batch_size: int = 64,
                           baseline: Baseline = 0.0, blur_sigma: float = 5.0) -> ConfidenceResult:
    """% Increase in Confidence ([GradCAM++] §4.1; [LIFT-CAM] §5). Higher is better.

    IC = mean_i 1[O_i > Y_i] · 100 with Y, O as in :func:`average_drop` (a strict
    inequality: equal probabilities are no increase).
    """
    y, (o,) = _confidence_probs(predict, images, maps, targets, baseline, batch_size, blur_sigma, ("keep",))
    per = np.where(o > y, 100.0, 0.0)
    return ConfidenceResult(float(per.mean()), per, y, o)


def average_drop_in_deletion(predict: Predict, images, maps, targets, batch_size: int = 64,
                             baseline: Baseline = 0.0, blur_sigma: float = 5.0) -> ConfidenceResult:
    """Average Drop in Deletion, ADD ([LIFT-CAM] §5). Higher is better.

    The complement of Average Drop: the explained region is removed instead of kept.
    D_i = softmax(predict(x_i·(1 − m_i) + b·m_i))[c_i];
    ADD = mean_i max(0, Y_i − D_i)/Y_i · 100. (``perturbed`` holds D.)
    """
    y, (d,) = _confidence_probs(predict, images, maps, targets, baseline, batch_size, blur_sigma, ("delete",))
    per = _drop(y, d)
    return ConfidenceResult(float(per.mean()), per, y, d)


def confidence_metrics(predict: Predict, images, maps, targets, batch_size: int = 64,
                       baseline: Baseline = 0.0, blur_sigma: float = 5.0) -> dict:
    """Average Drop, IC and ADD together, sharing Y: 3N evaluations instead of 6N.

    Returns {"average_drop": ConfidenceResult, "increase_in_confidence": ...,
    "average_drop_in_deletion": ...}, each equal to its own function's result.
    """
    y, (o, d) = _confidence_probs(predict, images, maps, targets, baseline, batch_size, blur_sigma,
                                  ("keep", "delete"))
    ad, ic, add = _drop(y, o), np.where(o > y, 100.0, 0.0), _drop(y, d)
    return {
        "average_drop": ConfidenceResult(float(ad.mean()), ad, y, o),
        "increase_in_confidence": ConfidenceResult(float(ic.mean()), ic, y, o),
        "average_drop_in_deletion": ConfidenceResult(float(add.mean()), add, y, d),
    }


# ------------------------------------------------------- deletion / insertion (RISE)


def trapezoid_auc(curves, fractions) -> np.ndarray:
    """Area under curve(s) (..., S+1) sampled at ``fractions`` (S+1,), trapezoidal rule.

    With equally spaced fractions on [0, 1] this is RISE's
    (sum(p) − p_0/2 − p_S/2) / S.
    """
    p = np.asarray(curves, dtype=np.float64)
    x = np.asarray(fractions, dtype=np.float64)
    if x.ndim != 1 or p.shape[-1] != x.shape[0] or x.shape[0] < 2:
        raise InputError(f"curves (..., S+1) and fractions (S+1,) with S >= 1 needed, got {p.shape}, {x.shape}")
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
    counts = np.round(np.arange(steps + 1) * n_pix / steps).astype(np.int64)  # pixels changed at each step
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


def deletion_auc(predict: Predict, images, maps, targets, steps: Optional[int] = None, batch_size: int = 64,
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
    return _causal_curve("deletion", predict, images, maps, targets, steps, batch_size, baseline, blur_sigma)


def insertion_auc(predict: Predict, images, maps, targets, steps: Optional[int] = None, batch_size: int = 64,
                  baseline: Baseline = "blur", blur_sigma: float = 5.0) -> CurveResult:
    """Insertion metric ([RISE] §4.1). Higher is better.

    Starts from the baseline image (default "blur": the image blurred by
    :func:`gaussian_blur` with ``blur_sigma``, as RISE does) and reveals the pixels of
    the original image in order of decreasing map value (ties: raster order), in
    ``steps`` equal steps; curve and AUC as in :func:`deletion_auc`.
    """
    return _causal_curve("insertion", predict, images, maps, targets, steps, batch_size, baseline, blur_sigma)


# ------------------------------------------------------------------- pointing games


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


# ------------------------------------------------- SHAP closeness of CAM coefficients


def rankdata(a, axis: int = -1) -> np.ndarray:
    """Ranks 1..K along ``axis``, ties get the average of their ranks (as
    scipy.stats.rankdata(method="average")), float64."""
    a = np.asarray(a, dtype=np.float64)
    a = np.moveaxis(a, axis, -1)
    shape = a.shape
    x = a.reshape(-1, shape[-1])
    k = shape[-1]
    order = np.argsort(x, axis=1, kind="stable")
    xs = np.take_along_axis(x, order, axis=1)
    ranks = np.empty_like(x)
    for row in range(x.shape[0]):
        v = xs[row]
        # starts of runs of equal values
        new = np.concatenate(([True], v[1:] != v[:-1]))
        run_id = np.cumsum(new) - 1
        starts = np.nonzero(new)[0]
        ends = np.concatenate((starts[1:], [k]))  # exclusive
        avg = (starts + 1 + ends) / 2.0  # mean of ranks starts+1 .. ends
        ranks[row, order[row]] = avg[run_id]
    return np.moveaxis(ranks.reshape(shape), -1, axis)


def _rowwise_pearson(a: np.ndarray, b: np.ndarray):
    """Per-row Pearson r; rows where a or b is constant give 0 and are flagged."""
    ac = a - a.mean(axis=1, keepdims=True)
    bc = b - b.mean(axis=1, keepdims=True)
    # constant: every entry equal to the first (robust to rounding in the mean)
    const = (a == a[:, :1]).all(axis=1) | (b == b[:, :1]).all(axis=1)
    den = np.sqrt((ac * ac).sum(axis=1) * (bc * bc).sum(axis=1))
    ok = ~const & (den > 0)
    r = np.divide((ac * bc).sum(axis=1), den, out=np.zeros(a.shape[0]), where=ok)
    return np.clip(r, -1.0, 1.0), ~ok


def _top_k_sets(v: np.ndarray, k: int) -> np.ndarray:
    """Boolean (N, K): the k largest entries per row; ties broken by lower index."""
    order = np.argsort(-v, axis=1, kind="stable")[:, :k]
    sel = np.zeros(v.shape, dtype=bool)
    np.put_along_axis(sel, order, True, axis=1)
    return sel


def coefficient_agreement(coeffs, shap, shap_stderr=None, top_k: int = 5,
                          by: str = "value") -> AgreementResult:
    """How close CAM coefficients c (N, K) are to channel SHAP values s (N, K).

    The comparison [LIFT-CAM] §4 makes between LIFT-CAM's α and the SHAP values φ of
    the channel game, per image:
    - Pearson r(c, s) and Spearman ρ (Pearson of ranks, ties averaged);
    - l2_normalised = ‖c/‖c‖ − s/‖s‖‖ and l2_relative = ‖c − s‖/‖s‖;
    - topk_overlap = |topk(c) ∩ topk(s)| / k; ``by="value"`` ranks by signed value
      (the channels that push the class up most), ``by="abs"`` by magnitude; ties
      are broken by lower channel index.
    Undefined cases never warn or give NaN: a constant c or s gives correlation 0
    (flagged in ``degenerate``); see :class:`AgreementResult` for the L2 cases.
    ``shap_stderr`` (N, K), the standard errors of sampled SHAP estimates, adds the
    noise floor ‖stderr‖/‖s‖ and the fraction of channels with |c − s| ≤ 2·stderr.
    """
    c = _check_float_array("coeffs", coeffs, 2, "(N, K)").astype(np.float64)
    s = _check_float_array("shap", shap, 2, "(N, K)").astype(np.float64)
    if c.shape != s.shape:
        raise InputError(f"coeffs {c.shape} and shap {s.shape} must have the same shape (N, K)")
    n, k = c.shape
    top_k = _check_int("top_k", top_k)
    if top_k > k:
        raise InputError(f"top_k ({top_k}) cannot exceed the number of channels K = {k}")
    if by not in ("value", "abs"):
        raise InputError(f"by must be 'value' or 'abs', got {by!r}")

    pearson, deg_p = _rowwise_pearson(c, s)
    spearman, deg_s = _rowwise_pearson(rankdata(c, axis=1), rankdata(s, axis=1))

    nc = np.linalg.norm(c, axis=1, keepdims=True)
    ns = np.linalg.norm(s, axis=1, keepdims=True)
    cu = np.divide(c, nc, out=np.zeros_like(c), where=nc > 0)
    su = np.divide(s, ns, out=np.zeros_like(s), where=ns > 0)
    l2_norm = np.linalg.norm(cu - su, axis=1)
    diff = np.linalg.norm(c - s, axis=1)
    ns1 = ns[:, 0]
    l2_rel = np.divide(diff, ns1, out=np.where(diff > 0, np.inf, 0.0), where=ns1 > 0)

    key_c, key_s = (c, s) if by == "value" else (np.abs(c), np.abs(s))
    overlap = (_top_k_sets(key_c, top_k) & _top_k_sets(key_s, top_k)).sum(axis=1) / top_k

    degenerate = deg_p | deg_s | (ns1 == 0)

    noise_floor = within = None
    if shap_stderr is not None:
        se = _check_float_array("shap_stderr", shap_stderr, 2, "(N, K)").astype(np.float64)
        if se.shape != s.shape:
            raise InputError(f"shap_stderr {se.shape} must have the shape of shap {s.shape}")
        if (se < 0).any():
            raise InputError("shap_stderr must be non-negative")
        nse = np.linalg.norm(se, axis=1)
        noise_floor = np.divide(nse, ns1, out=np.where(nse > 0, np.inf, 0.0), where=ns1 > 0)
        within = (np.abs(c - s) <= 2.0 * se).mean(axis=1)

    means = {
        "pearson": float(pearson.mean()),
        "spearman": float(spearman.mean()),
        "l2_normalised": float(l2_norm.mean()),
        "l2_relative": float(l2_rel.mean()),
        "topk_overlap": float(overlap.mean()),
        "degenerate": float(degenerate.mean()),
    }
    if noise_floor is not None:
        means["noise_floor"] = float(noise_floor.mean())
        means["within_2se"] = float(within.mean())
    return AgreementResult(pearson, spearman, l2_norm, l2_rel, overlap, degenerate,
                           noise_floor, within, means)
