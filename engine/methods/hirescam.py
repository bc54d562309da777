"""HiResCAM (Draelos & Carin, 2020): S = Σ_k G·A; weights w_k = Σ_ij G·A."""
from liftcam.engine.methods.base import Batch, spatial_sum


def hirescam(b: Batch):
    PA = b.multipliers("gradient") * b.A
    return spatial_sum(PA), PA.sum(axis=1), {}
