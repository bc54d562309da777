"""CAM (Zhou et al., 2016): w_k = W_ck, the dense layer's weights; for a linear head
(global average pooling then one dense layer) W_ck = Σ_ij G. The registry record marks it
linear-head only, and the explainer refuses other heads."""
from liftcam.engine import tail
from liftcam.engine.methods.base import Batch, spatial_sum


def cam(b: Batch):
    w = spatial_sum(b.multipliers("gradient"))
    return w, tail.weighted_sum(b.A, w), {}
