"""benchmarks/faithfulness.py --quick: structure, ranges, exact-SHAP sanity, files, determinism.

Runs the benchmark twice in subprocesses (about 20 s each on two cores). The small K <= 16 models'
weights are committed under benchmarks/faith_weights/; the demo models are evaluated when their
weights (export/demo/weights/*.pt) exist and reported as skipped otherwise.
"""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "benchmarks" / "faithfulness.py"
sys.path.insert(0, str(REPO / "benchmarks"))

import faithfulness as fb  # noqa: E402

pytest.importorskip("torch")
pytest.importorskip("matplotlib")


def _run(out: Path):
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return proc


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    a = tmp_path_factory.mktemp("faith_a")
    b = tmp_path_factory.mktemp("faith_b")
    pa = _run(a)
    _run(b)
    return a, b, pa.stdout


def _load(out: Path) -> dict:
    return json.loads((out / "faithfulness.json").read_text())


def _evaluated(report):
    return {n: m for n, m in report["models"].items() if "skipped" not in m}


def test_files_written(runs):
    out, _, stdout = runs
    for name in ("faithfulness.md", "faithfulness.json", "curves.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    report = _load(out)
    for name in _evaluated(report):
        png = out / f"examples_{name}.png"
        assert png.is_file() and png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    md = (out / "faithfulness.md").read_text()
    assert md.strip() == stdout.strip()          # the table printed is the table written
    for name in _evaluated(report):
        assert f"## {name}" in md
    for meth in fb.METHODS:
        assert f"| {meth} |" in md
    for header, _ in fb.ALL_METRICS.values():
        assert header in md


def test_models_present(runs):
    report = _load(runs[0])
    models = report["models"]
    assert set(models) == set(fb.DEMO_MODELS + fb.SMALL_MODELS)
    for name in fb.SMALL_MODELS:        # committed weights: always evaluated
        assert "skipped" not in models[name], models[name]
        assert models[name]["info"]["shap_exact"] is True
        assert models[name]["info"]["K"] <= 16
    from liftcam.export.demo.models import WEIGHTS_DIR
    for name in fb.DEMO_MODELS:
        if (WEIGHTS_DIR / f"{name}.pt").is_file():
            assert "skipped" not in models[name], models[name]
            info = models[name]["info"]
            assert info["shap_exact"] is False and info["K"] == 64
            assert math.isfinite(info["shap_stderr_mean"]) and info["shap_stderr_mean"] >= 0
            for k in fb.SHAP_METRICS:
                assert math.isfinite(info["shap_second_draw"][k])
        else:
            assert "skipped" in models[name]
    assert models["mlp16"]["info"]["linear_head"] is False
    assert models["gap12"]["info"]["linear_head"] is True


def test_every_method_and_metric_finite_and_in_range(runs):
    report = _load(runs[0])
    cfg = report["config"]
    for name, m in _evaluated(report).items():
        info = m["info"]
        assert 1 <= info["n_images"] <= cfg["n_images"]
        assert set(m["methods"]) == set(fb.METHODS)
        for meth in fb.METHODS:
            r = m["methods"][meth]
            for key in fb.ALL_METRICS:
                v = r[key]
                lo, hi = fb.RANGES[key]
                assert isinstance(v, float) and math.isfinite(v), (name, meth, key, v)
                assert lo - 1e-9 <= v <= hi + 1e-9, (name, meth, key, v)
            for key in ("average_drop", "deletion_auc", "insertion_auc", "energy_pointing_game"):
                assert math.isfinite(r[key + "_sem"]) and r[key + "_sem"] >= 0
            c = m["curves"][meth]
            assert len(c["fractions"]) == len(c["deletion"]) == len(c["insertion"]) \
                == cfg["steps"] + 1
            assert c["fractions"][0] == 0.0 and c["fractions"][-1] == 1.0
            assert all(0.0 <= p <= 1.0 for p in c["deletion"] + c["insertion"])


def test_shap_reference_sanity(runs):
    report = _load(runs[0])
    for name, m in _evaluated(report).items():
        shap = m["methods"]["shap"]
        # the reference row agrees perfectly with itself
        assert shap["shap_pearson"] == pytest.approx(1.0, abs=1e-9), name
        assert shap["shap_spearman"] == pytest.approx(1.0, abs=1e-9), name
        assert shap["shap_l2_normalised"] == pytest.approx(0.0, abs=1e-6), name
        assert shap["shap_topk_overlap"] == 1.0, name
        # completeness of Shapley values: sum phi = y_c(A) - y_c(0)
        assert m["info"]["shap_completeness_max_error"] < 1e-3, name
        if m["info"]["linear_head"]:
            # DESIGN §1: on a linear head LIFT-CAM's alpha is the exact SHAP value
            lift = m["methods"]["liftcam"]
            assert lift["shap_pearson"] == pytest.approx(1.0, abs=1e-5), name
            assert lift["shap_l2_normalised"] == pytest.approx(0.0, abs=1e-4), name


def test_rerun_gives_identical_numbers(runs):
    a, b, _ = runs
    ra, rb = _load(a), _load(b)
    for r in (ra, rb):
        r.pop("runtime")
        for m in r["models"].values():
            m.get("info", {}).pop("weights", None)
    assert ra == rb
