"""LIFT-CAM (Jung & Oh, ICCV 2021): α_k = Σ_ij A·M, M the DeepLIFT multipliers against A⁰ = 0."""
from liftcam.engine import tail
from liftcam.engine.methods.base import Batch


def liftcam(b: Batch):
    w = tail.liftcam_coefficients(b.A, b.multipliers("deeplift"))
    return w, tail.weighted_sum(b.A, w), {}
