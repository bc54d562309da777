"""LayerCAM (Jiang et al., 2021): S = Σ_k ReLU(G)·A; weights w_k = Σ_ij ReLU(G)·A (each
channel's share of the map)."""
import numpy as np

from liftcam.engine.methods.base import Batch, spatial_sum


def layercam(b: Batch):
    PA = np.maximum(b.multipliers("gradient"), 0) * b.A
    return spatial_sum(PA), PA.sum(axis=1), {}
