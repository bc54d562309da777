"""Smoke test of benchmarks/speed.py --quick: the output's structure, never its timings."""
import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "speed.py"

pytest.importorskip("torch")
pytest.importorskip("captum")
pytest.importorskip("pytorch_grad_cam")
pytest.importorskip("matplotlib")


@pytest.fixture(scope="module")
def quick_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("speed")
    proc = subprocess.run([sys.executable, str(SCRIPT), "--quick", "--out", str(out)],
                          capture_output=True, text=True, timeout=600, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr[-4000:]
    return out, proc.stdout


def test_outputs_exist(quick_run):
    out, stdout = quick_run
    for name in ("speed.json", "speed.md", "speed.png"):
        assert (out / name).is_file() and (out / name).stat().st_size > 0, name
    assert (out / "speed.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert "| model | entry | batch |" in stdout
    assert stdout.strip().endswith((out / "speed.md").read_text().strip().splitlines()[-1])


def test_json_structure(quick_run):
    out, _ = quick_run
    data = json.loads((out / "speed.json").read_text())
    for key in ("command", "machine", "settings", "labels", "raw", "rows"):
        assert key in data
    m = data["machine"]
    for key in ("cpu", "logical_cores", "versions", "threads", "load_average"):
        assert key in m
    assert m["versions"]["onnxruntime"] and m["versions"]["torch"]
    s = data["settings"]
    assert s["quick"] is True and s["floor"] == "ort"
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import speed
    finally:
        sys.path.pop(0)
    batches = s["batches"]
    for model in s["models"]:
        raw = data["raw"][model]
        for entry in speed.FAST + speed.SLOW:
            assert entry in raw, (model, entry)
            want = batches if entry in speed.FAST else batches[:1]
            assert sorted(int(b) for b in raw[entry]["times_s"]) == sorted(want)
            for b, ts in raw[entry]["times_s"].items():
                n = s["repeats"] if entry in speed.FAST else s["slow_repeats"]
                assert len(ts) == n and all(t > 0 for t in ts), (entry, b, ts)
            assert raw[entry]["peak_rss_mb"] > 0 and raw[entry]["import_rss_mb"] > 0
            assert raw[entry]["peak_rss_mb"] >= raw[entry]["import_rss_mb"]


def test_rows_consistent_with_raw_timings(quick_run):
    out, _ = quick_run
    data = json.loads((out / "speed.json").read_text())
    rows = data["rows"]
    s = data["settings"]
    sys.path.insert(0, str(SCRIPT.parent))
    try:
        import speed
    finally:
        sys.path.pop(0)
    expected = len(s["models"]) * (len(s["batches"]) * len(speed.FAST) + len(speed.SLOW))
    assert len(rows) == expected
    for r in rows:
        ts = data["raw"][r["model"]][r["entry"]]["times_s"][str(r["batch"])]
        floor = data["raw"][r["model"]]["ort"]["times_s"][str(r["batch"])]
        med = sorted(ts)[len(ts) // 2] if len(ts) % 2 else sum(sorted(ts)[len(ts) // 2 - 1:
                                                                          len(ts) // 2 + 1]) / 2
        fmed = sorted(floor)[len(floor) // 2] if len(floor) % 2 else \
            sum(sorted(floor)[len(floor) // 2 - 1:len(floor) // 2 + 1]) / 2
        assert math.isclose(r["median_s"], med, rel_tol=1e-9)
        assert math.isclose(r["floor_median_s"], fmed, rel_tol=1e-9)
        assert math.isclose(r["images_per_s"], r["batch"] / med, rel_tol=1e-9)
        assert math.isclose(r["ratio_to_floor"], med / fmed, rel_tol=1e-9)
        assert r["median_s"] > 0 and r["images_per_s"] > 0 and r["ratio_to_floor"] > 0
        assert r["peak_rss_mb"] > 0
        if r["entry"] == "ort":
            assert math.isclose(r["ratio_to_floor"], 1.0)
