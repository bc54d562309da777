"""explain_raw.onnx: decoded pixels in, the map at the image's own size out.

The reference is the Python pipeline a user runs (Pillow preprocessing, Explainer, place_map,
overlay). Resampling in the graph is ONNX Resize (antialiased, rounded to 8 bits as Pillow
does); the tolerances below are the measured differences, documented in DESIGN.md §8.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

onnx = pytest.importorskip("onnx")
import onnxruntime as ort  # noqa: E402
from PIL import Image  # noqa: E402

from liftcam.contract import COEFFICIENTS, LOGITS, MAP, OVERLAY, PIXELS, TARGET  # noqa: E402
from liftcam.engine import DEMO_DIR  # noqa: E402
from liftcam.engine.bundle import load_bundle  # noqa: E402
from liftcam.engine.errors import ExportError  # noqa: E402
from liftcam.engine.explainer import Explainer  # noqa: E402
from liftcam.engine.images import preprocess  # noqa: E402
from liftcam.engine.maps import overlay, place_map  # noqa: E402
from liftcam.export.raw import CHECK_NODE, build_raw_model  # noqa: E402

VGG = DEMO_DIR / "vgg_demo.liftcam"
BASE = load_bundle(VGG).manifest["preprocessing"]
#: every kind of preprocessing a manifest can hold, with the measured tolerances
#: (max |map difference|, max overlay difference in 8-bit levels)
MODES = {
    "resize-bilinear": (dict(BASE), 0.03, 8),
    "shorter-crop": (dict(BASE, resize=None, resize_shorter=72, center_crop=[64, 64]), 0.03, 8),
    "shorter-padded-crop": (dict(BASE, resize=None, resize_shorter=40, center_crop=[64, 64]),
                            0.03, 8),
    "bicubic-bgr": (dict(BASE, resize_mode="bicubic", channel_order="BGR"), 0.03, 8),
    "nearest-scale": (dict(BASE, resize_mode="nearest", scale=1.0,
                           mean=[120.0, 110.0, 100.0], std=[60.0, 50.0, 70.0]), 1e-4, 2),
    "crop-only": (dict(BASE, resize=None, center_crop=[64, 64]), 1e-4, 2),
}
SIZES = [(311, 17), (17, 311), (64, 64), (97, 203), (2, 2)]     # (width, height)


def _image(size, seed=0):
    """A demo photo resized to ``size`` with some noise, so resampling matters."""
    rng = np.random.default_rng(seed)
    img = Image.open(DEMO_DIR / "star.png").convert("RGB").resize(size, Image.BILINEAR)
    a = np.asarray(img).astype(np.int16) + rng.integers(-20, 21, (size[1], size[0], 3))
    return Image.fromarray(np.clip(a, 0, 255).astype(np.uint8))


@pytest.fixture(scope="module")
def explain_model():
    return onnx.load(str(VGG / "explain.onnx"))


@pytest.fixture(scope="module")
def explainer():
    return Explainer(VGG)


def _session(explain_model, pre):
    raw = build_raw_model(explain_model, pre, (3, 64, 64))
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(raw.SerializeToString(), so)


def _python(explainer, img, pre, target=None):
    e = explainer.explain(preprocess([img], pre), targets=target, method="liftcam")
    full = place_map(e.maps[0], img.size, pre)
    return e, full, np.asarray(overlay(img, full))


@pytest.mark.parametrize("mode", list(MODES))
def test_equals_the_python_pipeline(mode, explain_model, explainer):
    pre, map_tol, overlay_tol = MODES[mode]
    s = _session(explain_model, pre)
    for size in SIZES:
        img = _image(size, seed=size[0])
        logits, w, cam, ov = s.run([LOGITS, COEFFICIENTS, MAP, OVERLAY],
                                   {PIXELS: np.asarray(img), TARGET: np.array([-1])})
        e, full, ov_py = _python(explainer, img, pre, target=int(np.argmax(logits[0])))
        assert cam.shape == (1, size[1], size[0]) and ov.shape == (1, size[1], size[0], 3)
        assert ov.dtype == np.uint8 and 0 <= cam.min() and cam.max() <= 1
        np.testing.assert_allclose(logits, e.logits, atol=0.05 * np.abs(e.logits).max())
        assert np.abs(cam[0] - full).max() <= map_tol, (mode, size)
        assert np.abs(ov[0].astype(int) - ov_py).max() <= overlay_tol, (mode, size)


def test_a_large_photo(explain_model, explainer):
    pre = MODES["shorter-crop"][0]
    img = _image((4000, 3000), seed=4)
    cam = _session(explain_model, pre).run(
        [MAP], {PIXELS: np.asarray(img), TARGET: np.array([3])})[0]
    _, full, _ = _python(explainer, img, pre, target=3)
    assert cam.shape == (1, 3000, 4000)
    assert np.abs(cam[0] - full).max() <= 0.03
    # outside the centre crop (a 3000x3000 square of the 4000x3000 image) the map is 0
    assert cam[0, :, :400].max() == 0 and cam[0, :, -400:].max() == 0


def test_placement_outside_the_crop_is_zero(explain_model):
    pre = MODES["shorter-crop"][0]               # 72 then a 64 crop: 1/9 of each side dropped
    cam = _session(explain_model, pre).run(
        [MAP], {PIXELS: np.asarray(_image((90, 270))), TARGET: np.array([-1])})[0][0]
    assert cam[:5].max() == 0 and cam[-5:].max() == 0 and cam[20:-20].max() > 0


def test_batch_and_rank3_agree(explain_model):
    s = _session(explain_model, MODES["shorter-crop"][0])
    a, b = np.asarray(_image((120, 90), 1)), np.asarray(_image((120, 90), 2))
    both = s.run(None, {PIXELS: np.stack([a, b]), TARGET: np.array([1, 5])})
    for i, px in enumerate((a, b)):
        one = s.run(None, {PIXELS: px, TARGET: np.array([[1, 5][i]])})
        for got, ref in zip(both, one):
            np.testing.assert_allclose(got[i], ref[0], rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("shape", [(1, 1, 3), (1, 7, 3), (5, 5, 4), (2, 6, 6, 1)])
def test_bad_pixels_are_refused_by_the_check_node(shape, explain_model):
    s = _session(explain_model, BASE)
    with pytest.raises(Exception, match=CHECK_NODE):
        s.run(None, {PIXELS: np.zeros(shape, np.uint8), TARGET: np.array([-1])})


def test_unsupported_preprocessing_is_refused_clearly(explain_model):
    with pytest.raises(ExportError, match="lanczos.*no ONNX"):
        build_raw_model(explain_model, dict(BASE, resize_mode="lanczos"), (3, 64, 64))
    with pytest.raises(ExportError, match="takes 64x64"):
        build_raw_model(explain_model, dict(BASE, resize=[32, 32]), (3, 64, 64))


def test_exporter_writes_it_and_weights_are_stored_once():
    m = load_bundle(VGG).manifest
    assert m["graphs"]["explain_raw"] == "explain_raw.onnx"
    raw = onnx.load(str(VGG / "explain_raw.onnx"), load_external_data=False)
    big = [t for t in raw.graph.initializer if t.data_location == onnx.TensorProto.EXTERNAL]
    assert big, "the raw graph's weights should point into weights.bin"
    assert (VGG / "explain_raw.onnx").stat().st_size < 0.2 * (VGG / "weights.bin").stat().st_size


def test_add_raw_command_on_an_old_bundle(tmp_path):
    old = tmp_path / "old.liftcam"
    shutil.copytree(VGG, old)
    (old / "explain_raw.onnx").unlink()
    m = json.loads((old / "manifest.json").read_text())
    del m["graphs"]["explain_raw"], m["files"]["explain_raw.onnx"]
    (old / "manifest.json").write_text(json.dumps(m))
    weights = (old / "weights.bin").read_bytes()
    r = subprocess.run([sys.executable, "-m", "liftcam.cli", "add-raw", str(old)],
                       capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    assert (old / "weights.bin").read_bytes() == weights          # nothing stored twice
    b = load_bundle(old)                                           # hashes verified
    s = ort.InferenceSession(str(b.graph("explain_raw")))
    ref = ort.InferenceSession(str(VGG / "explain_raw.onnx"))
    feed = {PIXELS: np.asarray(_image((80, 50))), TARGET: np.array([-1])}
    for got, want in zip(s.run(None, feed), ref.run(None, feed)):
        np.testing.assert_array_equal(got, want)


def test_runs_in_ort_format(tmp_path):
    """The .ort format of a minimal/mobile ONNX Runtime build gives the same outputs."""
    src = tmp_path / "explain_raw.onnx"
    model = onnx.load(str(VGG / "explain_raw.onnx"))                  # weights inlined
    onnx.save(model, str(src))
    r = subprocess.run([sys.executable, "-m", "onnxruntime.tools.convert_onnx_models_to_ort",
                        str(src)], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    ort_file = tmp_path / "explain_raw.ort"
    assert ort_file.is_file()
    feed = {PIXELS: np.asarray(_image((123, 77))), TARGET: np.array([-1])}
    got = ort.InferenceSession(str(ort_file)).run(None, feed)
    want = ort.InferenceSession(str(src)).run(None, feed)
    for g, w in zip(got, want):
        np.testing.assert_allclose(g, w, rtol=1e-5, atol=1e-5)


def test_runs_in_onnxruntime_web(tmp_path):
    """onnxruntime-web (the WASM build a browser or a web view runs) in Node.js."""
    web = DEMO_DIR.parent.parent / "tests" / "web"
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node/npm not installed")
    if not (web / "node_modules" / "onnxruntime-web").is_dir():
        r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"], cwd=web,
                           capture_output=True, text=True, timeout=300)
        if r.returncode != 0:
            pytest.skip(f"npm install onnxruntime-web failed: {r.stderr[-300:]}")
    model = tmp_path / "raw.onnx"
    onnx.save(onnx.load(str(VGG / "explain_raw.onnx")), str(model))
    px = np.asarray(_image((90, 70), seed=9))
    (tmp_path / "px.bin").write_bytes(px.tobytes())
    r = subprocess.run(["node", str(web / "run_raw.mjs"), str(model), str(tmp_path / "px.bin"),
                        "70", "90", str(tmp_path / "map.bin")], capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stderr[-2000:]
    got = np.fromfile(tmp_path / "map.bin", np.float32).reshape(70, 90)
    want = ort.InferenceSession(str(model)).run([MAP], {PIXELS: px, TARGET: np.array([-1])})[0]
    assert np.abs(got - want[0]).max() < 1e-5
    logits = json.loads(r.stdout)["logits"]
    assert int(np.argmax(logits)) == int(np.argmax(
        ort.InferenceSession(str(model)).run([LOGITS], {PIXELS: px, TARGET: np.array([-1])})[0]))
