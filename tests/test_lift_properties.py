"""Properties of the multipliers graphs: completeness, linear heads, batching, predicted target."""
import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lift_heads import (
    ACTIVATIONS,
    BNHead,
    Runner,
    assert_close,
    draw_activation,
    export_head,
    multipliers_model,
    pool_head,
)

SETTINGS = dict(deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))

# pools with non-overlapping max windows (completeness does not hold for overlapping max-pool)
POOLS = {
    "none": nn.Identity, "max2": lambda: nn.MaxPool2d(2), "avg2": lambda: nn.AvgPool2d(2),
    "avg3s2p1": lambda: nn.AvgPool2d(3, 2, 1),
    "avg3s1p1_nopad": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
}


class RandomHead(nn.Module):
    """A small head assembled from the supported ops, switched by a hypothesis-drawn config."""

    def __init__(self, cfg, k, c):
        super().__init__()
        torch.manual_seed(cfg["seed"])
        self.cfg = cfg
        self.res_conv = nn.Conv2d(k, k, 3, padding=1)
        self.res_act = ACTIVATIONS[cfg["act2"]]()
        self.conv = nn.Conv2d(k, 8, 3, padding=1, stride=cfg["stride"])
        self.act = ACTIVATIONS[cfg["act"]]()
        self.bn = nn.BatchNorm2d(8)
        self.pool = POOLS[cfg["pool"]]()
        self.fc1, self.fc2 = nn.Conv2d(8, 8, 1), nn.Conv2d(8, 8, 1)
        self.gate_act = ACTIVATIONS[cfg["act2"]]()
        self.fc = nn.LazyLinear(c)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.3, 0.3)
            self.bn.running_var.uniform_(0.5, 1.5)
            self.bn.weight.uniform_(0.5, 1.5)
        self.eval()

    def forward(self, x):
        cfg = self.cfg
        if cfg["residual"]:
            x = x + self.res_conv(self.res_act(x))
        x = self.act(self.conv(x))
        if cfg["bn"]:
            x = self.bn(x)
        if cfg["pad"]:
            x = F.pad(x, (1, 0, 0, 1), value=0.3)
        x = self.pool(x)
        if cfg["gate"]:
            x = x * torch.sigmoid(self.fc2(self.gate_act(self.fc1(x.mean((2, 3), keepdim=True)))))
        if cfg["shapeops"]:
            a, b = torch.split(x, [3, 5], dim=1)
            x = torch.cat([0.5 * b, a.transpose(2, 3)], dim=1)[:, :, 1:]
        if cfg["tail"] == "gap":
            x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(torch.flatten(x, 1))


configs = st.fixed_dictionaries({
    "seed": st.integers(0, 10_000), "act": st.sampled_from(sorted(ACTIVATIONS)),
    "act2": st.sampled_from(sorted(ACTIVATIONS)), "stride": st.sampled_from([1, 2]),
    "pool": st.sampled_from(sorted(POOLS)), "residual": st.booleans(), "bn": st.booleans(),
    "pad": st.booleans(), "gate": st.booleans(), "shapeops": st.booleans(),
    "tail": st.sampled_from(["gap", "flatten"]), "kind": st.sampled_from(["relu", "normal"]),
    "batch": st.integers(1, 3),
})


@settings(max_examples=25, **SETTINGS)
@given(cfg=configs)
def test_completeness(cfg):
    k, hw, c = 8, 8, 4  # k = 8: PReLU(8) fits the residual branch too
    head = RandomHead(cfg, k, c)
    A = draw_activation((cfg["batch"], k, hw, hw), seed=cfg["seed"], kind=cfg["kind"]) * 1.5
    head(A)  # materialise LazyLinear
    run = Runner(multipliers_model(export_head(head, A), "deeplift"))
    y, M = run(A.numpy(), -1)
    y0, _ = run(np.zeros((1, k, hw, hw), np.float32), 0)
    t = y.argmax(1)
    delta = y[np.arange(len(t)), t] - y0[0, t]
    total = (A.numpy().astype(np.float64) * M).reshape(len(t), -1).sum(1)
    scale = np.abs(A.numpy() * M).reshape(len(t), -1).sum(1) + np.abs(delta) + 1e-6
    assert np.all(np.abs(total - delta) <= 1e-4 * scale), (total, delta)


@settings(max_examples=20, **SETTINGS)
@given(k=st.integers(1, 12), h=st.integers(1, 6), w=st.integers(1, 6), c=st.integers(1, 7),
       seed=st.integers(0, 10_000), rule=st.sampled_from(["deeplift", "gradient"]))
def test_linear_head_alpha_is_exact(k, h, w, c, seed, rule):
    torch.manual_seed(seed)
    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(k, c)).eval()
    A = draw_activation((2, k, h, w), seed=seed, kind="relu" if seed % 2 else "normal")
    run = Runner(multipliers_model(export_head(head, A), rule))
    target = np.array([seed % c, (seed + 1) % c])
    _, M = run(A.numpy(), target)
    alpha = (A.numpy() * M).sum((2, 3))
    W = head[2].weight.detach().numpy()
    expect = W[target] * A.numpy().mean((2, 3))
    assert_close(alpha, expect, rtol=1e-5)


@pytest.mark.parametrize("rule", ["deeplift", "gradient"])
@pytest.mark.parametrize("which", ["bn_gate", "maxpool"])
def test_batch_17_equals_batch_1_and_predicted_target(rule, which):
    head = BNHead() if which == "bn_gate" else pool_head(nn.MaxPool2d(3, 2, 1), hw=7)
    shape = (17, 6, 6, 6) if which == "bn_gate" else (17, 6, 7, 7)
    A = draw_activation(shape, seed=31, kind="normal")
    run = Runner(multipliers_model(export_head(head, A[:2]), rule))
    targets = np.arange(17) % 5
    y, M = run(A.numpy(), targets)
    for i in range(17):
        yi, Mi = run(A[i:i + 1].numpy(), targets[i:i + 1])
        np.testing.assert_allclose(yi, y[i:i + 1], rtol=1e-5, atol=1e-6)
        assert_close(M[i:i + 1], Mi, rtol=1e-5)
    yp, Mp = run(A.numpy(), np.full(17, -1))
    ya, Ma = run(A.numpy(), y.argmax(1))
    np.testing.assert_array_equal(Mp, Ma)
    # mixed: some images ask for the predicted class
    mixed = np.where(np.arange(17) % 2 == 0, -1, targets)
    _, Mm = run(A.numpy(), mixed)
    np.testing.assert_array_equal(Mm[0::2], Ma[0::2])
    np.testing.assert_array_equal(Mm[1::2], M[1::2])
