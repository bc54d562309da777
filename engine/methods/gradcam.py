"""Grad-CAM (Selvaraju et al., 2017): w_k = mean_ij G, G = ∂y_c/∂A."""
import numpy as np

from liftcam.engine import tail
from liftcam.engine.methods.base import Batch


def gradcam(b: Batch):
    w = b.multipliers("gradient").mean(axis=(2, 3), dtype=np.float32)
    return w, tail.weighted_sum(b.A, w), {}
