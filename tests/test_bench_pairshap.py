"""Smoke tests of the pairshap benchmarks in their --quick modes (a few seconds each):
benchmarks/shap_closeness.py (pairshap vs exact SHAP) and benchmarks/faith_real.py (real
pretrained CNNs from wheels; skipped when rapidocr-onnxruntime / scikit-image are absent)."""
import importlib.util
import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
pytest.importorskip("torch")


def _run(script, out, *args):
    proc = subprocess.run([sys.executable, str(REPO / "benchmarks" / script), "--quick",
                           "--out", str(out), *args], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc.stdout


def test_shap_closeness_quick(tmp_path):
    md = _run("shap_closeness.py", tmp_path)
    report = json.loads((tmp_path / "closeness.json").read_text())
    assert md.strip() == (tmp_path / "closeness.md").read_text().strip()
    gap = report["models"]["gap12"]["methods"]
    for m in ("pairshap", "liftcam", "ablationcam", "hirescam"):   # exact on a linear head
        assert gap[m]["pearson_mean"] > 0.9999 and gap[m]["rel_l1_mean"] < 1e-4, m
    rand = report["models"]["rand8-s0"]["methods"]
    assert rand["pairshap"]["evals_per_image"] == 17 and rand["liftcam"]["evals_per_image"] == 0
    assert rand["pairshap"]["pearson_mean"] >= max(v["pearson_mean"] for v in rand.values())


@pytest.mark.skipif(not (importlib.util.find_spec("rapidocr_onnxruntime")
                         and importlib.util.find_spec("skimage")),
                    reason="rapidocr-onnxruntime / scikit-image not installed")
def test_faith_real_quick_textline(tmp_path):
    _run("faith_real.py", tmp_path, "--models", "textline", "--shap-samples", "2")
    report = json.loads((tmp_path / "faith_real.json").read_text())
    m = report["models"]["textline"]
    assert m["info"]["stripped_tail"] == ["Softmax", "Identity"]
    assert m["info"]["licence"] == "Apache-2.0"
    for meth, r in m["methods"].items():
        assert 0 <= r["deletion_auc"] <= 1 and 0 <= r["insertion_auc"] <= 1, meth
