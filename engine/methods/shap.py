"""Channel SHAP: each channel's Shapley value in the game v(S) = y_c(A with only S kept).

Exact for K ≤ :data:`EXACT_MAX_K` (2^K head evaluations per image); otherwise permutation
sampling with ``n_samples`` permutations (default 64; (K + 1) evaluations each) and ``seed``,
with the standard error of each value in ``extra["shap_stderr"]``. The ground truth that
LIFT-CAM approximates (DESIGN.md §1).
"""
import math

import numpy as np

from liftcam.engine import tail
from liftcam.engine.errors import InputError
from liftcam.engine.methods.base import Batch, masked_head_values

EXACT_MAX_K = 16
DEFAULT_SAMPLES = 64


def exact_weights(K: int) -> tuple:
    """Coalition bit masks (2^K, K) and, per coalition, its Shapley weight |S|!(K−|S|−1)!/K!."""
    idx = np.arange(1 << K)
    bits = ((idx[:, None] >> np.arange(K)) & 1).astype(bool)
    size = bits.sum(axis=1)
    fact = [math.factorial(i) for i in range(K + 1)]
    wsize = np.array([fact[s] * fact[K - s - 1] / fact[K] if s < K else 0.0
                      for s in range(K + 1)])
    return bits, wsize[size]


def _exact(b: Batch, n: int):
    K = b.A.shape[1]
    bits, weight = exact_weights(K)
    v = masked_head_values(b, n, bits)
    idx = np.arange(1 << K)
    phi = np.empty(K)
    for k in range(K):
        without = idx[~bits[:, k]]
        phi[k] = np.sum(weight[without] * (v[without | (1 << k)] - v[without]))
    return phi, np.zeros(K)


def _sampled(b: Batch, n: int, n_samples: int, rng):
    K = b.A.shape[1]
    contrib = np.empty((n_samples, K))
    for s in range(n_samples):
        order = rng.permutation(K)
        masks = np.zeros((K + 1, K), bool)
        for i, k in enumerate(order):       # row i+1: the first i+1 channels of the order
            masks[i + 1:, k] = True
        contrib[s, order] = np.diff(masked_head_values(b, n, masks))
    stderr = contrib.std(axis=0, ddof=1) / math.sqrt(n_samples) if n_samples > 1 else \
        np.full(K, np.inf)
    return contrib.mean(axis=0), stderr


def is_exact(K: int, n_samples=None) -> bool:
    return n_samples is None and K <= EXACT_MAX_K


def evaluations(N: int, K: int, n_samples=None, **_) -> int:
    if is_exact(K, n_samples):
        return N * (1 << K)
    return N * (n_samples or DEFAULT_SAMPLES) * (K + 1)


def shap(b: Batch, n_samples=None, seed=0):
    N, K = b.A.shape[:2]
    exact = is_exact(K, n_samples)
    if not exact:
        n_samples = DEFAULT_SAMPLES if n_samples is None else n_samples
        if isinstance(n_samples, bool) or not isinstance(n_samples, int) or n_samples < 2:
            raise InputError(f"shap: n_samples must be an int ≥ 2, got {n_samples!r}")
    shared = np.random.default_rng() if seed is None else None
    phi = np.empty((N, K), np.float64)
    err = np.empty((N, K), np.float64)
    for n in range(N):
        # one stream per image (seed, its index in the whole call): results do not depend on
        # how the call is split into batches
        rng = shared or np.random.default_rng([seed, b.offset + n])
        phi[n], err[n] = _exact(b, n) if exact else _sampled(b, n, n_samples, rng)
    w = phi.astype(np.float32)
    extra = {"shap_stderr": err.astype(np.float32), "shap_exact": exact,
             "shap_samples": 0 if exact else n_samples}
    return w, tail.weighted_sum(b.A, w), extra
