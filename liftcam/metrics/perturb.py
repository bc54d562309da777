"""Perturbation machinery: Gaussian blur, the "absent" baseline image and the batched
evaluation loop that streams perturbed inputs through ``predict``."""
from __future__ import annotations

import math
import numbers
from typing import Callable, Optional, Union

import numpy as np

from liftcam.engine.errors import InputError
from liftcam.engine.tail import softmax
from liftcam.metrics._checks import _check_int

Predict = Callable[[np.ndarray], np.ndarray]
Baseline = Union[float, np.ndarray, str]


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


def gaussian_blur(images: np.ndarray, sigma: float = 5.0,
                  radius: Optional[int] = None) -> np.ndarray:
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
    real = np.issubdtype(b.dtype, np.floating) or np.issubdtype(b.dtype, np.integer)
    if b.dtype == bool or not real:
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
        numeric = (np.issubdtype(logits.dtype, np.floating)
                   or np.issubdtype(logits.dtype, np.integer))
        if not numeric:
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
