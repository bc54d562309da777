"""End-to-end tests of the ``liftcam`` command line, run through subprocesses.

On the committed demo bundles (``engine/demo/``) and on a small torchvision model exported
with ``liftcam export`` (resnet18, 10 classes, 64x64, with a weights file). Bad input: zero-byte,
truncated and non-image files, a missing bundle, a tampered bundle, bad flags and targets.
"""
from __future__ import annotations

import io
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

import liftcam
from liftcam.cli import demo as demo_mod
from liftcam.cli import grid as grid_mod
from liftcam.engine.inputs import output_stems as _unique_stems
from liftcam.engine.maps import place_map as map_to_original
from liftcam.engine.progress import Progress
from liftcam.export.demo.shapes import CLASSES

DEMO_DIR = demo_mod.DEMO_DIR
VGG = DEMO_DIR / "vgg_demo.liftcam"
RESNET = DEMO_DIR / "resnet_demo.liftcam"
ALL_METHODS = ["liftcam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam",
               "ablationcam", "pairshap", "scorecam", "shap"]
NO_TORCH = ("import sys; sys.modules['torch'] = None; sys.modules['torchvision'] = None; "
            "sys.modules['onnx'] = None; from liftcam.cli import main; "
            "sys.exit(main(sys.argv[1:]))")

pytestmark = pytest.mark.skipif(not (VGG.is_dir() and RESNET.is_dir()),
                                reason="demo bundles missing (python -m liftcam.export.demo.make)")


def run(*args, cwd=None, code=None, timeout=300):
    """Run the CLI; returns CompletedProcess with text stdout/stderr (stderr is a pipe)."""
    cmd = [sys.executable, "-c", code, *map(str, args)] if code else \
        [sys.executable, "-m", "liftcam.cli", *map(str, args)]
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    env.pop("LIFTCAM_DEBUG", None)
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd, timeout=timeout, env=env)


def assert_one_line_error(r, rc, *fragments):
    assert r.returncode == rc, (r.returncode, r.stdout, r.stderr)
    lines = [s for s in r.stderr.splitlines() if s.strip()]
    assert len(lines) == 1, r.stderr
    assert lines[0].startswith("liftcam: error: "), r.stderr
    assert "Traceback" not in r.stderr
    for f in fragments:
        assert f in lines[0], (f, lines[0])


def samples():
    return demo_mod.demo_samples()


@pytest.fixture(scope="module")
def images(tmp_path_factory):
    """A folder of good images of several sizes and modes (plus a sub-folder)."""
    d = tmp_path_factory.mktemp("images")
    (d / "sub").mkdir()
    src = [p for p, _ in samples()]
    shutil.copy(src[0], d / "a.png")
    Image.open(src[1]).resize((200, 120)).save(d / "wide.jpg", quality=95)
    Image.open(src[2]).convert("RGBA").resize((50, 90)).save(d / "sub" / "tall.png")
    Image.open(src[3]).convert("L").save(d / "sub" / "gray.bmp")
    (d / "notes.txt").write_text("not an image, and not picked up from a folder")
    return d


# ----------------------------------------------------------------------------- basics

def test_version_and_help():
    r = run("--version")
    assert r.returncode == 0 and r.stdout.strip() == f"liftcam {liftcam.__version__}"
    script = Path(sys.executable).with_name("liftcam")        # the console script
    if script.is_file():
        r = subprocess.run([str(script), "--version"], capture_output=True, text=True)
        assert r.returncode == 0 and r.stdout.strip() == f"liftcam {liftcam.__version__}"
    r = run("--help")
    assert r.returncode == 0
    for cmd in ("demo", "explain", "info", "export", "layers"):
        assert cmd in r.stdout
    for cmd, needle in (("demo", "--out"), ("explain", "--top-k"), ("info", "BUNDLE"),
                        ("export", "--input-shape"), ("layers", "MODEL")):
        r = run(cmd, "--help")
        assert r.returncode == 0 and needle in r.stdout, (cmd, r.stdout)
        assert r.stderr == ""


def test_bad_command_lines():
    assert_one_line_error(run(), 2, "COMMAND")
    assert_one_line_error(run("frobnicate"), 2, "frobnicate")
    assert_one_line_error(run("explain", VGG, "x.png", "-o", "o", "--bogus"), 2, "--bogus")
    assert_one_line_error(run("explain", VGG, "x.png"), 2, "-o/--out")
    assert_one_line_error(run("explain", VGG, "x.png", "-o", "o", "-m", "gradcamm"), 2,
                          "did you mean 'gradcam'")
    assert_one_line_error(run("explain", VGG, "x.png", "-o", "o", "-b", "0"), 2, "positive")
    assert_one_line_error(run("export", "--arch", "resnet18", "--input-shape", "3,64"), 2,
                          "C,H,W")
    assert_one_line_error(run("export", "--arch", "a", "--onnx", "b.onnx"), 2,
                          "not allowed with")


# ----------------------------------------------------------------------------- demo

def test_demo(tmp_path):
    out = tmp_path / "demo"
    r = run("demo", "-o", out)
    assert r.returncode == 0, r.stderr
    n = len(samples())
    summary = json.loads((out / "summary.json").read_text())
    for name, linear in (("vgg_demo", False), ("resnet_demo", True)):
        grid = out / f"{name}_grid.png"
        assert str(grid) in r.stdout
        methods = ALL_METHODS[:-1] + (["cam"] if linear else []) + ["shap"]
        assert summary["models"][name]["methods"] == methods
        with Image.open(grid) as g:
            assert g.size == grid_mod.grid_size(n, 1 + len(methods))
            row = 128 + grid_mod.caption_height(grid_mod.CAPTION_LINES) + grid_mod.GAP
            assert g.size == ((2 + len(methods)) * grid_mod.GAP + (1 + len(methods)) * 128,
                              grid_mod.GAP + grid_mod.TITLE + grid_mod.HEADER + grid_mod.GAP
                              + n * row + grid_mod.COLORBAR + grid_mod.GAP)
        for (path, _), m in zip(samples(), methods):
            with Image.open(out / name / f"{path.stem}_{m}.png") as o, Image.open(path) as i:
                assert o.size == i.size
        assert len(list((out / name).glob("*.png"))) == n * len(methods)
    assert "skipping 'cam'" in r.stdout
    assert "s\n" in r.stdout or "s)" in r.stdout


# ----------------------------------------------------------------------------- explain

def _records(out, errors=False):
    """The records of results.jsonl: the explanations, or (errors=True) the error lines."""
    recs = [json.loads(s) for s in (out / "results.jsonl").read_text().splitlines()]
    return [r for r in recs if ("error" in r) == errors]


def test_explain_folder(images, tmp_path):
    out = tmp_path / "out"
    r = run("explain", VGG, images, "-o", out, "-m", "liftcam,gradcam++", "-k", "3", "-b", "3")
    assert r.returncode == 0, r.stderr
    assert "\r" not in r.stderr                       # no progress bar when not a terminal
    files = {"a.png": (64, 64), "wide.jpg": (200, 120), "tall.png": (50, 90),
             "gray.bmp": (64, 64)}
    recs = _records(out)
    assert len(recs) == 2 * len(files)
    assert not any(Path(rec["file"]).name == "notes.txt" for rec in recs)
    for rec in recs:
        name = Path(rec["file"]).name
        assert rec["method"] in ("liftcam", "gradcam++")
        stem = Path(name).stem
        assert rec["overlay"] == f"{stem}_{rec['method']}.png"
        with Image.open(out / rec["overlay"]) as im:
            assert im.size == files[name] and im.mode == "RGB"
        assert rec["size"] == list(files[name])
        m = np.load(out / rec["map"])
        assert m.shape == (64, 64) and m.dtype == np.float32
        assert m.min() >= 0 and m.max() <= 1 and m.max() == pytest.approx(1)
        top = rec["top_k"]
        assert len(top) == 3
        probs = [t["probability"] for t in top]
        assert probs == sorted(probs, reverse=True) and all(0 <= p <= 1 for p in probs)
        assert sum(probs) <= 1 + 1e-6
        assert all(t["label"] == CLASSES[t["class"]] for t in top)
        assert rec["target"] == rec["predicted"] == top[0]["class"]
        assert rec["target_label"] == CLASSES[rec["target"]]
    assert not [p for p in out.iterdir() if p.name.startswith(".") or p.suffix == ".tmp"]


def test_explain_target_label_npz_glob_and_collisions(tmp_path):
    d = tmp_path / "in"
    (d / "x").mkdir(parents=True)
    src = [p for p, _ in samples()]
    shutil.copy(src[0], d / "img.png")
    shutil.copy(src[1], d / "x" / "img.png")          # same stem, another folder
    out = tmp_path / "out"
    r = run("explain", RESNET, f"{d}/**/*.png", "-o", out, "-t", "star", "-m", "cam,shap",
            "--shap-samples", "4", "--maps", "npz", "-k", "8")
    assert r.returncode == 0, r.stderr
    recs = _records(out)
    assert {rec["overlay"] for rec in recs} == {"img_cam.png", "img_shap.png",
                                                "img-2_cam.png", "img-2_shap.png"}
    assert all(rec["target"] == 3 and rec["target_label"] == "star" for rec in recs)
    for rec in recs:
        assert sum(t["probability"] for t in rec["top_k"]) == pytest.approx(1, abs=1e-5)
    with np.load(out / "maps.npz") as z:
        assert sorted(z.files) == ["img-2_cam", "img-2_shap", "img_cam", "img_shap"]
        for k in z.files:
            assert z[k].shape == (64, 64) and 0 <= z[k].min() and z[k].max() <= 1
    assert not list(out.glob("*.npy"))


def test_explain_bad_inputs(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    src = [p for p, _ in samples()]
    shutil.copy(src[0], d / "good1.png")
    shutil.copy(src[1], d / "good2.png")
    (d / "zero.png").write_bytes(b"")
    (d / "trunc.png").write_bytes(src[2].read_bytes()[:1500])
    (d / "text.jpg").write_text("this is not a JPEG\n")
    out = tmp_path / "out"
    r = run("explain", VGG, d, tmp_path / "missing.png", "-o", out, "-b", "2")
    assert r.returncode == 3, (r.stdout, r.stderr)
    assert "Traceback" not in r.stderr
    for bad, why in (("zero.png", "empty"), ("trunc.png", "truncated"),
                     ("text.jpg", "not an image"), ("missing.png", "no such file")):
        line = [s for s in r.stderr.splitlines() if bad in s and why in s]
        assert line, (bad, r.stderr)
    assert "4 input(s) failed" in r.stderr
    names = sorted(p.name for p in out.iterdir())
    assert names == ["good1_liftcam.npy", "good1_liftcam.png", "good2_liftcam.npy",
                     "good2_liftcam.png", "results.jsonl"]
    assert [Path(rec["file"]).name for rec in _records(out)] == ["good1.png", "good2.png"]
    failed = sorted(Path(rec["file"]).name for rec in _records(out, errors=True))
    assert failed == ["missing.png", "text.jpg", "trunc.png", "zero.png"]

    # every input bad: still a clean exit 3, nothing written
    out2 = tmp_path / "out2"
    r = run("explain", VGG, d / "zero.png", d / "text.jpg", "-o", out2)
    assert r.returncode == 3
    assert "no image could be explained" in r.stderr
    assert [p.name for p in out2.iterdir()] == ["results.jsonl"]
    assert len(_records(out2)) == 0 and len(_records(out2, errors=True)) == 2


def test_explain_errors(tmp_path, images):
    img = images / "a.png"
    assert_one_line_error(run("explain", tmp_path / "nope.liftcam", img, "-o", tmp_path / "o"),
                          1, "bundle directory not found")
    assert_one_line_error(run("explain", VGG, img, "-o", tmp_path / "o", "-t", "99"), 1,
                          "out of range", "8 classes")
    assert_one_line_error(run("explain", VGG, img, "-o", tmp_path / "o", "-t", "strar"), 1,
                          "'strar'", "star")
    assert_one_line_error(run("explain", VGG, img, "-o", tmp_path / "o", "-m", "cam"), 1,
                          "linear head")
    assert_one_line_error(run("explain", VGG, tmp_path / "empty_dir_*", "-o", tmp_path / "o"),
                          1, "no input images")
    assert not (tmp_path / "o").exists()
    bad = tmp_path / "tampered.liftcam"
    shutil.copytree(VGG, bad)
    data = bytearray((bad / "weights.bin").read_bytes())
    data[100] ^= 0xFF
    (bad / "weights.bin").write_bytes(bytes(data))
    assert_one_line_error(run("explain", bad, img, "-o", tmp_path / "o"), 1, "sha256 mismatch")
    assert_one_line_error(run("info", bad), 1, "sha256 mismatch")


# ----------------------------------------------------------------------------- info

def test_info():
    r = run("info", VGG)
    assert r.returncode == 0, r.stderr
    for needle in ("features.relu4", "Nx64x8x8", "Nx3x64x64", "0:circle", "7:hexagon",
                   "mean=0.5,0.5,0.5", "weights.bin", "verified     yes", "non-linear"):
        assert needle in r.stdout, (needle, r.stdout)
    r = run("info", RESNET, "--json")
    m = json.loads(r.stdout)
    assert m["labels"] == list(CLASSES) and m["head"]["linear"] is True


def test_runtime_commands_without_torch(tmp_path, images):
    """info, explain and demo work with torch/torchvision/onnx unimportable."""
    r = run("info", RESNET, code=NO_TORCH)
    assert r.returncode == 0 and "layer3" in r.stdout, r.stderr
    out = tmp_path / "o"
    r = run("explain", RESNET, images / "a.png", "-o", out, "-m", "liftcam,gradcam",
            code=NO_TORCH)
    assert r.returncode == 0, r.stderr
    assert (out / "a_liftcam.png").is_file() and (out / "a_gradcam.png").is_file()
    r = run("demo", "-o", tmp_path / "d", "--methods", "liftcam", code=NO_TORCH)
    assert r.returncode == 0, r.stderr
    r = run("export", "--arch", "resnet18", code=NO_TORCH)
    assert_one_line_error(r, 1, "pip install 'liftcam[export]'")


# ----------------------------------------------------------------------------- export

@pytest.fixture(scope="module")
def resnet18_bundle(tmp_path_factory):
    """resnet18 (10 classes, 64x64) with seeded weights, exported with the CLI."""
    torch = pytest.importorskip("torch")
    torchvision = pytest.importorskip("torchvision")
    d = tmp_path_factory.mktemp("r18")
    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    torch.save(model.state_dict(), d / "r18.pt")
    (d / "labels.txt").write_text("".join(f"class {i}\n" for i in range(10)))
    out = d / "r18.liftcam"
    r = run("export", "--arch", "resnet18", "--num-classes", "10", "--input-shape", "3,64,64",
            "--weights", d / "r18.pt", "--labels", d / "labels.txt", "--mean", "0.5,0.5,0.5",
            "--std", "0.25,0.25,0.25", "-o", out)
    assert r.returncode == 0, r.stderr
    assert "layer4" in r.stdout and str(out) in r.stdout
    return model, out, d


def test_export_resnet18_and_explain(resnet18_bundle, images, tmp_path):
    torch = pytest.importorskip("torch")
    model, bundle, d = resnet18_bundle
    r = run("info", bundle)
    assert r.returncode == 0 and "layer4" in r.stdout and "0:class 0" in r.stdout
    assert "mean=0.5,0.5,0.5" in r.stdout and "std=0.25,0.25,0.25" in r.stdout
    out = tmp_path / "o"
    r = run("explain", bundle, images / "wide.jpg", images / "a.png", "-o", out,
            "-m", "liftcam,gradcam,cam", "-k", "10")
    assert r.returncode == 0, r.stderr
    recs = _records(out)
    assert len(recs) == 6
    # the logits are the torch model's (weights loaded, preprocessing as recorded)
    with Image.open(images / "wide.jpg") as im:
        a = np.asarray(im.convert("RGB").resize((64, 64), Image.BILINEAR), np.float32) / 255
    x = torch.from_numpy(((a - 0.5) / 0.25).transpose(2, 0, 1)[None].copy())
    with torch.no_grad():
        want = model(x)[0].numpy()
    rec = recs[0]
    assert Path(rec["file"]).name == "wide.jpg"
    assert rec["target"] == int(want.argmax())
    assert rec["target_logit"] == pytest.approx(float(want.max()), rel=1e-3, abs=1e-3)
    assert rec["top_k"][0]["label"] == f"class {rec['target']}"
    assert sum(t["probability"] for t in rec["top_k"]) == pytest.approx(1, abs=1e-5)
    for rec in recs:
        with Image.open(out / rec["overlay"]) as o:
            assert o.size == tuple(rec["size"])
        m = np.load(out / rec["map"])
        assert m.shape == (64, 64) and 0 <= m.min() and m.max() <= 1
    # cam (linear head): the same target, a different map
    for stem in ("wide", "a"):
        assert np.load(out / f"{stem}_liftcam.npy").shape == np.load(out / f"{stem}_cam.npy").shape


def test_export_errors(resnet18_bundle, tmp_path, capsys):
    _, bundle, d = resnet18_bundle
    r = run("export", "--arch", "resnet18", "--num-classes", "10", "--input-shape", "3,64,64",
            "-o", bundle)
    assert_one_line_error(r, 1, "already exists", "--overwrite")
    r = run("export", "--arch", "resnet81", "-o", tmp_path / "x")
    assert_one_line_error(r, 1, "resnet81", "resnet18")
    # weights that do not fit, or are no state_dict (in-process: torch is loaded already)
    from liftcam.cli import main

    capsys.readouterr()
    assert main(["export", "--arch", "resnet18", "--weights", str(d / "r18.pt"),
                 "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("liftcam: error: the weights in") and "--num-classes" in err
    assert main(["export", "--arch", "resnet18", "--num-classes", "10", "--weights",
                 str(d / "labels.txt"), "-o", str(tmp_path / "x")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("liftcam: error: cannot load weights") and err.count("\n") == 1
    assert not (tmp_path / "x").exists()


@pytest.fixture(scope="module")
def tiny_onnx(tmp_path_factory):
    torch = pytest.importorskip("torch")
    pytest.importorskip("onnx")
    d = tmp_path_factory.mktemp("onnx")
    torch.manual_seed(0)
    model = torch.nn.Sequential(
        torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
        torch.nn.Conv2d(8, 16, 3, padding=1), torch.nn.ReLU(),
        torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(), torch.nn.Linear(16, 5)).eval()
    path = d / "tiny.onnx"
    torch.onnx.export(model, torch.randn(1, 3, 32, 32), str(path), input_names=["x"],
                      dynamic_axes={"x": {0: "n"}}, dynamo=False)
    return path


def test_layers_and_export_onnx(tiny_onnx, images, tmp_path):
    r = run("layers", tiny_onnx)
    assert r.returncode == 0, r.stderr
    rows = r.stdout.splitlines()
    assert rows[0].split()[:2] == ["layer", "shape"]
    first = rows[1].split()
    assert first[0] == "*" and first[2] == "16x32x32" and first[3] == "Relu"
    assert "default target layer" in rows[-1]
    layer = first[1]
    out = tmp_path / "tiny.liftcam"
    r = run("export", "--onnx", tiny_onnx, "--layer", layer, "-o", out,
            "--resize-shorter", "40", "--center-crop", "32,32")
    assert r.returncode == 0, r.stderr
    r = run("export", "--onnx", tiny_onnx, "--layer", "nope", "-o", tmp_path / "t2")
    assert_one_line_error(r, 1, "'nope'")
    o = tmp_path / "o"
    r = run("explain", out, images / "wide.jpg", "-o", o)
    assert r.returncode == 0, r.stderr
    with Image.open(o / "wide_liftcam.png") as im:
        assert im.size == (200, 120)


def test_layers_torchvision():
    pytest.importorskip("torchvision")
    r = run("layers", "resnet18", "--input-shape", "3,64,64")
    assert r.returncode == 0, r.stderr
    first = r.stdout.splitlines()[1].split()
    assert first[:3] == ["*", "layer4", "512x2x2"]
    assert "layer3" in r.stdout and "256x4x4" in r.stdout


# ----------------------------------------------------------------------------- helpers

class _TTY(io.StringIO):
    def isatty(self):
        return True


def test_progress_bar_only_on_a_terminal():
    tty = _TTY()
    bar = Progress(4, "explain", stream=tty)
    bar.update(2)
    bar.write("liftcam: skipped: x")
    bar.update(2)
    bar.close()
    text = tty.getvalue()
    assert "\r" in text and "4/4" in text and "liftcam: skipped: x\n" in text
    pipe = io.StringIO()
    bar = Progress(4, "explain", stream=pipe)
    bar.update(4)
    bar.close()
    assert pipe.getvalue() == ""


def test_unique_stems():
    got = _unique_stems([Path("a/x.png"), Path("b/x.jpg"), Path("x-2.png"), Path("B/X.png")])
    assert got == ["x", "x-2", "x-2-2", "X-3"]


def test_map_to_original_center_crop():
    cam = np.ones((32, 32), np.float32)
    m = map_to_original(cam, (200, 120), {"resize": None, "resize_shorter": 40,
                                          "center_crop": [32, 32]})
    ys, xs = np.nonzero(m > 0.5)
    # resized 66x40, crop x 17..49, y 4..36, scaled back by 200/66 and 3
    assert m.shape == (120, 200)
    assert (xs.min(), xs.max(), ys.min(), ys.max()) == (52, 147, 12, 107)
    assert m[0, 0] == 0 and m.max() == 1
