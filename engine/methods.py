"""The CAM methods: one small function each, all ending in the shared tail.

Each method maps a :class:`Batch` (images, their activation ``A``, targets) to
``(weights (N,K), saliency S (N,h,w), extra)``; the explainer then applies
:func:`liftcam.engine.tail.finish` (ReLU, bilinear upsampling, per-image min-max) to ``S``.
Formulas: ../DESIGN.md §1 (gradient methods as in pytorch-grad-cam).

- ``liftcam``     α_k = Σ_ij A·M, M the DeepLIFT multipliers against A⁰ = 0
- ``gradcam``     w_k = mean_ij G
- ``gradcam++``   a = G²/(2G² + (Σ_ij A)·G³ + 1e-6) (0 where G = 0), w_k = Σ_ij ReLU(G)·a
- ``xgradcam``    w_k = Σ_ij G·A / (Σ_ij A + 1e-7)
- ``layercam``    S = Σ_k ReLU(G)·A            (weights: w_k = Σ_ij ReLU(G)·A, the channel's share)
- ``hirescam``    S = Σ_k G·A                  (weights: w_k = Σ_ij G·A)
- ``ablationcam`` w_k = (y_c − y_c(A with channel k = 0)) / y_c    (K head evaluations per image)
- ``scorecam``    w = softmax_k(y_c(x · norm(upsample(A_k))))     (K model evaluations per image)
- ``cam``         w_k = W_ck (linear GAP→FC heads only) = Σ_ij G
- ``shap``        exact channel Shapley values (2^K head evaluations, K ≤ 16) or permutation
                  sampling (``n_samples`` permutations, ``seed``), with the standard error in
                  ``extra["shap_stderr"]``.
"""
from __future__ import annotations

import math

import numpy as np

from liftcam.engine import tail
from liftcam.engine.errors import InputError
from liftcam.engine.tail import softmax

SHAP_EXACT_MAX_K = 16


class Batch:
    """What a method sees: images ``x``, activation ``A`` and the explainer to run graphs with.

    ``logits`` and ``targets`` are resolved lazily: from a multipliers run when the method has
    one (one pass computes both), else from one head evaluation.
    """

    def __init__(self, explainer, x, A, targets, progress=None):
        self.explainer, self.x, self.A = explainer, x, A
        self._requested = targets          # (N,) int64 or None (predicted class)
        self._logits = None
        self._multipliers = {}
        self.progress = progress

    def multipliers(self, rule: str) -> np.ndarray:
        if rule not in self._multipliers:
            logits, M = self.explainer.multipliers(self.A, self._requested, rule=rule)
            self._multipliers[rule] = M
            self._logits = logits
        return self._multipliers[rule]

    @property
    def logits(self) -> np.ndarray:
        if self._logits is None:
            self._logits = self.explainer.head(self.A)
        return self._logits

    @property
    def targets(self) -> np.ndarray:
        if self._requested is not None:
            return self._requested
        return np.argmax(self.logits, axis=1).astype(np.int64)

    def target_scores(self, logits: np.ndarray, n: int) -> np.ndarray:
        return logits[:, self.targets[n]]


def _spatial_sum(x):
    return x.sum(axis=(2, 3), dtype=np.float32)


def liftcam(b: Batch, **_):
    M = b.multipliers("deeplift")
    w = tail.liftcam_coefficients(b.A, M)
    return w, tail.weighted_sum(b.A, w), {}


def gradcam(b: Batch, **_):
    G = b.multipliers("gradient")
    w = G.mean(axis=(2, 3), dtype=np.float32)
    return w, tail.weighted_sum(b.A, w), {}


def gradcam_pp(b: Batch, **_):
    G = b.multipliers("gradient")
    g2 = G * G
    denom = 2 * g2 + _spatial_sum(b.A)[:, :, None, None] * g2 * G + np.float32(1e-6)
    a = np.where(G != 0, g2 / denom, np.float32(0))
    w = _spatial_sum(np.maximum(G, 0) * a)
    return w, tail.weighted_sum(b.A, w), {}


def xgradcam(b: Batch, **_):
    G = b.multipliers("gradient")
    w = _spatial_sum(G * b.A) / (_spatial_sum(b.A) + np.float32(1e-7))
    return w, tail.weighted_sum(b.A, w), {}


def _elementwise(b: Batch, P):
    """LayerCAM/HiResCAM: S = Σ_k P·A; weights are each channel's total Σ_ij P·A."""
    PA = P * b.A
    return _spatial_sum(PA), PA.sum(axis=1), {}


def layercam(b: Batch, **_):
    return _elementwise(b, np.maximum(b.multipliers("gradient"), 0))


def hirescam(b: Batch, **_):
    return _elementwise(b, b.multipliers("gradient"))


def cam(b: Batch, **_):
    if not b.explainer.bundle.manifest.get("head", {}).get("linear"):
        raise InputError(
            "method 'cam' needs a linear head (global average pooling then one dense layer); "
            "this bundle's head is not linear. Use 'liftcam', which equals CAM on linear heads.")
    w = _spatial_sum(b.multipliers("gradient"))
    return w, tail.weighted_sum(b.A, w), {}


def _channel_variants(A_n, channels):
    """Copies of one activation (K,h,w), the i-th with channel ``channels[i]`` zeroed."""
    out = np.repeat(A_n[None], len(channels), axis=0)
    out[np.arange(len(channels)), channels] = 0
    return out


def ablationcam(b: Batch, **_):
    N, K = b.A.shape[:2]
    w = np.empty((N, K), np.float32)
    step = b.explainer.eval_batch
    for n in range(N):
        c = b.targets[n]
        y = b.logits[n, c]
        scores = np.empty(K, np.float32)
        for k0 in range(0, K, step):
            ks = np.arange(k0, min(K, k0 + step))
            scores[ks] = b.explainer.head(_channel_variants(b.A[n], ks))[:, c]
            _tick(b, len(ks))
        w[n] = (y - scores) / y
    return w, tail.weighted_sum(b.A, w), {}


def scorecam(b: Batch, **_):
    N, K = b.A.shape[:2]
    H, W = b.x.shape[2:]
    w = np.empty((N, K), np.float32)
    step = b.explainer.eval_batch
    for n in range(N):
        c = b.targets[n]
        scores = np.empty(K, np.float32)
        for k0 in range(0, K, step):
            ks = slice(k0, min(K, k0 + step))
            up = tail.upsample_bilinear(b.A[n, ks], (H, W))
            lo = up.min(axis=(1, 2), keepdims=True)
            hi = up.max(axis=(1, 2), keepdims=True)
            masks = (up - lo) / (hi - lo + np.float32(1e-8))
            scores[ks] = b.explainer.predict(b.x[n][None] * masks[:, None])[:, c]
            _tick(b, masks.shape[0])
        w[n] = softmax(scores)
    return w, tail.weighted_sum(b.A, w), {}


def _tick(b: Batch, n: int):
    if b.progress is not None:
        b.progress(n)


def _coalition_values(b: Batch, n: int, masks: np.ndarray) -> np.ndarray:
    """y_c(A ⊙ mask) for each row of ``masks`` (R,K) bool, in float64."""
    c = b.targets[n]
    out = np.empty(len(masks), np.float64)
    step = b.explainer.eval_batch
    for r0 in range(0, len(masks), step):
        m = masks[r0:r0 + step]
        out[r0:r0 + len(m)] = b.explainer.head(b.A[n][None] * m[:, :, None, None])[:, c]
        _tick(b, len(m))
    return out


def shap_exact_weights(K: int) -> tuple:
    """Coalition bit masks (2^K, K) and, per channel, the Shapley weight of each coalition."""
    idx = np.arange(1 << K)
    bits = ((idx[:, None] >> np.arange(K)) & 1).astype(bool)
    size = bits.sum(axis=1)
    fact = [math.factorial(i) for i in range(K + 1)]
    wsize = np.array([fact[s] * fact[K - s - 1] / fact[K] if s < K else 0.0
                      for s in range(K + 1)])
    return bits, wsize[size]


def _shap_exact(b: Batch, n: int):
    K = b.A.shape[1]
    bits, weight = shap_exact_weights(K)
    v = _coalition_values(b, n, bits)
    idx = np.arange(1 << K)
    phi = np.empty(K)
    for k in range(K):
        without = idx[~bits[:, k]]
        phi[k] = np.sum(weight[without] * (v[without | (1 << k)] - v[without]))
    return phi, np.zeros(K)


def _shap_sampled(b: Batch, n: int, n_samples: int, rng):
    K = b.A.shape[1]
    contrib = np.empty((n_samples, K))
    for s in range(n_samples):
        order = rng.permutation(K)
        masks = np.zeros((K + 1, K), bool)
        for i, k in enumerate(order):       # row i+1: the first i+1 channels of the order
            masks[i + 1:, k] = True
        v = _coalition_values(b, n, masks)
        contrib[s, order] = np.diff(v)
    stderr = contrib.std(axis=0, ddof=1) / math.sqrt(n_samples) if n_samples > 1 else \
        np.full(K, np.inf)
    return contrib.mean(axis=0), stderr


def shap(b: Batch, n_samples=None, seed=0, **_):
    N, K = b.A.shape[:2]
    exact = n_samples is None and K <= SHAP_EXACT_MAX_K
    if n_samples is None and not exact:
        n_samples = 64
    if not exact and (not isinstance(n_samples, int) or n_samples < 2):
        raise InputError(f"shap: n_samples must be an int ≥ 2, got {n_samples!r}")
    rng = np.random.default_rng(seed)
    phi = np.empty((N, K), np.float64)
    err = np.empty((N, K), np.float64)
    for n in range(N):
        phi[n], err[n] = _shap_exact(b, n) if exact else _shap_sampled(b, n, n_samples, rng)
    w = phi.astype(np.float32)
    extra = {"shap_stderr": err.astype(np.float32), "shap_exact": exact,
             "shap_samples": 0 if exact else n_samples}
    return w, tail.weighted_sum(b.A, w), extra


METHODS = {
    "liftcam": liftcam,
    "gradcam": gradcam,
    "gradcam++": gradcam_pp,
    "xgradcam": xgradcam,
    "layercam": layercam,
    "hirescam": hirescam,
    "ablationcam": ablationcam,
    "scorecam": scorecam,
    "cam": cam,
    "shap": shap,
}


def evaluations(method: str, N: int, K: int, n_samples=None) -> int:
    """How many head/model evaluations a method makes for N images (for progress bars)."""
    if method in ("ablationcam", "scorecam"):
        return N * K
    if method == "shap":
        if n_samples is None and K <= SHAP_EXACT_MAX_K:
            return N * (1 << K)
        return N * (n_samples or 64) * (K + 1)
    return 0
