"""The house rules and the papercuts a new user hit (issue: "One house").

Each test reproduces what went wrong before the restructure: a false hint, a method silently
dropped, a stale output kept, a silent run off a terminal, a README snippet that failed, a
section reference that led nowhere, a public name that shadowed a subpackage.
"""
from __future__ import annotations

import ast
import json
import os
import re
import subprocess
import sys
import warnings
from pathlib import Path

import pytest

from liftcam.engine import DEMO_DIR

REPO = Path(__file__).resolve().parent.parent
VGG = DEMO_DIR / "vgg_demo.liftcam"          # pooling + MLP head (not linear)
RESNET = DEMO_DIR / "resnet_demo.liftcam"    # GAP + dense head (linear)
SAMPLE = DEMO_DIR / "star.png"


def cli(*args, env=None, timeout=300, cwd=None):
    full = dict(os.environ, PYTHONWARNINGS="ignore", **(env or {}))
    return subprocess.run([sys.executable, "-m", "liftcam.cli", *map(str, args)],
                          capture_output=True, text=True, timeout=timeout, env=full, cwd=cwd)


# ----------------------------------------------------------------------------- methods

def test_cam_refusal_does_not_claim_liftcam_equals_cam():
    r = cli("explain", VGG, SAMPLE, "-o", "unused", "-m", "cam")
    assert r.returncode == 1
    assert "equals CAM on linear heads" in r.stderr and "'gradcam'" in r.stderr
    assert "Use 'liftcam', which equals CAM" not in r.stderr


def test_gradcam_not_liftcam_equals_cam_on_a_linear_head():
    """The fact the message states, measured: Grad-CAM's map is CAM's map on a linear head,
    LIFT-CAM's is not."""
    import numpy as np

    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import load_image, preprocess

    ex = Explainer(RESNET)
    x = preprocess([load_image(p) for p in sorted(DEMO_DIR.glob("*.png"))],
                   ex.bundle.manifest["preprocessing"])
    cam = ex.explain(x, method="cam").maps
    assert np.abs(ex.explain(x, method="gradcam").maps - cam).max() < 1e-5
    assert np.abs(ex.explain(x, method="liftcam").maps - cam).max() > 0.05


def test_method_all_includes_cam_on_linear_heads_only(tmp_path):
    from liftcam.engine.bundle import load_bundle
    from liftcam.engine.methods import METHODS
    from liftcam.engine.pipeline import resolve_methods

    assert resolve_methods("all", load_bundle(RESNET)) == list(METHODS)
    assert "cam" not in resolve_methods("all", load_bundle(VGG))
    r = cli("explain", RESNET, SAMPLE, "-o", tmp_path / "o", "-m", "all")
    assert r.returncode == 0, r.stderr
    done = {json.loads(s)["method"] for s in (tmp_path / "o" / "results.jsonl").open()}
    assert done == set(METHODS)
    assert (tmp_path / "o" / "star_cam.png").is_file()


def test_every_method_runs_from_its_record():
    """One record per method: every record's function runs through explain(), and the
    evaluation count it declares is the number of head/model evaluations it makes."""
    import numpy as np

    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import load_image, preprocess
    from liftcam.engine.methods import METHODS

    ex = Explainer(RESNET)
    x = preprocess([load_image(SAMPLE)] * 2, ex.bundle.manifest["preprocessing"])
    K = ex.bundle.activation_shape[0]
    for name, spec in METHODS.items():
        ticks = []
        opts = {"n_samples": 3} if "n_samples" in spec.options else {}
        e = ex.explain(x, method=name, progress=ticks.append, **opts)
        assert e.maps.shape == (2, 64, 64) and np.isfinite(e.weights).all(), name
        assert sum(ticks) == spec.count(2, K, **opts), name


# ----------------------------------------------------------------------------- explain runs

def test_rerun_into_the_same_folder_refuses_then_replaces(tmp_path):
    out = tmp_path / "o"
    assert cli("explain", VGG, SAMPLE, "-o", out, "-m", "liftcam,gradcam").returncode == 0
    assert (out / "star_gradcam.png").is_file()
    r = cli("explain", VGG, SAMPLE, "-o", out, "-m", "liftcam")
    assert r.returncode == 1 and "earlier run" in r.stderr and "--overwrite" in r.stderr
    r = cli("explain", VGG, SAMPLE, "-o", out, "-m", "liftcam", "--overwrite")
    assert r.returncode == 0, r.stderr
    assert not (out / "star_gradcam.png").exists()       # the stale overlay is gone
    assert sorted(p.name for p in out.iterdir()) == \
        ["results.jsonl", "star_liftcam.npy", "star_liftcam.png"]


def test_progress_lines_off_a_terminal(tmp_path):
    r = cli("explain", VGG, DEMO_DIR, "-o", tmp_path / "o", "-m", "all",
            env={"LIFTCAM_PROGRESS_SECONDS": "0"})
    assert r.returncode == 0, r.stderr
    lines = [s for s in r.stderr.splitlines() if s.startswith("explain: ")]
    assert len(lines) >= 3, r.stderr                      # periodic, not only at the end
    assert "(100%)" in lines[-1] and "\r" not in r.stderr
    quiet = cli("explain", VGG, DEMO_DIR, "-o", tmp_path / "q", "-q",
                env={"LIFTCAM_PROGRESS_SECONDS": "0"})
    assert quiet.returncode == 0 and quiet.stderr == ""


def test_bad_layer_on_the_command_line_points_to_liftcam_layers(tmp_path):
    r = cli("export", "--arch", "resnet18", "--layer", "layer44", "-o", tmp_path / "b")
    assert r.returncode == 1
    assert "run 'liftcam layers resnet18'" in r.stderr
    assert "candidate_layers" not in r.stderr


def test_bad_layer_in_python_points_to_candidate_layers(tiny_model, tmp_path):
    import liftcam

    with pytest.raises(liftcam.LayerError, match=r"candidate_layers\(model\)"):
        liftcam.export_model(tiny_model, "nope", input_shape=(3, 32, 32), out_dir=tmp_path / "b")


# ----------------------------------------------------------------------------- namespace

def test_no_public_name_shadows_a_subpackage():
    code = ("import liftcam.export.split, liftcam; "
            "assert liftcam.export.split.__name__ == 'liftcam.export.split'; "
            "import liftcam.cli, liftcam.metrics, liftcam.engine; "
            "assert callable(liftcam.export_model)")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


def test_old_export_spelling_still_works_with_a_warning(tiny_model, tmp_path):
    import liftcam

    with warnings.catch_warnings(record=True) as w:
        warnings.simplefilter("always")
        path = liftcam.export(tiny_model, input_shape=(3, 32, 32), out_dir=tmp_path / "old")
    assert any(issubclass(x.category, DeprecationWarning) and "export_model" in str(x.message)
               for x in w)
    assert liftcam.load_bundle(path).num_classes == 10


def test_runtime_imports_no_build_tools_metrics_or_cli():
    code = ("import sys; [sys.modules.__setitem__(m, None) for m in ('torch', 'onnx')]; "
            "import liftcam; e = liftcam.Explainer; p = liftcam.explain_files; "
            "import liftcam.engine.pipeline, liftcam.engine.methods; "
            "bad = [m for m in sys.modules if m.startswith(('liftcam.metrics', 'liftcam.cli', "
            "'liftcam.export.'))]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- docs

def _python_blocks(text: str) -> list:
    return re.findall(r"```python\n(.*?)```", text, flags=re.S)


def test_readme_python_snippet_runs_as_pasted(tmp_path):
    """README's Python usage block, run verbatim in an empty folder."""
    blocks = _python_blocks((REPO / "README.md").read_text(encoding="utf-8"))
    # recipes that load from a model hub (from_pretrained) cannot run here: nothing downloads
    blocks = [b for b in blocks if "from_pretrained(" not in b]
    assert len(blocks) >= 2, "README's usage and fused-graph blocks are missing"
    script = tmp_path / "snippet.py"
    script.write_text("\n".join(blocks))
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True,
                       cwd=tmp_path, timeout=600, env=dict(os.environ, PYTHONWARNINGS="ignore"))
    assert r.returncode == 0, r.stderr[-3000:]


def _section_refs() -> set:
    refs = set()
    for folder in ("engine", "export", "kernels", "liftcam", "benchmarks"):
        for p in (REPO / folder).rglob("*.py"):
            text = p.read_text(encoding="utf-8")
            refs |= {(p, m) for m in re.findall(r"DESIGN(?:\.md)?\s*§(\d+)", text)}
    return refs


def test_design_section_references_resolve():
    design = (REPO / "DESIGN.md").read_text(encoding="utf-8")
    headings = set(re.findall(r"^## (\d+)\.", design, flags=re.M))
    refs = _section_refs()
    assert refs, "expected some DESIGN.md § references in the code"
    missing = sorted((str(p.relative_to(REPO)), n) for p, n in refs if n not in headings)
    assert not missing, missing
    assert "partial sums" in design.lower()


def test_design_maxpool_sentence_matches_the_rule():
    """The max-pool rule DESIGN.md describes is built from the ops rules_pooling.py uses."""
    design = (REPO / "DESIGN.md").read_text(encoding="utf-8")
    rules = (REPO / "export" / "lift" / "rules_pooling.py").read_text(encoding="utf-8")
    sentence = next(s for s in design.split("\n\n")
                    if "max-pool rule" in s.lower() and "built from" in s)
    named = re.findall(r"\b(MaxUnpool|ConvTranspose|Slice|Equal|Pad|Where)\b", sentence)
    assert named, sentence
    for op in named:
        said_absent = bool(re.search(rf"no {op}\b", sentence))
        emitted = f'"{op}"' in rules or f"b.{op.lower()}(" in rules
        assert said_absent != emitted, (op, sentence)


# ----------------------------------------------------------------------------- the house

def test_no_module_over_500_lines():
    big = [(str(p.relative_to(REPO)), n) for folder in ("engine", "export", "kernels", "liftcam")
           for p in (REPO / folder).rglob("*.py")
           if (n := len(p.read_text(encoding="utf-8").splitlines())) > 500]
    assert not big, big


def test_shipped_demo_bundles_hold_every_graph_role_the_exporter_writes(tmp_path):
    pytest.importorskip("torch")
    from liftcam.engine.bundle import load_bundle
    from liftcam.export.demo.make import make_demo

    make_demo(tmp_path, untrained=True, per_class=1)
    for name in ("vgg_demo", "resnet_demo"):
        fresh = set(load_bundle(tmp_path / f"{name}.liftcam").manifest["graphs"])
        shipped = set(load_bundle(DEMO_DIR / f"{name}.liftcam").manifest["graphs"])
        assert fresh <= shipped, (name, sorted(fresh - shipped))


def test_method_registry_is_the_only_method_list():
    """No module outside engine/methods/ spells out the list of method names."""
    names = {"gradcam++", "xgradcam", "layercam", "hirescam", "ablationcam", "scorecam"}
    offenders = []
    for folder in ("engine", "export", "liftcam"):
        for p in (REPO / folder).rglob("*.py"):
            if "methods" in p.parts:
                continue
            for node in ast.walk(ast.parse(p.read_text(encoding="utf-8"))):
                if isinstance(node, (ast.Tuple, ast.List, ast.Set)):
                    vals = {e.value for e in node.elts if isinstance(e, ast.Constant)}
                    if len(vals & names) >= 3:
                        offenders.append(str(p.relative_to(REPO)))
    assert not offenders, offenders
