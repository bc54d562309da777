"""Score-CAM (Wang et al., 2020): w = softmax_k(y_c(x · norm(upsample(A_k)))), one evaluation of
the whole model per channel and image (batched by ``eval_batch``).

A channel that is zero everywhere (common after a ReLU) has the all-zero mask, so its masked
image is the zero image whatever the input: one evaluation of the zero image per batch serves
every such channel of every image (the same numbers as evaluating each, with fewer runs)."""
import numpy as np

from liftcam.engine import tail
from liftcam.engine.methods.base import Batch


def scorecam(b: Batch):
    N, K = b.A.shape[:2]
    H, W = b.explainer.bundle.image_hw
    channels_last = b.explainer.bundle.layout == "NHWC"
    w = np.empty((N, K), np.float32)
    step = b.explainer.eval_batch
    zero_image_logits = None
    for n in range(N):
        c = b.targets[n]
        scores = np.empty(K, np.float32)
        dead = ~b.A[n].reshape(K, -1).any(axis=1)
        if dead.any():
            if zero_image_logits is None:
                zero_image_logits = b.explainer.predict(np.zeros_like(b.x[:1]))[0]
            scores[dead] = zero_image_logits[c]
            b.tick(int(dead.sum()))
        live = np.flatnonzero(~dead)
        for k0 in range(0, len(live), step):
            ks = live[k0:k0 + step]
            up = tail.upsample_bilinear(b.A[n, ks], (H, W))
            lo = up.min(axis=(1, 2), keepdims=True)
            hi = up.max(axis=(1, 2), keepdims=True)
            masks = (up - lo) / (hi - lo + np.float32(1e-8))
            masks = masks[:, :, :, None] if channels_last else masks[:, None]
            scores[ks] = b.explainer.predict(b.x[n][None] * masks)[:, c]
            b.tick(len(masks))
        w[n] = tail.softmax(scores)
    return w, tail.weighted_sum(b.A, w), {}
