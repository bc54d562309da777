"""export/partial_sums.py: α from channel-partial sums equals Σ_ij A·M of the multipliers graph."""
import numpy as np
import onnx
import pytest
import torch
from torch import nn

import liftcam
from liftcam.export.partial_sums import NotApplicable, build_alpha_model, verify


class VGGish(nn.Module):
    """features (ReLU output) -> MaxPool, AdaptiveAvgPool, Flatten, Linear, ReLU, ... (VGG head)."""

    def __init__(self, act=nn.ReLU, pool=True):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU(),
                                      nn.Conv2d(6, 8, 3, padding=1), act())
        self.pool = nn.MaxPool2d(2) if pool else nn.Identity()
        self.avgpool = nn.AdaptiveAvgPool2d(4)
        self.classifier = nn.Sequential(nn.Linear(8 * 16, 32), nn.ReLU(), nn.Dropout(),
                                        nn.Linear(32, 24), nn.ReLU(), nn.Linear(24, 7))

    def forward(self, x):
        return self.classifier(torch.flatten(self.avgpool(self.pool(self.features(x))), 1))


class GapHead(nn.Module):
    def __init__(self):
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 5, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(5, 4)

    def forward(self, x):
        return self.fc(torch.flatten(nn.functional.adaptive_avg_pool2d(self.features(x), 1), 1))


def _bundle(tmp_path, net, size, name="features"):
    torch.manual_seed(0)
    for p in net.parameters():      # non-zero biases: the reference u0 = 0, not z0 = 0
        nn.init.uniform_(p, -0.5, 0.5)
    path = liftcam.export_model(net.eval(), name, input_shape=(3, size, size),
                          out_dir=tmp_path / "b.liftcam")
    load = lambda f: onnx.load(str(path / f))  # noqa: E731
    return load("head.onnx"), load("features.onnx"), load("multipliers_deeplift.onnx")


@pytest.mark.parametrize("size", [8, 16])       # 16: an AveragePool that really averages
def test_alpha_equals_sum_of_A_times_M(tmp_path, size):
    head, feats, mult = _bundle(tmp_path, VGGish(), size)
    K, h, w = [d.dim_value for d in feats.graph.output[0].type.tensor_type.shape.dim[1:]]
    model = build_alpha_model(head, feats, multipliers=mult)
    onnx.checker.check_model(model)
    assert verify(model, mult, (K, h, w), seed=3) < 1e-5
    # completeness through the graph: Σ_k α = y_c(A) - y_c(0)
    import onnxruntime as ort
    s = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    A = np.maximum(np.random.default_rng(1).standard_normal((2, K, h, w)), 0).astype(np.float32)
    t = np.array([1, 5], np.int64)
    logits, alpha = s.run(["logits", "alpha"], {"activation": A, "target": t})
    y0, _ = s.run(["logits", "alpha"], {"activation": np.zeros_like(A), "target": t})
    np.testing.assert_allclose(alpha.sum(1), logits[[0, 1], t] - y0[[0, 1], t], rtol=1e-4,
                               atol=1e-5)


def test_gap_head_refused(tmp_path):
    head, feats, mult = _bundle(tmp_path, GapHead(), 6)
    with pytest.raises(NotApplicable, match="global pooling"):   # M is cheaper there
        build_alpha_model(head, feats, multipliers=mult)


def test_maxpool_needs_nonnegative_activation(tmp_path):
    head, feats, mult = _bundle(tmp_path, VGGish(act=nn.Tanh), 8)
    with pytest.raises(NotApplicable, match="non-negative"):
        build_alpha_model(head, feats, multipliers=mult)


def test_non_per_channel_op_refused(tmp_path):
    class Mixer(VGGish):
        def forward(self, x):
            a = self.avgpool(self.pool(self.features(x)))
            a = a + a.mean(1, keepdim=True)          # mixes channels
            return self.classifier(torch.flatten(a, 1))

    head, feats, mult = _bundle(tmp_path, Mixer(), 8)
    with pytest.raises(NotApplicable):
        build_alpha_model(head, feats, multipliers=mult)


def test_exported_alpha_graph_shares_weights_explainer_uses_it(tmp_path):
    """The exporter writes alpha_deeplift.onnx with its dense weights in the bundle's shared
    weights.bin (no copy inside the graph), and Explainer's CPU LIFT-CAM through it equals the
    multipliers path."""
    import json

    from liftcam.engine.bundle import load_bundle

    _bundle(tmp_path, VGGish(), 16)
    path = tmp_path / "b.liftcam"
    assert json.loads((path / "manifest.json").read_text())["graphs"]["alpha_deeplift"]
    alpha = onnx.load(str(path / "alpha_deeplift.onnx"), load_external_data=False)
    external = {t.name: {e.key: e.value for e in t.external_data}
                for t in alpha.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL}
    assert any("classifier.0.weight" in n for n in external)        # the big fc6 weight
    assert {d["location"] for d in external.values()} == {"weights.bin"}
    assert (path / "alpha_deeplift.onnx").stat().st_size < (path / "weights.bin").stat().st_size
    with_alpha = liftcam.Explainer(path, path="alpha")
    plain = liftcam.Explainer(load_bundle(path), path="multipliers")
    x = np.random.default_rng(0).standard_normal((3, 3, 16, 16)).astype(np.float32)
    for t in (None, [0, 6, 2]):
        a, b = with_alpha.explain(x, t), plain.explain(x, t)
        assert "alpha_deeplift" in with_alpha._sessions and "alpha_deeplift" not in plain._sessions
        np.testing.assert_array_equal(a.targets, b.targets)
        for k in ("logits", "weights", "low_res", "maps"):    # the sums are reassociated
            ref = getattr(b, k)
            np.testing.assert_allclose(getattr(a, k), ref, rtol=0, atol=1e-5 * np.abs(ref).max())
