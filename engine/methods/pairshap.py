"""PairSHAP: each channel's Shapley value in the game v(S) = y_c(A with only S kept), estimated
from its first and last marginals (DESIGN.md §1):

    φ̂_k = ½ [(v({k}) − v(∅)) + (v(all) − v(all ∖ {k}))]

The second term is Ablation-CAM's numerator. Exact for every game whose interactions are at
most pairwise (Harsanyi dividends of one or two channels, e.g. v a degree-2 polynomial of the
channel presences m_k: v = c + Σ a_k m_k + Σ_{j<k} b_jk m_j m_k): k's marginal to a coalition
S is then a_k + Σ_{j∈S} b_jk, its mean over coalitions of size s is linear in s, and the
Shapley value, the mean over s = 0 … K−1, is the mean of the two ends: a_k + ½ Σ_j b_jk.

Cost: 2K + 1 head evaluations per image (A = 0, the K single-channel and the K leave-one-out
activations, batched by ``eval_batch``), against 2^K for exact SHAP and K for Ablation-CAM; the
backbone runs once, as for every method. ``extra["pairshap_first"]`` and
``extra["pairshap_last"]`` hold the two marginals (N, K).
"""
import numpy as np

from liftcam.engine import tail
from liftcam.engine.methods.base import Batch, masked_head_values


def evaluations(N: int, K: int, **_) -> int:
    """Head evaluations: 2K + 1 per image."""
    return N * (2 * K + 1)


def pairshap(b: Batch):
    N, K = b.A.shape[:2]
    eye = np.eye(K, dtype=bool)
    # row 0: no channel; rows 1..K: only k; rows K+1..2K: all but k
    masks = np.concatenate([np.zeros((1, K), bool), eye, ~eye])
    first = np.empty((N, K), np.float64)
    last = np.empty((N, K), np.float64)
    for n in range(N):
        v = masked_head_values(b, n, masks)
        first[n] = v[1:K + 1] - v[0]
        last[n] = float(b.logits[n, b.targets[n]]) - v[K + 1:]
    w = (0.5 * (first + last)).astype(np.float32)
    extra = {"pairshap_first": first.astype(np.float32), "pairshap_last": last.astype(np.float32)}
    return w, tail.weighted_sum(b.A, w), extra
