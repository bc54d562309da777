"""The CAM tail, in numpy: the specification every backend is held to.

Every CAM method ends the same way. Given the target layer's activation ``A`` (N,K,h,w)
and per-channel weights (N,K) -- LIFT-CAM's ``alpha_k = sum_ij A*M`` or Grad-CAM's
``mean_ij G`` -- the tail is::

    S        = sum_k w[:, k] * A_k                     weighted_sum       (N,h,w)
    low_res  = ReLU(S)                                 finish             (N,h,w)
    maps     = minmax(upsample_bilinear(low_res, size)) finish            (N,H,W) in [0,1]

This module is the run-time implementation on CPU (numpy only, no torch) and the
reference the CUDA kernel (``kernels/liftcam.cu``) must equal to 1e-5.

Conventions, shared with the CUDA kernel:

- ``ReLU(x) = x if x > 0 else 0`` (so NaN -> 0 and -0.0 -> +0.0).
- Bilinear resampling with half-pixel centres, exactly as
  ``torch.nn.functional.interpolate(mode="bilinear", align_corners=False)`` and
  ``cv2.resize(interpolation=cv2.INTER_LINEAR)``: output index ``d`` samples the source at
  ``s = max((d + 0.5) * in/out - 0.5, 0)``; ``i0 = floor(s)`` clamped to ``in - 1``,
  ``i1 = min(i0 + 1, in - 1)``, weights ``1 - (s - i0)`` and ``s - i0``. No anti-aliasing
  when downsampling (same as both references).
- ``minmax``: per image ``(x - min) / (max - min)``; where ``max - min`` is not a finite
  positive number (a constant map, or non-finite values) the whole image becomes zeros.
  In ``finish`` an image whose *low-res* map is constant is zeros too (its upsampled map
  is constant only up to rounding, which min-max would blow up to 0/1 noise). NaN never
  comes out.

dtype: float32 in, float32 out. float64 input is kept in float64 (for precise references
in tests); any other dtype is converted to float32.

No BLAS here: the contractions are ``np.einsum`` without ``optimize`` (numpy's own loops).
numpy's OpenBLAS runs a product this size on its own thread pool, whose workers keep spinning
after the call and take the cores ONNX Runtime's next run needs: measured on VGG-16 at batch 1
(2 cores), ``explain`` took 124-152 ms with ``np.matmul`` here, 118-126 ms without, against a
115 ms floor (DESIGN.md §13). The loops cost ~10 ms at batch 32 (224 x 224 maps), under 1 %.
"""
from __future__ import annotations

import functools
from typing import Tuple, Union

import numpy as np

from liftcam.engine.errors import InputError

__all__ = [
    "liftcam_coefficients",
    "weighted_sum",
    "upsample_bilinear",
    "interpolation_matrix",
    "relu",
    "minmax",
    "finish",
]

SizeLike = Union[int, Tuple[int, int]]


# ----------------------------------------------------------------------------- helpers
def _as_float(x, name: str) -> np.ndarray:
    try:
        arr = np.asarray(x)
    except Exception as exc:  # pragma: no cover - exotic objects
        raise InputError(f"{name}: cannot be read as an array ({exc})") from exc
    if arr.dtype == np.float64:
        return arr
    if arr.dtype == np.float32:
        return arr
    if not (np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
            or arr.dtype == np.bool_):
        raise InputError(f"{name}: expected a float32 array, got dtype {arr.dtype}")
    return arr.astype(np.float32)


def _common(*arrays: np.ndarray):
    """float64 only if every array is float64, else float32."""
    if all(a.dtype == np.float64 for a in arrays):
        return arrays
    return tuple(a.astype(np.float32, copy=False) for a in arrays)


def _check_ndim(arr: np.ndarray, ndim: int, name: str, layout: str) -> None:
    if arr.ndim != ndim:
        raise InputError(
            f"{name}: expected a {ndim}-d array {layout}, got shape {tuple(arr.shape)}")
    if arr.size == 0 or any(int(s) == 0 for s in arr.shape):
        raise InputError(f"{name}: every dimension must be > 0, got shape {tuple(arr.shape)}")


def _parse_size(size: SizeLike) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        hw = (int(size), int(size))
    else:
        try:
            hw = tuple(int(s) for s in size)  # type: ignore[union-attr]
        except Exception as exc:
            raise InputError(f"size: expected an int or (H, W), got {size!r}") from exc
        if len(hw) != 2:
            raise InputError(f"size: expected an int or (H, W), got {size!r}")
    if hw[0] <= 0 or hw[1] <= 0:
        raise InputError(f"size: H and W must be > 0, got {hw}")
    return hw  # type: ignore[return-value]


# ----------------------------------------------------------------------------- the tail
def liftcam_coefficients(A, M) -> np.ndarray:
    """LIFT-CAM coefficients ``alpha[n, k] = sum_ij A[n,k,i,j] * M[n,k,i,j]`` -> (N, K)."""
    A = _as_float(A, "A")
    M = _as_float(M, "M")
    _check_ndim(A, 4, "A", "(N, K, h, w)")
    if M.shape != A.shape:
        raise InputError(
            f"M: expected the shape of A {tuple(A.shape)} (multipliers of the same activation), "
            f"got {tuple(M.shape)}")
    A, M = _common(A, M)
    N, K = A.shape[:2]
    a = A.reshape(N, K, -1)
    m = M.reshape(N, K, -1)
    return np.einsum("nkp,nkp->nk", a, m)


def weighted_sum(A, w) -> np.ndarray:
    """``S[n] = sum_k w[n, k] * A[n, k]`` -> (N, h, w). No ReLU."""
    A = _as_float(A, "A")
    w = _as_float(w, "w")
    _check_ndim(A, 4, "A", "(N, K, h, w)")
    N, K, h, ww = A.shape
    if w.ndim != 2 or w.shape != (N, K):
        raise InputError(f"w: expected shape (N, K) = {(N, K)} to match A, got {tuple(w.shape)}")
    A, w = _common(A, w)
    return np.einsum("nk,nkp->np", w, A.reshape(N, K, h * ww)).reshape(N, h, ww)


def relu(S) -> np.ndarray:
    """``x if x > 0 else 0`` element-wise (NaN -> 0, -0.0 -> +0.0), as the CUDA kernel."""
    S = _as_float(S, "S")
    return np.where(S > 0, S, S.dtype.type(0))


@functools.lru_cache(maxsize=128)
def _bilinear_cached(n_in: int, n_out: int, window: tuple, dtype_str: str) -> np.ndarray:
    a, b = window
    d = np.arange(n_out, dtype=np.float64) + 0.5            # output pixel centres
    frac = (d - a) / (b - a)                                # position in the window, 0..1
    inside = (frac >= 0) & (frac <= 1)
    src = np.clip(frac * n_in - 0.5, 0.0, n_in - 1.0)       # half-pixel source coordinate
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 1)
    i1 = np.minimum(i0 + 1, n_in - 1)
    lam = src - i0
    R = np.zeros((n_out, n_in), dtype=np.float64)
    rows = np.arange(n_out)[inside]
    np.add.at(R, (rows, i0[inside]), 1.0 - lam[inside])
    np.add.at(R, (rows, i1[inside]), lam[inside])
    R = R.astype(dtype_str)
    R.setflags(write=False)
    return R


def interpolation_matrix(n_in: int, n_out: int, dtype=np.float32, window=None) -> np.ndarray:
    """The (n_out, n_in) 1-d bilinear interpolation matrix, half-pixel centres, edges clamped
    (cached, read-only): the one resampling rule liftcam uses for maps.

    ``window=(a, b)``: the n_in samples cover output pixels a..b (floats, output pixel units;
    default the whole axis, 0..n_out); output pixels outside the window get a zero row. That is
    how a map of a centre crop is placed back on the original image."""
    if int(n_in) <= 0 or int(n_out) <= 0:
        raise InputError(f"interpolation_matrix: sizes must be > 0, got {n_in} -> {n_out}")
    a, b = (0.0, float(n_out)) if window is None else (float(window[0]), float(window[1]))
    if not b > a:
        raise InputError(f"interpolation_matrix: empty window {window}")
    return _bilinear_cached(int(n_in), int(n_out), (a, b), np.dtype(dtype).str)


def upsample_bilinear(L, size: SizeLike) -> np.ndarray:
    """Resize (N, h, w) maps to (N, H, W): ``Ry (H,h) @ L @ Rx^T (w,W)``.

    Same numbers as ``torch.nn.functional.interpolate(L[:, None], size, mode="bilinear",
    align_corners=False)[:, 0]`` and ``cv2.resize(L[n], (W, H), interpolation=INTER_LINEAR)``,
    for up- and downsampling.
    """
    L = _as_float(L, "L")
    _check_ndim(L, 3, "L", "(N, h, w)")
    H, W = _parse_size(size)
    _, h, w = L.shape
    Ry = interpolation_matrix(h, H, L.dtype)
    Rx = interpolation_matrix(w, W, L.dtype)
    # pick the cheaper association order
    if H * w * (h + W) <= h * W * (w + H):
        return np.einsum("nHw,Ww->nHW", np.einsum("Hh,nhw->nHw", Ry, L), Rx)
    return np.einsum("Hh,nhW->nHW", Ry, np.einsum("nhw,Ww->nhW", L, Rx))


def minmax(maps, constant=None) -> np.ndarray:
    """Per image to [0, 1]: ``(x - min) / (max - min)``; constant (or non-finite) -> zeros.

    ``constant``: optional (N,) booleans, images to treat as constant (zeros) whatever
    their values; ``finish`` passes "the low-res map is constant", because the upsampled
    map of a constant map is constant only up to float rounding.
    """
    maps = _as_float(maps, "maps")
    _check_ndim(maps, 3, "maps", "(N, H, W)")
    N = maps.shape[0]
    flat = maps.reshape(N, -1)
    with np.errstate(invalid="ignore", over="ignore"):
        lo = flat.min(axis=1)
        hi = flat.max(axis=1)
        rng = hi - lo
        ok = (rng > 0) & np.isfinite(rng)
        if constant is not None:
            constant = np.asarray(constant, dtype=bool).reshape(-1)
            if constant.shape != (N,):
                raise InputError(f"constant: expected {N} booleans, got shape {constant.shape}")
            ok &= ~constant
        safe = np.where(ok, rng, maps.dtype.type(1))
        out = (flat - lo[:, None]) / safe[:, None]
    out = np.where(ok[:, None], out, maps.dtype.type(0))
    return np.ascontiguousarray(out.reshape(maps.shape))


def finish(S, size: SizeLike) -> Tuple[np.ndarray, np.ndarray]:
    """The shared tail: ``low_res = ReLU(S)`` (N,h,w); ``maps = minmax(upsample(low_res))``."""
    S = _as_float(S, "S")
    _check_ndim(S, 3, "S", "(N, h, w)")
    low_res = relu(S)
    flat = low_res.reshape(low_res.shape[0], -1)
    constant = flat.max(axis=1) == flat.min(axis=1)
    maps = minmax(upsample_bilinear(low_res, size), constant=constant)
    return low_res, maps


def softmax(logits: np.ndarray, axis: int = -1) -> np.ndarray:
    """Numerically stable softmax in float64: exp(z - max z) / sum exp(z - max z)."""
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=axis, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=axis, keepdims=True)
