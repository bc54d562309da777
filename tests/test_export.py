"""The exporter: torch and ONNX models split exactly, with a dynamic batch axis, weights stored
once, the default target layer rule, candidate_layers, and clear errors.

Every model has random weights (nothing is downloaded) and ``num_classes=10``. The checks use
fresh random inputs (never the exporter's own verification inputs) and plain ONNX Runtime
sessions on the bundle's files, compared against the PyTorch model.
"""
from __future__ import annotations

import functools
import hashlib
import json
import warnings
from dataclasses import dataclass

import numpy as np
import pytest

torch = pytest.importorskip("torch")
torchvision = pytest.importorskip("torchvision")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from conftest import TINY_LABELS, TINY_SHAPE  # noqa: E402
from torch import nn  # noqa: E402

import liftcam  # noqa: E402
from liftcam.engine.bundle import FORMAT_VERSION, MANIFEST, REQUIRED_GRAPHS, WEIGHTS  # noqa: E402
from liftcam.engine.errors import ExportError  # noqa: E402
from liftcam.engine.onnx_scan import external_data_locations  # noqa: E402

S64 = (3, 64, 64)
RTOL = 1e-4
POOLING = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "ReduceMean"}


# ----------------------------------------------------------------------------- models
class MaxPoolNet(nn.Module):
    """A VGG-like CNN: in-place ReLU at the target layer, max-pool + MLP head, LogSoftmax."""

    def __init__(self):
        super().__init__()
        torch.manual_seed(1)
        self.features = nn.Sequential(
            nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(inplace=True))
        self.pool = nn.MaxPool2d(2)
        self.fc1 = nn.Linear(32 * 8 * 8, 64)
        self.relu = nn.ReLU()
        self.fc2 = nn.Linear(64, 10)

    def logits(self, x):
        return self.fc2(self.relu(self.fc1(self.pool(self.features(x)).flatten(1))))

    def forward(self, x):
        return torch.log_softmax(self.logits(x), dim=1)


class TwoOutputs(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        a = self.conv(x)
        return self.fc(a.mean((2, 3))), a


@functools.lru_cache(maxsize=None)
def _tv(arch):
    """A torchvision model with random weights (cached: export it, never modify it)."""
    torch.manual_seed(0)
    return getattr(torchvision.models, arch)(num_classes=10).eval()


def _model(arch):
    if arch == "maxpool_net":
        return MaxPoolNet().eval()
    if arch == "tiny":
        from conftest import make_tiny_cnn

        return make_tiny_cnn()
    return _tv(arch)


def _logits_fn(arch, model):
    """The model's logits (for the softmax-ending models: the logits before the softmax)."""
    if arch == "maxpool_net":
        return model.logits
    if arch == "tiny":
        return model[:-1]
    return model


def _param_bytes(model):
    return sum(p.numel() * p.element_size() for p in model.parameters())


def _to_onnx(model, shape, path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, *shape), str(path), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"],
                          dynamic_axes={"input": {0: "batch"}, "output": {0: "batch"}})
    return path


@functools.lru_cache(maxsize=None)
def _onnx_file(arch, shape, folder):
    from pathlib import Path

    return _to_onnx(_model(arch), shape, Path(folder) / f"{arch}.onnx")


# ----------------------------------------------------------------------------- checking helpers
def _rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _session(path):
    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    return ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])


def _images(n, shape, seed):
    # seed >= 100: never the exporter's own verification inputs (torch seed 0 / numpy seed 0)
    return np.random.default_rng(100 + seed).standard_normal((n, *shape)).astype(np.float32)


def _torch(fn, x):
    with torch.no_grad():
        return fn(torch.from_numpy(x)).numpy()


def _activation(model, layer, x):
    """The output of ``model``'s sub-module ``layer`` on ``x`` (cloned before in-place ops)."""
    seen = {}
    h = model.get_submodule(layer).register_forward_hook(
        lambda m, i, o: seen.__setitem__("a", o.detach().clone()))
    try:
        with torch.no_grad():
            model(torch.from_numpy(x))
    finally:
        h.remove()
    return seen["a"].numpy()


def _check_files_and_size(path, manifest, param_bytes):
    on_disk = {p.name for p in path.iterdir()}
    assert set(manifest["files"]) == on_disk - {MANIFEST}
    for name, entry in manifest["files"].items():
        data = (path / name).read_bytes()
        assert entry["sha256"] == hashlib.sha256(data).hexdigest()
        assert entry["bytes"] == len(data)
        if name.endswith(".onnx"):   # every graph's external data is the one shared file
            assert set(external_data_locations(data)) <= {WEIGHTS}
    # weights are stored once: the graphs' external tensors are disjoint regions of weights.bin
    # that cover it (up to 64-byte alignment), and a tensor shared by several graphs (the
    # head's weights) is one region
    regions = {}
    for name in manifest["files"]:
        if name.endswith(".onnx"):
            for t in onnx.load(str(path / name), load_external_data=False).graph.initializer:
                if t.data_location == onnx.TensorProto.EXTERNAL:
                    info = {e.key: e.value for e in t.external_data}
                    regions.setdefault((int(info["offset"]), int(info["length"])), set()).add(
                        t.name.split("/")[-1])
    spans = sorted(regions)
    assert all(a[0] + a[1] <= b[0] for a, b in zip(spans, spans[1:]))     # no overlap
    size = (path / WEIGHTS).stat().st_size
    assert spans[-1][0] + spans[-1][1] == size
    assert size <= sum(n for _, n in spans) + 64 * len(spans)           # no unused bytes
    head = onnx.load(str(path / "head.onnx"), load_external_data=False).graph.initializer
    for t in head:      # each of the head's external weights: one region, named in 5 graphs
        if t.data_location == onnx.TensorProto.EXTERNAL:
            assert sum(t.name in names for names in regions.values()) == 1, t.name
    total = sum((path / n).stat().st_size for n in on_disk)
    # the bar (<= 1.1x the parameters) is for real models; a small model's bundle also holds
    # ~100 KB that do not grow with the weights (graph structure, DeepLIFT reference constants)
    slack = 0 if param_bytes > 10e6 else 128 * 1024
    assert total <= 1.1 * param_bytes + slack, (total, param_bytes, total / param_bytes)


def _check_manifest(m, *, shape, input_name, layer, act_shape, stripped, source, linear=None):
    assert m["format_version"] == FORMAT_VERSION
    assert m["input"] == {"name": input_name, "layout": "NCHW", "shape": [None, *shape],
                          "dtype": "float32"}
    pre = m["preprocessing"]
    assert pre["resize"] == list(shape[1:]) and len(pre["mean"]) == len(pre["std"]) == 3
    assert pre["channel_order"] == "RGB"
    assert m["target_layer"]["name"] == layer
    assert isinstance(m["target_layer"]["tensor"], str)
    assert m["activation"] == {"name": "activation", "shape": [None, *act_shape]}
    assert m["num_classes"] == 10
    out = m["output"]
    assert {k: out[k] for k in ("name", "stripped_final")} == {"name": "logits",
                                                              "stripped_final": stripped}
    if source == "pytorch":   # a bare tensor, taken positionally
        assert (out["structure"], out["field"], out["input_keyword"]) == ("Tensor", None, None)
    assert m["opset"] == 17
    assert m["source"]["kind"] == source
    for key in ("liftcam", "onnx", "onnxruntime", "python"):
        assert m["exporter"][key]
    assert ("torch" in m["exporter"]) == (source == "pytorch")
    assert set(REQUIRED_GRAPHS) <= set(m["graphs"]) and "explain" in m["graphs"]
    assert m["verification"]["max_relative_error"] <= RTOL
    if linear is not None:
        assert m["head"]["linear"] is linear


def _check_split(path, logits_fn, shape, seed, model=None, layer=None, softmax_fn=None):
    """head(features(x)) == the model on fresh inputs; batch 5 == five times batch 1."""
    b = liftcam.load_bundle(path)
    feats, head = _session(b.graph("features")), _session(b.graph("head"))
    in_name = b.manifest["input"]["name"]
    assert [i.name for i in feats.get_inputs()] == [in_name]
    assert [i.name for i in head.get_inputs()] == ["activation"]
    x = _images(5, shape, seed)
    (A,) = feats.run(None, {in_name: x})
    (y,) = head.run(None, {"activation": A})
    assert A.shape == (5, *b.activation_shape)
    ref = _torch(logits_fn, x)
    assert _rel(y, ref) <= RTOL
    assert np.abs(ref).max() > 0 and np.ptp(ref, axis=1).min() > 0     # not a degenerate check
    if softmax_fn is not None:      # the stripped softmax, re-applied, gives the model's output
        assert _rel(softmax_fn(torch.from_numpy(y)).numpy(), _torch(model, x)) <= RTOL
    if layer is not None:           # the cut is at the named module's output
        assert _rel(A, _activation(model, layer, x)) <= RTOL
    for i in range(5):              # the batch axis is dynamic and images are independent
        (a1,) = feats.run(None, {in_name: x[i:i + 1]})
        (y1,) = head.run(None, {"activation": a1})
        assert _rel(a1[0], A[i]) <= 1e-5 and _rel(y1[0], y[i]) <= 1e-5
    return b


# ----------------------------------------------------------------------------- torch export
@dataclass(frozen=True)
class Case:
    arch: str
    layer: object           # None: the default; a str; or "@name": pass the module object
    shape: tuple
    expect: str             # the target layer the manifest must record
    linear: object = None   # expected manifest head.linear (None: not checked)
    stripped: object = None

    def __str__(self):
        return f"{self.arch}-{self.layer or 'default'}"


TORCH_CASES = [
    Case("resnet50", None, S64, "layer4", linear=True),
    Case("resnet50", "@layer3", S64, "layer3", linear=False),    # head: 3 bottlenecks + adds
    # TorchScript export of AdaptiveAvgPool2d((7, 7)) needs a multiple of 7: 224 for VGG-16
    Case("vgg16", None, (3, 224, 224), "features.29", linear=False),
    Case("mobilenet_v2", None, S64, "features", linear=True),
    Case("densenet121", None, S64, "features"),
    Case("efficientnet_b0", None, S64, "features", linear=True),
    Case("maxpool_net", None, (3, 32, 32), "features", linear=False, stripped="LogSoftmax"),
]


@pytest.fixture(scope="module", params=TORCH_CASES, ids=str)
def torch_bundle(request, tmp_path_factory):
    case = request.param
    model = _model(case.arch)
    if case.arch == "vgg16":            # big: build it for this case only
        torch.manual_seed(0)
        model = torchvision.models.vgg16(num_classes=10).eval()
    layer = case.layer
    if isinstance(layer, str) and layer.startswith("@"):
        layer = model.get_submodule(layer[1:])
    out = tmp_path_factory.mktemp("torch") / f"{case}.liftcam"
    path = liftcam.export_model(model, layer, input_shape=case.shape, out_dir=out)
    yield case, model, path


def test_torch_export_manifest_and_default_layer(torch_bundle):
    case, model, path = torch_bundle
    m = json.loads((path / MANIFEST).read_text())
    x = _images(1, case.shape, 0)
    act = _activation(model, case.expect, x)
    _check_manifest(m, shape=case.shape, input_name="image", layer=case.expect,
                    act_shape=act.shape[1:], stripped=case.stripped, source="pytorch",
                    linear=case.linear)
    assert m["source"]["class"] == type(model).__name__
    assert model.training is False      # export restores the mode


def test_torch_export_split_is_exact_and_batch_dynamic(torch_bundle):
    case, model, path = torch_bundle
    _check_split(path, _logits_fn(case.arch, model), case.shape, seed=1, model=model,
                 layer=case.expect,
                 softmax_fn=(lambda y: torch.log_softmax(y, 1)) if case.stripped else None)


def test_torch_export_stores_weights_once(torch_bundle):
    case, model, path = torch_bundle
    m = json.loads((path / MANIFEST).read_text())
    _check_files_and_size(path, m, _param_bytes(model))


def test_softmax_cnn_head_outputs_logits(tiny_bundle, tiny_model):
    m = json.loads((tiny_bundle / MANIFEST).read_text())
    _check_manifest(m, shape=TINY_SHAPE, input_name="image", layer="4", act_shape=(64, 16, 16),
                    stripped="Softmax", source="pytorch", linear=True)
    assert m["labels"] == TINY_LABELS
    _check_split(tiny_bundle, tiny_model[:-1], TINY_SHAPE, seed=2, model=tiny_model, layer="4",
                 softmax_fn=lambda y: torch.softmax(y, 1))
    _check_files_and_size(tiny_bundle, m, _param_bytes(tiny_model))


def test_export_restores_training_mode_and_overwrite(tmp_path):
    model = MaxPoolNet().train()
    out = tmp_path / "m.liftcam"
    liftcam.export_model(model, "features.4", input_shape=(3, 32, 32), out_dir=out)
    assert model.training
    first = json.loads((out / MANIFEST).read_text())
    assert first["target_layer"]["name"] == "features.4"
    with pytest.raises(ExportError, match="already exists"):
        liftcam.export_model(model, input_shape=(3, 32, 32), out_dir=out)
    liftcam.export_model(model, "features.1", input_shape=(3, 32, 32), out_dir=out, overwrite=True)
    m = json.loads((out / MANIFEST).read_text())
    assert m["target_layer"]["name"] == "features.1"
    assert m["activation"]["shape"][1:] == [16, 32, 32]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["m.liftcam"]   # no temp dirs left
    liftcam.load_bundle(out)
    # overwrite=True replaces a bundle, never a directory or file that is not one
    precious = tmp_path / "home"
    precious.mkdir()
    (precious / "thesis.tex").write_text("keep me")
    (tmp_path / "file.txt").write_text("keep me too")
    for target in (precious, tmp_path / "file.txt"):
        with pytest.raises(ExportError, match="not a liftcam bundle"):
            liftcam.export_model(model, input_shape=(3, 32, 32), out_dir=target, overwrite=True)
    assert (precious / "thesis.tex").read_text() == "keep me"
    assert (tmp_path / "file.txt").read_text() == "keep me too"


# ----------------------------------------------------------------------------- ONNX export
@dataclass(frozen=True)
class OnnxCase:
    arch: str
    tensor: object          # None: the default
    shape: tuple
    expect: str             # the tensor the default rule must pick (or the named one)
    act_shape: tuple
    stripped: object = None

    def __str__(self):
        return f"{self.arch}-{'default' if self.tensor is None else 'named'}"


L3 = "/layer3/layer3.5/relu_2/Relu_output_0"
ONNX_CASES = [
    OnnxCase("resnet50", None, S64, "/layer4/layer4.2/relu_2/Relu_output_0", (2048, 2, 2)),
    OnnxCase("resnet50", L3, S64, L3, (1024, 4, 4)),
    OnnxCase("mobilenet_v2", None, S64, "/features/features.18/features.18.2/Clip_output_0",
             (1280, 2, 2)),
    OnnxCase("densenet121", None, S64, "/Relu_output_0", (1024, 2, 2)),
    OnnxCase("efficientnet_b0", None, S64, "/features/features.8/features.8.2/Mul_output_0",
             (1280, 2, 2)),
    OnnxCase("densenet121", "/features/denseblock4/Concat_output_0", S64,
             "/features/denseblock4/Concat_output_0", (1024, 2, 2)),
    OnnxCase("maxpool_net", None, (3, 32, 32), "/features/features.4/Relu_output_0",
             (32, 16, 16), stripped="LogSoftmax"),
    OnnxCase("tiny", None, TINY_SHAPE, "/4/Relu_output_0", (64, 16, 16), stripped="Softmax"),
]


@pytest.fixture(scope="module")
def onnx_dir(tmp_path_factory):
    return str(tmp_path_factory.mktemp("onnx"))


@pytest.fixture(scope="module", params=ONNX_CASES, ids=str)
def onnx_bundle(request, onnx_dir, tmp_path_factory):
    case = request.param
    src = _onnx_file(case.arch, case.shape, onnx_dir)
    out = tmp_path_factory.mktemp("fromonnx") / f"{case}.liftcam"
    return case, src, liftcam.export_onnx(src, case.tensor, out_dir=out)


def test_onnx_export_default_rule_and_manifest(onnx_bundle):
    case, src, path = onnx_bundle
    m = json.loads((path / MANIFEST).read_text())
    _check_manifest(m, shape=case.shape, input_name="input", layer=case.expect,
                    act_shape=case.act_shape, stripped=case.stripped, source="onnx")
    assert m["target_layer"]["tensor"] == case.expect
    assert m["source"]["file"] == src.name
    if case.tensor is None:
        # the default rule: the activation feeds the final pooling; candidate_layers agrees
        g = onnx.load(str(src)).graph
        consumers = [n.op_type for n in g.node if case.expect in n.input]
        assert set(consumers) & POOLING, consumers
        assert liftcam.candidate_layers(src, case.shape)[0]["tensor"] == case.expect


def test_onnx_export_split_is_exact_and_batch_dynamic(onnx_bundle):
    case, src, path = onnx_bundle
    model = _model(case.arch)
    b = _check_split(path, _logits_fn(case.arch, model), case.shape, seed=3)
    # the original ONNX file gives the same outputs (so does the torch model, checked above)
    x = _images(3, case.shape, 4)
    (orig,) = _session(src).run(None, {"input": x})
    feats, head = _session(b.graph("features")), _session(b.graph("head"))
    (y,) = head.run(None, {"activation": feats.run(None, {"input": x})[0]})
    got = y if case.stripped is None else _torch(
        (lambda t: torch.softmax(t, 1)) if case.stripped == "Softmax"
        else (lambda t: torch.log_softmax(t, 1)), y)
    assert _rel(got, orig) <= RTOL


def test_onnx_export_stores_weights_once(onnx_bundle):
    case, src, path = onnx_bundle
    m = json.loads((path / MANIFEST).read_text())
    _check_files_and_size(path, m, _param_bytes(_model(case.arch)))


def test_torch_and_onnx_routes_agree(onnx_dir, tmp_path):
    """The same model through export() and export_onnx() cuts at the same activation."""
    model = MaxPoolNet().eval()
    src = _onnx_file("maxpool_net", (3, 32, 32), onnx_dir)
    a = liftcam.load_bundle(liftcam.export_model(model, input_shape=(3, 32, 32),
                                                 out_dir=tmp_path / "a"))
    b = liftcam.load_bundle(liftcam.export_onnx(src, out_dir=tmp_path / "b"))
    x = _images(2, (3, 32, 32), 5)
    (A,) = _session(a.graph("features")).run(None, {"image": x})
    (B,) = _session(b.graph("features")).run(None, {"input": x})
    assert _rel(A, B) <= 1e-5


# ----------------------------------------------------------------------------- candidate_layers
@pytest.fixture(scope="module")
def resnet_candidates():
    return liftcam.candidate_layers(_tv("resnet50"), S64)


def test_candidate_layers_names_shapes_and_order(resnet_candidates):
    c = resnet_candidates
    by_name = {e["name"]: e for e in c}
    assert c[0]["name"] == "layer4" and c[0]["cuttable"]          # the default first
    expected = {"layer1": [256, 16, 16], "layer2": [512, 8, 8], "layer3": [1024, 4, 4],
                "layer4": [2048, 2, 2], "layer3.0.conv2": [256, 4, 4], "maxpool": [64, 16, 16]}
    for name, shape in expected.items():
        assert by_name[name]["shape"] == shape, name
    assert "fc" not in by_name                                     # not 4-D
    assert {"layer4.2", "layer4.2.relu"} <= set(c[0]["aliases"])
    flags = [e["cuttable"] for e in c]
    assert flags == sorted(flags, reverse=True)                    # cuttable ones before others
    assert 0 < sum(flags) < len(flags)
    for e in c:
        assert set(e) == {"name", "tensor", "shape", "op", "cuttable", "crossing", "aliases"}
        assert len(e["shape"]) == 3 and e["cuttable"] == (not e["crossing"])
    # among the cuttable ones, the un-pooled ones with spatial extent > 1 come first, deepest
    # first: layer4 before layer3 before layer2 before layer1
    cut = [e for e in c if e["cuttable"]]
    pref = [e["op"] not in POOLING and e["shape"][1] * e["shape"][2] > 1 for e in cut]
    assert pref == sorted(pref, reverse=True)
    order = [e["name"] for e in cut]
    assert order.index("layer4") < order.index("layer3") < order.index("layer2") \
        < order.index("layer1")


def test_candidate_layers_lists_crossing_tensors(resnet_candidates):
    by_name = {e["name"]: e for e in resnet_candidates}
    inner = by_name["layer3.0.conv2"]
    assert not inner["cuttable"]
    # the skip connection of block layer3.0 carries layer2's output past the cut
    assert inner["crossing"] == [by_name["layer2"]["tensor"]]
    assert by_name["layer3"]["crossing"] == [] and by_name["layer3.0"]["cuttable"]


def test_candidate_layers_onnx(onnx_dir):
    src = _onnx_file("resnet50", S64, onnx_dir)
    c = liftcam.candidate_layers(src, S64)
    by_tensor = {e["tensor"]: e for e in c}
    assert c[0]["tensor"] == "/layer4/layer4.2/relu_2/Relu_output_0"
    assert c[0]["shape"] == [2048, 2, 2] and c[0]["op"] == "Relu" and c[0]["name"] == c[0]["tensor"]
    flags = [e["cuttable"] for e in c]
    assert flags == sorted(flags, reverse=True)
    inner = by_tensor["/layer3/layer3.0/conv2/Conv_output_0"]
    assert inner["crossing"] == ["/layer2/layer2.3/relu_2/Relu_output_0"]
    assert by_tensor[L3]["cuttable"] and by_tensor[L3]["shape"] == [1024, 4, 4]


# ----------------------------------------------------------------------------- errors
def _export_error(fn, *fragments):
    with pytest.raises(ExportError) as info:
        fn()
    msg = str(info.value)
    for f in fragments:
        assert f in msg, f"{f!r} not in error message: {msg}"
    return msg


def test_error_unknown_layer(tmp_path):
    out = tmp_path / "x.liftcam"
    msg = _export_error(lambda: liftcam.export_model(_tv("resnet50"), "layer44", input_shape=S64,
                                               out_dir=out),
                        "'layer44'", "Closest names", "'layer4'", "candidate_layers")
    assert "'conv1'" not in msg
    _export_error(lambda: liftcam.export_model(_tv("resnet50"), nn.ReLU(), input_shape=S64,
                                         out_dir=out), "not a sub-module")
    assert not out.exists()


def test_error_layer_not_4d(tmp_path):
    out = tmp_path / "x.liftcam"
    _export_error(lambda: liftcam.export_model(_tv("resnet50"), "fc", input_shape=S64, out_dir=out),
                  "'fc'", "(2, 10)", "not a 4-D activation")
    assert not out.exists()


def test_error_crossing_skip_connection(tmp_path):
    out = tmp_path / "x.liftcam"
    _export_error(lambda: liftcam.export_model(_tv("resnet50"), "layer3.0.conv2", input_shape=S64,
                                         out_dir=out),
                  "'layer3.0.conv2'", "skip connection", "layer2/layer2.3/relu_2/Relu_output_0")
    assert not out.exists()


def test_error_crossing_skip_connection_onnx(onnx_dir, tmp_path):
    src = _onnx_file("resnet50", S64, onnx_dir)
    _export_error(lambda: liftcam.export_onnx(src, "/layer3/layer3.0/conv2/Conv_output_0",
                                              out_dir=tmp_path / "x"),
                  "skip connection", "['/layer2/layer2.3/relu_2/Relu_output_0']")


def test_two_outputs_tuple_first_tensor(tmp_path):
    """A tuple result: the first tensor is the logits (recorded); output=1 picks the 4-D one,
    which is refused in one line."""
    model = TwoOutputs().eval()
    bundle = liftcam.export_model(model, input_shape=(3, 16, 16), out_dir=tmp_path / "a")
    out = json.loads((bundle / "manifest.json").read_text())["output"]
    assert out["structure"] == "tuple" and out["field"] == 0 and out["input_keyword"] is None
    _export_error(lambda: liftcam.export_model(model, input_shape=(3, 16, 16), output=1,
                                               out_dir=tmp_path / "c"),
                  "(N, num_classes)", "(2, 8, 14, 14)", "field 1 of tuple")
    src = _to_onnx(model, (3, 16, 16), tmp_path / "two.onnx")
    g = onnx.load(str(src)).graph
    assert len(g.output) == 2
    _export_error(lambda: liftcam.export_onnx(src, out_dir=tmp_path / "b"), "2 outputs",
                  "exactly one")
    assert not (tmp_path / "c").exists() and not (tmp_path / "b").exists()


def test_error_onnx_file_missing_or_unreadable(tmp_path):
    _export_error(lambda: liftcam.export_onnx(tmp_path / "nope.onnx", out_dir=tmp_path / "x"),
                  "ONNX file not found", "nope.onnx")
    _export_error(lambda: liftcam.candidate_layers(str(tmp_path / "nope.onnx")),
                  "ONNX file not found")
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"\x0f\xff\xff not onnx")
    _export_error(lambda: liftcam.export_onnx(bad, out_dir=tmp_path / "x"),
                  "not a readable ONNX model")
    assert not (tmp_path / "x").exists()


def test_error_unknown_activation_tensor(onnx_dir, tmp_path):
    src = _onnx_file("resnet50", S64, onnx_dir)
    typo = "/layer4/layer4.2/relu_2/Relu_outptu_0"
    _export_error(lambda: liftcam.export_onnx(src, typo, out_dir=tmp_path / "x"),
                  repr(typo), "Closest 4-D tensors", "'/layer4/layer4.2/relu_2/Relu_output_0'")
    _export_error(lambda: liftcam.export_onnx(src, "/Flatten_output_0", out_dir=tmp_path / "x"),
                  "'/Flatten_output_0'", "not a 4-D activation")
    assert not (tmp_path / "x").exists()


def test_error_labels_and_bad_arguments(tiny_model, tmp_path):
    out = tmp_path / "x.liftcam"
    _export_error(lambda: liftcam.export_model(tiny_model, input_shape=TINY_SHAPE, out_dir=out,
                                         labels=["a", "b", "c"]), "3 labels", "10 classes")
    assert list(tmp_path.iterdir()) == []         # nothing half-written, no temp directory
    _export_error(lambda: liftcam.export_model("model.pt"), "torch.nn.Module", "export_onnx")
    _export_error(lambda: liftcam.export_model(tiny_model, input_shape=(32, 32)), "(C, H, W)")


def test_onnx_with_static_batch_is_made_dynamic(tiny_model, tmp_path):
    src = tmp_path / "static.onnx"
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(tiny_model, torch.zeros(1, *TINY_SHAPE), str(src), dynamo=False,
                          opset_version=17, input_names=["input"], output_names=["output"])
    assert onnx.load(str(src)).graph.input[0].type.tensor_type.shape.dim[0].dim_value == 1
    path = liftcam.export_onnx(src, out_dir=tmp_path / "s.liftcam")
    assert json.loads((path / MANIFEST).read_text())["verification"]["batch_sizes"] == [2, 1]
    _check_split(path, tiny_model[:-1], TINY_SHAPE, seed=6)
