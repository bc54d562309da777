"""XGrad-CAM (Fu et al., 2020): w_k = Σ_ij G·A / (Σ_ij A + 1e-7)."""
import numpy as np

from liftcam.engine import tail
from liftcam.engine.methods.base import Batch, spatial_sum


def xgradcam(b: Batch):
    G = b.multipliers("gradient")
    w = spatial_sum(G * b.A) / (spatial_sum(b.A) + np.float32(1e-7))
    return w, tail.weighted_sum(b.A, w), {}
