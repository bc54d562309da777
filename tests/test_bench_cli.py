"""``liftcam bench``: the records' schema, every method, and bad arguments as one-line errors.
(Timings are not asserted: speed is measured by benchmarks, never by unit tests.)"""
from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

from liftcam.engine import DEMO_DIR
from liftcam.engine.methods import METHODS

VGG = DEMO_DIR / "vgg_demo.liftcam"
RESNET = DEMO_DIR / "resnet_demo.liftcam"
KEYS = {"method", "batch", "provider", "p50_ms", "p90_ms", "p99_ms", "images_per_s",
        "ratio_to_predict", "peak_rss_mb", "repeats", "path"}


def bench(*args):
    return subprocess.run([sys.executable, "-m", "liftcam.cli", "bench", *map(str, args)],
                          capture_output=True, text=True, timeout=600,
                          env=dict(os.environ, PYTHONWARNINGS="ignore"))


def test_every_method_and_the_schema(tmp_path):
    out = tmp_path / "r.json"
    r = bench(RESNET, "--methods", "all", "--batch", "1,2", "--warmup", "0", "--repeats", "2",
              "--shap-samples", "2", "--json", out)
    assert r.returncode == 0, r.stderr
    recs = json.loads(out.read_text())
    assert all(set(x) == KEYS for x in recs)
    for batch in (1, 2):
        rows = [x for x in recs if x["batch"] == batch]
        assert [x["method"] for x in rows] == ["predict", *METHODS]   # linear head: cam too
        floor = rows[0]
        assert floor["ratio_to_predict"] == 1.0
        for x in rows:
            assert 0 < x["p50_ms"] <= x["p90_ms"] <= x["p99_ms"]
            assert x["images_per_s"] == pytest.approx(batch / (x["p50_ms"] / 1000), rel=1e-2)
            assert x["ratio_to_predict"] == pytest.approx(x["p50_ms"] / floor["p50_ms"],
                                                          rel=1e-3)
            assert x["repeats"] == 2 and x["provider"] == "cpu" and x["peak_rss_mb"] > 0
        paths = {x["method"]: x["path"] for x in rows}
        assert paths.pop("predict") == "features+head"
        assert paths.pop("liftcam") == paths.pop("gradcam") == "fused"     # DESIGN.md §13
        assert set(paths.values()) == {"multipliers"}
    # the table on stdout has a row per record
    assert sum(line.startswith("| ") for line in r.stdout.splitlines()) == len(recs) + 1


def test_path_option_is_reported_per_record(tmp_path):
    out = tmp_path / "r.json"
    r = bench(VGG, "--methods", "liftcam,gradcam", "--batch", "1", "--warmup", "0",
              "--repeats", "1", "--path", "alpha", "--json", out)
    assert r.returncode == 0, r.stderr
    recs = {x["method"]: x["path"] for x in json.loads(out.read_text())}
    assert recs == {"predict": "features+head", "liftcam": "alpha", "gradcam": "multipliers"}
    assert "| liftcam | 1 | cpu | alpha |" in r.stdout


def test_slow_methods_announce_their_duration():
    r = bench(VGG, "--methods", "scorecam", "--batch", "16", "--warmup", "0", "--repeats", "1")
    assert r.returncode == 0, r.stderr
    assert "once per channel" in r.stderr and "s per call" in r.stderr


@pytest.mark.parametrize("args, fragment", [
    (["--batch", "0"], "positive"),
    (["--batch", "a,b"], "positive ints like 1,8,32"),
    (["--methods", "gradcamm"], "did you mean 'gradcam'"),
    (["--methods", "cam"], "needs a linear head"),
    (["--repeats", "0"], "positive"),
    (["--warmup", "-1"], ">= 0"),
    (["--providers", "nosuch"], "not available"),
    (["--path", "fast"], "path must be one of"),
    ([RESNET, "--path", "alpha"], "needs the bundle's partial-sums graph"),
])
def test_bad_arguments_are_one_line_errors(args, fragment):
    if args and args[0] == RESNET:
        r = bench(*args)
    else:
        r = bench(VGG, *args)
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert r.returncode in (1, 2) and len(lines) == 1, r.stderr
    assert lines[0].startswith("liftcam: error:") and fragment in lines[0], lines[0]


def test_missing_bundle():
    r = bench(DEMO_DIR / "nope.liftcam")
    assert r.returncode == 1 and "nope.liftcam" in r.stderr and "Traceback" not in r.stderr
