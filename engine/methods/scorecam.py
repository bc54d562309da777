"""Score-CAM (Wang et al., 2020): w = softmax_k(y_c(x · norm(upsample(A_k)))), K evaluations
of the whole model per image (batched by ``eval_batch``)."""
import numpy as np

from liftcam.engine import tail
from liftcam.engine.methods.base import Batch


def scorecam(b: Batch):
    N, K = b.A.shape[:2]
    H, W = b.explainer.bundle.image_hw
    channels_last = b.explainer.bundle.layout == "NHWC"
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
            masks = masks[:, :, :, None] if channels_last else masks[:, None]
            scores[ks] = b.explainer.predict(b.x[n][None] * masks)[:, c]
            b.tick(len(masks))
        w[n] = tail.softmax(scores)
    return w, tail.weighted_sum(b.A, w), {}
