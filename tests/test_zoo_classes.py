"""The failure classes of the model-zoo sweep (benchmarks/zoo.py), each reproduced on a small
hand-built model: shape reads of the input, shapes ONNX inference cannot see, normalisation
ops, verification against the ONNX baseline, and a silently shallow default layer."""
import json
import math

import numpy as np
import pytest
import torch
import torch.nn as nn
import torch.nn.functional as F
from lift_heads import (
    Runner,
    assert_close,
    draw_activation,
    export_head,
    multipliers_model,
    torch_grad,
)
from onnx import helper, numpy_helper

import liftcam
from liftcam.engine.errors import ExportError, LayerError

SHAPE = (3, 32, 32)


def _manifest(path):
    return json.loads((path / "manifest.json").read_text())


def _export(model, tmp_path, layer=None, name="b"):
    return liftcam.export_model(model, layer, SHAPE, out_dir=tmp_path / name, overwrite=True)


def _logits_match(model, bundle):
    x = torch.randn(2, *SHAPE, generator=torch.Generator().manual_seed(123))
    with torch.no_grad():
        ref = model(x).numpy()
    got = liftcam.Explainer(bundle, threads=1).explain(x.numpy(), method="gradcam").logits
    assert_close(got, ref, rtol=1e-4)


# ------------------------------------------------------------------ 1. shape reads of the input
class BatchRead(nn.Module):
    """efficientnet_pytorch's pattern: ``bs = inputs.size(0)`` first, ``view(bs, -1)`` last,
    plus a float tensor made from the input's shape alone (new_zeros(bs, C))."""

    def __init__(self, skip=False):
        super().__init__()
        torch.manual_seed(0)
        self.stem, self.block = nn.Conv2d(3, 8, 3, 2, 1), nn.Conv2d(8, 8, 3, 1, 1)
        self.fc, self.skip = nn.Linear(8, 5), skip

    def forward(self, inputs):
        bs = inputs.size(0)
        s = torch.relu(self.stem(inputs))
        x = torch.relu(self.block(s))
        if self.skip:            # a genuine skip connection across the cut at "block"
            x = x + s
        x = F.adaptive_avg_pool2d(x, 1)
        return self.fc(x.view(bs, -1)) + inputs.new_zeros(bs, 5)


def test_shape_read_of_the_input_is_not_a_skip_connection(tmp_path):
    model = BatchRead().eval()
    cands = {c["name"]: c for c in liftcam.candidate_layers(model, SHAPE)}
    assert cands["block"]["cuttable"] and cands["block"]["crossing"] == []
    bundle = _export(model, tmp_path)
    assert _manifest(bundle)["target_layer"]["name"] == "block"
    _logits_match(model, bundle)
    _logits_match(model, _export(model, tmp_path, "stem", "stem"))


def test_genuine_skip_connection_still_refused(tmp_path):
    with pytest.raises(LayerError, match="skip connection crosses the cut"):
        _export(BatchRead(skip=True).eval(), tmp_path, "block")


# ------------------------------------------------------------------ 2. shapes inference misses
class SamePadConv(nn.Conv2d):
    """TF "same" padding with pads computed from the input's size (Conv2dDynamicSamePadding)."""

    def forward(self, x):
        ih, iw = x.size()[-2:]
        kh, kw = self.weight.size()[-2:]
        sh, sw = self.stride
        ph = max((math.ceil(ih / sh) - 1) * sh + kh - ih, 0)
        pw = max((math.ceil(iw / sw) - 1) * sw + kw - iw, 0)
        x = F.pad(x, [pw // 2, pw - pw // 2, ph // 2, ph - ph // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride)


class SameNet(nn.Module):
    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.stem, self.block = SamePadConv(3, 8, 3, 2), SamePadConv(8, 16, 3, 2)
        self.last, self.fc = SamePadConv(16, 16, 3, 1), nn.Linear(16, 5)

    def forward(self, x):
        x = torch.relu(self.last(torch.relu(self.block(torch.relu(self.stem(x))))))
        return self.fc(F.adaptive_avg_pool2d(x, 1).flatten(1))


def test_shapes_inference_cannot_see_are_measured(tmp_path):
    from liftcam.export.capture import torch_to_onnx
    from liftcam.export.split import activation_shapes

    model = SameNet().eval()
    onnx_model, names, _, _ = torch_to_onnx(model, SHAPE, None)
    (last,) = [t for t, ns in names.items() if "last" in ns]
    assert activation_shapes(onnx_model, SHAPE)[last] == (1, 16, 8, 8)
    cands = liftcam.candidate_layers(model, SHAPE)
    assert [c["name"] for c in cands[:3]] == ["last", "block", "stem"]
    bundle = _export(model, tmp_path)
    assert _manifest(bundle)["activation"]["shape"] == [None, 16, 8, 8]
    _logits_match(model, bundle)


# ------------------------------------------------------------------ 3. normalisation rules
class LNChannelsLast(nn.Module):
    """ConvNeXt's LayerNorm2d (permute, layer_norm over C, permute back) and its head's
    LayerNorm after pooling."""

    def __init__(self, k=6, c=5):
        super().__init__()
        torch.manual_seed(2)
        self.conv, self.ln, self.ln2 = nn.Conv2d(k, 8, 3, padding=1), nn.LayerNorm(8), \
            nn.LayerNorm(8)
        self.fc = nn.Linear(8, c)
        with torch.no_grad():
            for ln in (self.ln, self.ln2):
                ln.weight.uniform_(0.5, 1.5)
                ln.bias.uniform_(-0.3, 0.3)

    def forward(self, x):
        x = self.ln(self.conv(x).permute(0, 2, 3, 1)).permute(0, 3, 1, 2)
        x = F.gelu(x)
        return self.fc(self.ln2(x.mean((2, 3))))


def norm_head(kind, k=6, c=5):
    torch.manual_seed(3)
    norm = {"group": nn.GroupNorm(2, 8), "instance": nn.InstanceNorm2d(8, affine=True)}[kind]
    with torch.no_grad():
        norm.weight.uniform_(0.5, 1.5)
        norm.bias.uniform_(-0.3, 0.3)
    return nn.Sequential(nn.Conv2d(k, 8, 3, padding=1), norm, nn.ReLU(), nn.Conv2d(8, 8, 1),
                         nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, c)).eval()


HEADS = {"layer": lambda: LNChannelsLast().eval(), "group": lambda: norm_head("group"),
         "instance": lambda: norm_head("instance")}
OP_OF = {"layer": "LayerNormalization", "group": "InstanceNormalization",
         "instance": "InstanceNormalization"}


def _completeness(run, A):
    y, M = run(A.numpy(), -1)
    y0, _ = run(np.zeros((1, *A.shape[1:]), np.float32), 0)
    t = y.argmax(1)
    delta = y[np.arange(len(t)), t] - y0[0, t]
    total = (A.numpy().astype(np.float64) * M).reshape(len(t), -1).sum(1)
    np.testing.assert_allclose(total, delta, rtol=1e-4, atol=1e-5 * np.abs(delta).max())


@pytest.mark.parametrize("kind", sorted(HEADS))
def test_norm_rules_gradient_autograd_and_deeplift_completeness(kind):
    head = HEADS[kind]()
    A = draw_activation((2, 6, 5, 5), seed=31, kind="normal") * 1.5
    onnx_head = export_head(head, A)
    assert OP_OF[kind] in {n.op_type for n in onnx_head.graph.node}
    _, G = Runner(multipliers_model(onnx_head, "gradient"))(A.numpy(), [1, 3])
    assert_close(G, torch_grad(head, A, [1, 3]), rtol=1e-4)
    _completeness(Runner(multipliers_model(onnx_head, "deeplift")), A)


def _decomposition_reference(x, x0, w_row, axes, eps):
    """DeepLIFT multipliers of ``sum(w_row * normalise(x))`` by the stated decomposition
    (Shapley products, Rescale for the inverse square root; with a reference constant over the
    axes the product's exact d-first split), in float64 numpy."""
    def stats(v):
        d = v - v.mean(axis=axes, keepdims=True)
        s = (d * d).mean(axis=axes, keepdims=True) + eps
        return d, s, 1 / np.sqrt(s)
    (d, s, r), (d0, s0, r0) = stats(x), stats(x0)
    if not np.any(d0):   # constant reference: the exact d-first split, m_d = w r
        m_d = w_row * r
        return m_d - m_d.mean(axis=axes, keepdims=True)
    n = np.prod([x.shape[a] for a in axes])
    m_r = (w_row * (d + d0) / 2).sum(axis=axes, keepdims=True)
    m_d = w_row * (r + r0) / 2 + m_r * (r - r0) / (s - s0) / n * (d + d0)
    return m_d - m_d.mean(axis=axes, keepdims=True)


def _group_norm_onnx(c=8, groups=2, hw=4, classes=3, seed=4):
    """activation -> GroupNormalization (opset 21) -> flatten -> Gemm, built by hand."""
    rng = np.random.default_rng(seed)
    scale = rng.uniform(0.5, 1.5, c).astype(np.float32)
    bias = rng.uniform(-0.3, 0.3, c).astype(np.float32)
    w = rng.standard_normal((classes, c * hw * hw)).astype(np.float32)
    nodes = [helper.make_node("GroupNormalization", ["activation", "scale", "bias"], ["n"],
                              num_groups=groups, epsilon=1e-5),
             helper.make_node("Flatten", ["n"], ["f"]),
             helper.make_node("Gemm", ["f", "w"], ["logits"], transB=1)]
    g = helper.make_graph(
        nodes, "gn", [helper.make_tensor_value_info("activation", 1, ["N", c, hw, hw])],
        [helper.make_tensor_value_info("logits", 1, ["N", classes])],
        [numpy_helper.from_array(v, k) for k, v in (("scale", scale), ("bias", bias), ("w", w))])
    model = helper.make_model(g, opset_imports=[helper.make_opsetid("", 21)])
    model.ir_version = 10
    return model, scale, bias, w


def test_group_normalization_op_gradient_and_deeplift_reference():
    model, scale, bias, w = _group_norm_onnx()
    A = draw_activation((2, 8, 4, 4), seed=32, kind="normal") + 0.3
    At = A.clone().requires_grad_(True)
    y = F.linear(F.group_norm(At, 2, torch.from_numpy(scale), torch.from_numpy(bias),
                              1e-5).flatten(1), torch.from_numpy(w))
    (g,) = torch.autograd.grad(y[:, 2].sum(), At)
    _, G = Runner(multipliers_model(model, "gradient"))(A.numpy(), 2)
    assert_close(G, g.numpy(), rtol=1e-4)
    run = Runner(multipliers_model(model, "deeplift"))
    _, M = run(A.numpy(), 2)
    x = A.numpy().astype(np.float64).reshape(2, 2, -1)
    wr = (w[2].reshape(8, 4, 4) * scale[:, None, None]).reshape(1, 2, -1).astype(np.float64)
    ref = _decomposition_reference(x, np.zeros_like(x) + 0.0, wr, (2,), 1e-5)
    # the reference x0 = 0 is constant over each group: d0 = 0, so no r0 = 1/sqrt(eps) enters
    assert_close(M, ref.reshape(M.shape), rtol=1e-4)
    _completeness(run, A)


def test_convnext_and_groupnorm_models_export(tmp_path):
    class Tiny(nn.Module):
        def __init__(self, norm):
            super().__init__()
            torch.manual_seed(5)
            self.stem, self.norm = nn.Conv2d(3, 8, 4, 4), norm
            self.block, self.head = nn.Conv2d(8, 8, 3, padding=1), LNChannelsLast(8, 5)

        def forward(self, x):
            x = self.block(self.norm(self.stem(x)))
            return self.head(x)
    for norm in (nn.GroupNorm(2, 8), nn.Identity()):
        model = Tiny(norm).eval()
        bundle = _export(model, tmp_path, "block", type(norm).__name__)
        _logits_match(model, bundle)


# ------------------------------------------------------------------ 4. verification tolerance
class ExportDrift(nn.Module):
    """Its ONNX export differs from eager PyTorch by a relative ``drift`` (as float32 in two
    engines does on deep random-weights models with large logits)."""

    def __init__(self, drift):
        super().__init__()
        torch.manual_seed(6)
        self.conv, self.fc, self.drift = nn.Conv2d(3, 8, 3, 2, 1), nn.Linear(8, 5), drift

    def forward(self, x):
        y = self.fc(F.adaptive_avg_pool2d(torch.relu(self.conv(x)), 1).flatten(1))
        if torch.onnx.is_in_onnx_export():
            y = y * (1.0 + self.drift)
        return y


def test_verification_holds_split_to_onnx_and_torch_to_its_baseline(tmp_path):
    m = _manifest(_export(ExportDrift(1e-3).eval(), tmp_path))["verification"]
    assert m["max_relative_error"] <= m["rtol"] == 1e-5
    assert 5e-4 < m["onnx_baseline_error"] < 2e-3
    assert m["reference_relative_error"] <= m["reference_rtol"]
    with pytest.raises(ExportError, match="ONNX export of the model does not reproduce it"):
        _export(ExportDrift(0.05).eval(), tmp_path, name="c")


def test_a_wrong_cut_is_still_refused():
    from liftcam.export.api import _check_split
    from liftcam.export.capture import torch_to_onnx
    from liftcam.export.split import split

    model = ExportDrift(0.0).eval()
    om, names, logits, x = torch_to_onnx(model, SHAPE, ["conv"])
    (tensor,) = names
    features, head = split(om, tensor, (8, 16, 16))
    assert _check_split(features, head, "image", x, logits, None, om)["split"] <= 1e-5
    for init in head.graph.initializer:            # a head that is off by 1e-4 relative
        if len(init.dims) == 2:
            init.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(init) * 1.0001,
                                                  init.name))
    with pytest.raises(ExportError, match="against the unsplit ONNX model"):
        _check_split(features, head, "image", x, logits, None, om)


# ------------------------------------------------------------------ 5. shallow default
class LongSkip(nn.Module):
    """Every last-stage layer is crossed by a skip from the previous stage (pooled and added to
    the pooled last stage): the only cuttable 4-D layers are shallow."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(7)
        self.stage1 = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU())
        self.stage2 = nn.Sequential(nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.Conv2d(8, 8, 1))
        self.fc = nn.Linear(8, 5)

    def forward(self, x):
        s1 = self.stage1(x)
        s2 = self.stage2(s1)
        return self.fc(F.adaptive_avg_pool2d(s2, 1).flatten(1) + s1.mean((2, 3)))


def test_default_layer_is_in_the_last_stage_or_refused_with_reasons(tmp_path):
    with pytest.raises(ExportError, match=r"last stage \(8x8\).*stage2.*needs"):
        _export(LongSkip().eval(), tmp_path)
    # the shallow layer is still there to be asked for by name
    _logits_match(LongSkip().eval(), _export(LongSkip().eval(), tmp_path, "stage1", "s1"))


def test_norm_rules_are_registered():
    from liftcam.export.lift import registry

    for op in ("LayerNormalization", "InstanceNormalization", "GroupNormalization"):
        assert op in registry.RULES and op in registry.LIMITS


# ------------------------------------------------------------------ 6. Where with a fixed condition
class WhereHead(nn.Module):
    """A fixed selection (a constant mask, as exporters emit for padding and adaptive pooling)
    between two functions of the activation, and one branch a constant."""

    def __init__(self, data_dependent=False):
        super().__init__()
        torch.manual_seed(7)
        self.conv, self.act, self.fc = nn.Conv2d(6, 8, 3, padding=1), nn.ReLU(), nn.Linear(8, 5)
        self.register_buffer("mask", torch.rand(1, 6, 5, 5) > 0.4)
        self.data_dependent = data_dependent

    def forward(self, x):
        cond = x > 0.3 if self.data_dependent else self.mask
        x = torch.where(cond, x, -0.5 * x)
        x = self.act(self.conv(x))           # a module, so that Captum applies its rule
        x = torch.where(self.mask[:, :1, :, 0:1].expand(1, 8, 5, 1), x, torch.zeros(()))
        return self.fc(x.mean((2, 3)))


def test_where_with_a_fixed_condition_gradient_deeplift_and_captum():
    from lift_heads import captum_deeplift

    head = WhereHead().eval()
    A = draw_activation((2, 6, 5, 5), seed=41, kind="normal")
    onnx_head = export_head(head, A)
    assert "Where" in {n.op_type for n in onnx_head.graph.node}
    _, G = Runner(multipliers_model(onnx_head, "gradient"))(A.numpy(), [1, 3])
    assert_close(G, torch_grad(head, A, [1, 3]), rtol=1e-4)
    run = Runner(multipliers_model(onnx_head, "deeplift"))
    _completeness(run, A)
    _, M = run(A.numpy(), [1, 3])
    assert_close(M, captum_deeplift(head, A, [1, 3]), rtol=1e-4)


def test_where_on_the_activation_itself_gradient_only():
    head = WhereHead(data_dependent=True).eval()
    A = draw_activation((2, 6, 5, 5), seed=42, kind="normal")
    onnx_head = export_head(head, A)
    with pytest.raises(ExportError, match="Where with a condition that depends on the activation"):
        multipliers_model(onnx_head, "deeplift")
    _, G = Runner(multipliers_model(onnx_head, "gradient"))(A.numpy(), [0, 4])
    assert_close(G, torch_grad(head, A, [0, 4]), rtol=1e-4)


# ------------------------------------------------------------------ 7. GatherND (adaptive pooling)
class AdaptiveHead(nn.Module):
    """Adaptive average pooling to a size that does not divide the input (VGG's 7x7 at a small
    input): TorchScript refuses it; the dynamo exporter writes overlapping windows as GatherND
    with repeated indices plus a Where that masks the padding of the shorter windows."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(8)
        self.conv, self.act = nn.Conv2d(6, 8, 3, padding=1), nn.ReLU()
        self.pool, self.fc = nn.AdaptiveAvgPool2d((3, 3)), nn.Linear(72, 5)

    def forward(self, x):
        return self.fc(self.pool(self.act(self.conv(x))).flatten(1))


def _export_head_dynamo(head, A):
    pytest.importorskip("onnxscript")        # torch.onnx.export(dynamo=True) needs it
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        prog = torch.onnx.export(head, (A,), dynamo=True, input_names=["activation"],
                                 output_names=["logits"], verbose=False,
                                 dynamic_shapes=({0: torch.export.Dim("N", min=1, max=64)},))
    return prog.model_proto


def test_gathernd_adaptive_pooling_gradient_deeplift_and_captum():
    from lift_heads import captum_deeplift

    head = AdaptiveHead().eval()
    A = draw_activation((2, 6, 5, 5), seed=43, kind="normal")
    onnx_head = _export_head_dynamo(head, A)
    assert {"GatherND", "Where"} <= {n.op_type for n in onnx_head.graph.node}
    _, G = Runner(multipliers_model(onnx_head, "gradient"))(A.numpy(), [2, 4])
    assert_close(G, torch_grad(head, A, [2, 4]), rtol=1e-4)
    m = multipliers_model(onnx_head, "deeplift")
    scatter = [n for n in m.graph.node if n.op_type == "ScatterND"]
    assert scatter and all(helper.get_attribute_value(a) == b"add"
                           for n in scatter for a in n.attribute if a.name == "reduction")
    run = Runner(m)
    _completeness(run, A)
    _, M = run(A.numpy(), [2, 4])
    assert_close(M, captum_deeplift(head, A, [2, 4]), rtol=1e-4)


def test_model_with_non_dividing_adaptive_pool_exports(tmp_path):
    pytest.importorskip("onnxscript")

    class SmallVGG(nn.Module):
        def __init__(self):
            super().__init__()
            torch.manual_seed(9)
            self.features = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.ReLU(),
                                          nn.Conv2d(8, 8, 3, 2, 1), nn.ReLU(), nn.MaxPool2d(2))
            self.head = AdaptiveHead()

        def forward(self, x):
            return self.head(self.features(x)[:, :6])

    model = SmallVGG().eval()
    bundle = _export(model, tmp_path, "features")
    v = _manifest(bundle)["verification"]
    assert v["max_relative_error"] <= v["rtol"]
    _logits_match(model, bundle)
