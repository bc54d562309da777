"""Ablation-CAM (Desai & Ramaswamy, 2020): w_k = (y_c − y_c(A with channel k = 0)) / y_c,
K head evaluations per image (batched by ``eval_batch``)."""
import numpy as np

from liftcam.engine import tail
from liftcam.engine.methods.base import Batch, masked_head_values


def ablationcam(b: Batch):
    N, K = b.A.shape[:2]
    without_one = ~np.eye(K, dtype=bool)        # row k: every channel but k
    w = np.empty((N, K), np.float32)
    for n in range(N):
        y = float(b.logits[n, b.targets[n]])
        w[n] = (y - masked_head_values(b, n, without_one)) / y
    return w, tail.weighted_sum(b.A, w), {}
