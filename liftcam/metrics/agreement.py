"""Closeness of CAM coefficients to channel SHAP values ([LIFT-CAM] §4).

References and shared conventions: see :mod:`liftcam.metrics`.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

import numpy as np

from liftcam.engine.errors import InputError
from liftcam.metrics._checks import _check_float_array, _check_int


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
