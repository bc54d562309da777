"""What every CAM method works on: :class:`Batch`, and the helpers several methods share.

A method is a function ``fn(batch, **options) -> (weights (N,K), saliency S (N,h,w), extra)``;
the explainer then applies :func:`liftcam.engine.tail.finish` (ReLU, bilinear upsampling,
per-image min-max) to ``S``. Its record in :mod:`liftcam.engine.methods.registry` says what
else the rest of liftcam needs to know about it.
"""
from __future__ import annotations

import numpy as np


class Batch:
    """What a method sees: images ``x``, activation ``A`` and the explainer to run graphs with.

    ``logits`` and ``targets`` are resolved lazily: from a multipliers run when the method has
    one (one pass computes both), else from one head evaluation.
    """

    def __init__(self, explainer, x, A, targets, progress=None, offset=0):
        self.explainer, self.x, self.A = explainer, x, A
        self.offset = offset               # index of x[0] in the whole explain call
        self._requested = targets          # (N,) int64 or None (predicted class)
        self._logits = None
        self._multipliers = {}
        self.progress = progress

    def multipliers(self, rule: str) -> np.ndarray:
        """DeepLIFT multipliers (``"deeplift"``) or gradients (``"gradient"``) of y_c w.r.t. A."""
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

    def tick(self, n: int) -> None:
        """Report ``n`` more head/model evaluations to the progress callback."""
        if self.progress is not None:
            self.progress(n)


def spatial_sum(x: np.ndarray) -> np.ndarray:
    """Σ_ij over the two spatial axes of (N, K, h, w), in float32."""
    return x.sum(axis=(2, 3), dtype=np.float32)


def masked_head_values(b: Batch, n: int, masks: np.ndarray) -> np.ndarray:
    """y_c(A_n ⊙ mask) of image ``n``'s target for each row of ``masks`` (R, K) bool (channel
    kept = True), in float64: ``eval_batch`` masked copies of the activation per head run (so
    at most that many exist at once); ticks the progress."""
    c = b.targets[n]
    out = np.empty(len(masks), np.float64)
    step = b.explainer.eval_batch
    for r0 in range(0, len(masks), step):
        m = masks[r0:r0 + step]
        out[r0:r0 + len(m)] = b.explainer.head(b.A[n][None] * m[:, :, None, None])[:, c]
        b.tick(len(m))
    return out
