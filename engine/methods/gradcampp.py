"""Grad-CAM++ (Chattopadhyay et al., 2018), as pytorch-grad-cam computes it:
a = G²/(2G² + (Σ_ij A)·G³ + 1e-6) (0 where G = 0), w_k = Σ_ij ReLU(G)·a."""
import numpy as np

from liftcam.engine import tail
from liftcam.engine.methods.base import Batch, spatial_sum


def gradcam_pp(b: Batch):
    G = b.multipliers("gradient")
    g2 = G * G
    denom = 2 * g2 + spatial_sum(b.A)[:, :, None, None] * g2 * G + np.float32(1e-6)
    a = np.where(G != 0, g2 / denom, np.float32(0))
    w = spatial_sum(np.maximum(G, 0) * a)
    return w, tail.weighted_sum(b.A, w), {}
