"""``liftcam edge``: every variant runs in ONNX Runtime, the report's numbers are computed from
the maps (and recomputed here), the INT8 keep-float decision is recorded with both candidates,
warnings appear below the thresholds, bad arguments get one line. The browser page is tested
in tests/test_edge_web.py."""
from __future__ import annotations

import json
import shutil

import numpy as np
import onnxruntime as ort
import pytest

pytest.importorskip("onnx")

from liftcam.cli import main  # noqa: E402
from liftcam.contract import IMAGE, LOGITS, MAP, TARGET  # noqa: E402
from liftcam.engine import DEMO_DIR  # noqa: E402
from liftcam.engine.bundle import load_bundle  # noqa: E402
from liftcam.engine.images import load_image, preprocess  # noqa: E402
from liftcam.export.edge import fidelity  # noqa: E402
from liftcam.export.edge.build import build_edge, demo_images  # noqa: E402
from liftcam.export.edge.report import THRESHOLDS, thresholds  # noqa: E402

VGG = DEMO_DIR / "vgg_demo.liftcam"
RESNET = DEMO_DIR / "resnet_demo.liftcam"
VARIANT_FILES = ("explain.ort", "explain_int8.ort", "explain_int8.onnx", "explain_fp16.onnx")


@pytest.fixture(scope="module")
def built(tmp_path_factory):
    """VGG: static INT8 calibrated on the demo images; ResNet: dynamic INT8 (no images)."""
    out = {}
    for name, bundle, calib in (("vgg", VGG, demo_images()), ("resnet", RESNET, None)):
        d = tmp_path_factory.mktemp(name)
        rep = build_edge(bundle, d, int8=True, fp16_variant=True, calibration=calib, repeats=1)
        out[name] = (d, rep, bundle)
    return out


def _x(bundle):
    pre = load_bundle(bundle).manifest["preprocessing"]
    return preprocess([load_image(f) for f in demo_images()], pre)


@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_every_variant_runs_in_onnxruntime(built, name):
    d, rep, bundle = built[name]
    x = _x(bundle)
    C, H, W = load_bundle(bundle).input_shape
    for f in VARIANT_FILES:
        s = ort.InferenceSession(str(d / f), providers=["CPUExecutionProvider"])
        logits, cam = s.run([LOGITS, MAP], {IMAGE: x[:2], TARGET: np.array([-1, 3])})
        assert logits.dtype == np.float32 and cam.dtype == np.float32, f
        assert cam.shape == (2, H, W) and np.isfinite(cam).all(), f
        assert 0 <= cam.min() and cam.max() <= 1 and cam.max() > 0, f
    assert [v["name"] for v in rep["variants"]] == ["fp32", "int8", "fp16"]
    assert [v["file"] for v in rep["variants"]] == ["explain.ort", "explain_int8.ort",
                                                   "explain_fp16.onnx"]
    config = (d / "required_operators.config").read_text()
    assert "Conv" in config and "/tmp" not in config and "explain_int8.ort" in config


@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_report_numbers_are_recomputed_from_the_maps(built, name):
    d, rep, bundle = built[name]
    on_disk = json.loads((d / "report.json").read_text())
    assert on_disk["variants"] == json.loads(json.dumps(rep["variants"]))
    saved = np.load(d / "fidelity_maps.npz")
    x = _x(bundle)
    for v in rep["variants"]:
        again = fidelity.compare(saved["ref_logits"], saved["ref_maps"],
                                 saved[f"{v['name']}_logits"], saved[f"{v['name']}_maps"])
        for key in ("top1_agreement", "pearson", "iou_top20", "map_max_abs_diff", "per_image"):
            assert again[key] == v[key], (v["name"], key)
        for key in ("pearson", "iou_top20"):
            assert 0 <= v[key]["worst"] <= v[key]["mean"] <= 1
        assert len(v["per_image"]) == len(x) == rep["images"]["count"]
        assert v["bytes"] == (d / v["file"]).stat().st_size and v["latency_ms"] > 0
        # the saved maps are the variant's own: run its .ort again on the same images
        s = fidelity.session(d / v["file"])
        _, maps = fidelity.run_explain(s, x, saved["targets"])
        np.testing.assert_allclose(maps, saved[f"{v['name']}_maps"], atol=1e-6)
    fp32, int8 = rep["variants"][0], rep["variants"][1]
    assert fp32["latency_ratio"] == 1.0 and fp32["size_ratio"] == 1.0
    assert fp32["pearson"]["worst"] > 0.9999 and fp32["iou_top20"]["mean"] > 0.99
    assert int8["size_ratio"] < 0.8                       # int8 weights are smaller
    assert rep["variants"][2]["size_ratio"] < 0.8         # and float16 ones


def test_fidelity_of_identical_maps_is_exactly_one():
    rng = np.random.default_rng(0)
    maps = rng.random((3, 16, 16)).astype(np.float32)
    maps[2] = 0                                           # a constant map too
    logits = rng.random((3, 5))
    f = fidelity.compare(logits, maps, logits, maps.copy())
    assert f["pearson"] == {"mean": 1.0, "worst": 1.0}
    assert f["iou_top20"] == {"mean": 1.0, "worst": 1.0} and f["top1_agreement"] == 1.0


def test_top_region_iou_by_hand():
    a = np.arange(10, dtype=np.float32)[None]             # top 20%: pixels 8, 9
    b = a.copy()
    b[0, 8] = -1                                           # top 20%: pixels 7, 9
    assert fidelity.top_region_iou(a, b)[0] == pytest.approx(1 / 3)
    assert fidelity.pearson(a, -a)[0] == pytest.approx(-1.0)


@pytest.mark.parametrize("name", ["vgg", "resnet"])
def test_int8_keep_float_decision_is_measured(built, name):
    d, rep, _ = built[name]
    dec = rep["int8_decision"]
    assert dec["mode"] == ("static QDQ" if name == "vgg" else "dynamic")
    cands = dec["candidates"]
    assert set(cands) == {"all", "features"} and dec["chosen"] in cands
    # 'features' keeps the head's DeepLIFT/gradient sub-graph in float, 'all' does not
    assert cands["features"]["quantized_ops"].get("lift", 0) == 0
    assert cands["all"]["quantized_ops"].get("lift", 0) > 0
    assert cands["features"]["quantized_ops"]["features"] > 0
    for c in cands.values():
        assert 0 <= c["pearson"]["worst"] <= 1 and 0 <= c["iou_top20"]["mean"] <= 1
        assert c["bytes"] > 0
    assert f"{dec['chosen']!r}" in dec["reason"] or "margins" in dec["reason"]


def test_warnings_below_the_thresholds(tmp_path, capsys):
    rc = main(["edge", str(RESNET), "-o", str(tmp_path / "e"), "--int8", "--repeats", "1",
               "--min-pearson", "1", "--min-iou", "1"])
    out, err = capsys.readouterr()
    assert rc == 0
    assert "liftcam: warning: int8: mean map Pearson" in err
    assert "liftcam: warning: int8: mean top-20% IoU" in err
    assert "fp32" in out and "int8" in out and "WARNING" in out
    rep = json.loads((tmp_path / "e" / "report.json").read_text())
    assert rep["thresholds"]["pearson_mean"] == 1.0 and rep["variants"][1]["warnings"]
    assert not rep["variants"][0]["warnings"] or rep["variants"][0]["pearson"]["mean"] < 1
    assert thresholds() == THRESHOLDS


def test_default_run_writes_ort_and_config_only(tmp_path, capsys):
    assert main(["edge", str(RESNET), "-o", str(tmp_path / "e"), "--repeats", "1"]) == 0
    names = sorted(p.name for p in (tmp_path / "e").iterdir())
    assert names == ["explain.ort", "fidelity_maps.npz", "report.json",
                     "required_operators.config"]
    assert "liftcam: warning" not in capsys.readouterr().err


def test_own_bundle_without_calibration_is_warned(tmp_path, capsys):
    own = tmp_path / "mine.liftcam"
    shutil.copytree(RESNET, own)
    assert main(["edge", str(own), "-o", str(tmp_path / "e"), "--repeats", "1"]) == 0
    err = capsys.readouterr().err
    assert "liftcam: warning: fidelity measured on liftcam's demo images" in err
    assert "--calibration" in json.loads((tmp_path / "e" / "report.json").read_text())[
        "images"]["note"]


@pytest.mark.parametrize("argv, code, msg", [
    (["edge", "nope.liftcam", "-o", "{tmp}/o"], 1, "nope.liftcam"),
    (["edge", str(VGG), "-o", "{tmp}/o", "--calibration", "{tmp}/missing/*.png"], 1,
     "--calibration: no such file"),
    (["edge", str(VGG), "-o", "{tmp}/o", "--min-iou", "2"], 2, "--min-iou"),
    (["edge", str(VGG)], 2, "-o/--out"),
    (["edge", str(VGG), "-o", "{tmp}/full"], 1, "not empty; use --overwrite"),
    (["edge", str(VGG), "-o", "{tmp}/o", "--calibration", "{tmp}/full/x.txt"], 1,
     "x.txt"),
])
def test_bad_arguments_get_one_line(tmp_path, capsys, argv, code, msg):
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("not an image")
    assert main([a.replace("{tmp}", str(tmp_path)) for a in argv]) == code
    err = capsys.readouterr().err.strip()
    assert err.startswith("liftcam: error:") and len(err.splitlines()) == 1, err
    assert msg in err
