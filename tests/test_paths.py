"""How the Explainer runs LIFT-CAM and Grad-CAM (DESIGN.md §13): every path gives the same
Explanation, ``auto`` picks the fused graph where the bundle's has a ``low_res`` output, older
bundles fall back, and impossible requests are one-line errors.

Correctness of the default path against float64 torch references is in test_engine.py (every
method there runs through ``auto``); here the paths are held to each other.
"""
from __future__ import annotations

import dataclasses
import subprocess
import sys

import numpy as np
import pytest

import liftcam
from liftcam.contract import ALPHA_DEEPLIFT, EXPLAIN, EXPLAIN_GRADCAM, LOW_RES
from liftcam.engine import DEMO_DIR
from liftcam.engine.errors import InputError
from liftcam.engine.explainer import PATHS, Explainer
from liftcam.engine.methods import METHODS

VGG = DEMO_DIR / "vgg_demo.liftcam"        # a non-linear head with the α graph
RESNET = DEMO_DIR / "resnet_demo.liftcam"  # a linear head: no α graph


def _x(bundle, n, seed=0):
    shape = liftcam.load_bundle(bundle).input_shape
    return np.random.default_rng(seed).standard_normal((n, *shape)).astype(np.float32)


def _same(a, b):
    np.testing.assert_allclose(a.logits, b.logits, rtol=1e-5, atol=1e-5 * np.abs(b.logits).max())
    np.testing.assert_array_equal(a.targets, b.targets)
    np.testing.assert_allclose(a.weights, b.weights, rtol=1e-4,
                               atol=1e-5 * np.abs(b.weights).max())
    np.testing.assert_allclose(a.low_res, b.low_res, rtol=1e-4,
                               atol=1e-5 * max(np.abs(b.low_res).max(), 1e-30))
    np.testing.assert_allclose(a.maps, b.maps, atol=1e-5)
    assert a.maps.dtype == a.low_res.dtype == a.weights.dtype == np.float32


@pytest.mark.parametrize("bundle", [VGG, RESNET], ids=["vgg", "resnet"])
@pytest.mark.parametrize("method", ["liftcam", "gradcam"])
def test_every_path_gives_the_same_explanation(bundle, method):
    x = _x(bundle, 5)
    graphs = liftcam.load_bundle(bundle).manifest["graphs"]
    base = Explainer(bundle, path="multipliers").explain(x, method=method, progress=False)
    assert base.maps.max() > 0.99 and base.low_res.max() > 0       # not a degenerate case
    for path in ("auto", "fused") + (("alpha",) if ALPHA_DEEPLIFT in graphs else ()):
        ex = Explainer(bundle, path=path)
        got = ex.explain(x, method=method, progress=False)
        _same(got, base)
        # given targets and split batches go through the same path
        t = (base.targets + 1) % ex.bundle.num_classes
        whole = ex.explain(x, targets=t, method=method, progress=False)
        parts = ex.explain(x, targets=t, method=method, progress=False, batch_size=2)
        _same(parts, whole)
        _same(whole, Explainer(bundle, path="multipliers").explain(
            x, targets=t, method=method, progress=False))


def test_auto_runs_the_fused_graph_and_nothing_else():
    ex = Explainer(VGG)
    ex.explain(_x(VGG, 2), progress=False)
    assert set(ex._sessions) == {EXPLAIN}            # one session: features+α+tail in one graph
    ex.explain(_x(VGG, 2), method="gradcam", progress=False)
    assert set(ex._sessions) == {EXPLAIN, EXPLAIN_GRADCAM}


def test_the_rule():
    vgg, resnet = Explainer(VGG), Explainer(RESNET)
    for b in (1, 8, 32, 256):
        assert vgg.path_for("liftcam", b) == resnet.path_for("liftcam", b) == "fused"
        assert vgg.path_for("gradcam", b) == "fused"
        for m in set(METHODS) - {"liftcam", "gradcam"}:
            assert vgg.path_for(m, b) == "multipliers"
    assert Explainer(VGG, path="alpha").path_for("liftcam", 1) == "alpha"
    assert Explainer(VGG, path="alpha").path_for("gradcam", 1) == "multipliers"
    assert Explainer(RESNET, path="multipliers").path_for("liftcam", 1) == "multipliers"


def _old(bundle_path):
    """The bundle as liftcam 0.2.0 wrote it: explain graphs without the low_res output."""
    b = liftcam.load_bundle(bundle_path)
    outputs = {r: tuple(o for o in outs if o != LOW_RES) for r, outs in b.outputs.items()}
    return dataclasses.replace(b, outputs=outputs)


def test_bundles_without_low_res_fall_back_to_the_split_graphs():
    vgg, resnet = Explainer(_old(VGG)), Explainer(_old(RESNET))
    assert vgg.path_for("liftcam", 1) == "alpha"
    assert resnet.path_for("liftcam", 1) == "multipliers"
    assert vgg.path_for("gradcam", 1) == "multipliers"
    x = _x(VGG, 3)
    _same(vgg.explain(x, progress=False), Explainer(VGG).explain(x, progress=False))
    assert EXPLAIN not in vgg._sessions
    with pytest.raises(InputError, match="explain.onnx with a 'low_res' output"):
        Explainer(_old(VGG), path="fused")


def test_impossible_paths_are_one_line_errors():
    with pytest.raises(InputError, match=r"path must be one of \('auto', 'fused', 'alpha'"):
        Explainer(VGG, path="fastest")
    with pytest.raises(InputError, match="partial-sums graph") as e:
        Explainer(RESNET, path="alpha")
    assert "\n" not in str(e.value)


def test_bench_help_names_every_path():
    r = subprocess.run([sys.executable, "-m", "liftcam.cli", "bench", "--help"],
                       capture_output=True, text=True, timeout=60)
    text = " ".join(r.stdout.split())
    for p in PATHS:
        assert f"{p} (" in text or f"or {p} " in text, p
