"""The built-in demo (``liftcam demo``).

Run time only: numpy + onnxruntime + Pillow. The demo bundles (``vgg_demo.liftcam``,
``resnet_demo.liftcam``) and the sample images live in ``engine/demo/`` (package data, written
by ``python -m liftcam.export.demo.make``), so the demo works on a fresh install with no torch.

The comparison grid it writes per model is drawn by :mod:`liftcam.cli.grid`: one row per image;
the first column is the input, captioned with its predicted class (and the true class where
known), the others are the CAM overlays.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
from PIL import Image

from liftcam.cli.grid import TILE, make_grid
from liftcam.engine.errors import InputError

from liftcam.engine import DEMO_DIR  # noqa: E402
SAMPLES_JSON = "samples.json"
#: every method, in the demo's column order; ``cam`` only where the head is linear
METHODS = ("liftcam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "ablationcam",
           "scorecam", "shap", "cam")
SHAP_SAMPLES = 128         # permutations per image for the sampled channel-SHAP column

# ----------------------------------------------------------------------------- demo assets

def demo_bundles(directory=None) -> list:
    """The demo bundles (``*.liftcam`` directories), sorted by name."""
    d = Path(directory) if directory is not None else DEMO_DIR
    return sorted(p for p in d.glob("*.liftcam") if p.is_dir())


def demo_samples(directory=None) -> list:
    """``[(path, true_label or None)]`` for the demo's sample images, in display order."""
    d = Path(directory) if directory is not None else DEMO_DIR
    meta = d / SAMPLES_JSON
    if meta.is_file():
        entries = json.loads(meta.read_text(encoding="utf-8"))["images"]
        return [(d / e["file"], e.get("label")) for e in entries]
    return [(p, None) for p in sorted(d.glob("*.png"))]


def _top1(probs, labels):
    i = int(np.argmax(probs))
    return (labels[i] if labels else str(i)), float(probs[i])


# ----------------------------------------------------------------------------- the demo

def run_demo(out_dir, methods=None, shap_samples: int = SHAP_SAMPLES, tile: int = TILE,
             providers=None, demo_dir=None, log=print) -> dict:
    """Explain the sample images with every method for every demo bundle.

    Writes ``<out>/<model>_grid.png`` (rows images, columns input + methods) and the overlays
    ``<out>/<model>/<image>_<method>.png`` (at the image's own size), and ``<out>/summary.json``.
    Returns the summary (paths, predictions, seconds per method)."""
    from liftcam.engine.bundle import load_bundle
    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import load_image, overlay, preprocess, save_png_atomic
    from liftcam.engine.images import write_bytes_atomic

    t_start = time.perf_counter()
    methods = list(METHODS if methods is None else methods)
    unknown = [m for m in methods if m not in METHODS]
    if unknown:
        raise InputError(f"unknown method(s) {unknown}; choose from {list(METHODS)}")
    bundles = demo_bundles(demo_dir)
    samples = demo_samples(demo_dir)
    if not bundles or not samples:
        raise InputError(f"the demo assets are missing from {demo_dir or DEMO_DIR} (no bundles "
                         "or no images); reinstall liftcam or run python -m "
                         "liftcam.export.demo.make")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    images = [load_image(p) for p, _ in samples]
    summary = {"out_dir": str(out), "models": {}}
    for bpath in bundles:
        t_model = time.perf_counter()
        bundle = load_bundle(bpath)
        name = bpath.name[:-len(".liftcam")]
        linear = bool(bundle.manifest.get("head", {}).get("linear"))
        used = [m for m in methods if m != "cam" or linear]
        if "cam" in methods and not linear:
            log(f"{name}: skipping 'cam' (its head is not linear: pooling + MLP)")
        explainer = Explainer(bundle, providers=providers)
        x = preprocess(images, bundle.manifest["preprocessing"])
        labels = bundle.labels
        (out / name).mkdir(exist_ok=True)
        tiles = {m: [] for m in used}
        seconds = {}
        predictions = None
        for m in used:
            opts = {"n_samples": shap_samples} if m == "shap" else {}
            t0 = time.perf_counter()
            e = explainer.explain(x, method=m, progress=False, **opts)
            seconds[m] = round(time.perf_counter() - t0, 3)
            if predictions is None:
                probs = e.probabilities()
                predictions = [_top1(p, labels) for p in probs]
            for (path, _), img, cam_map in zip(samples, images, e.maps):
                save_png_atomic(overlay(img, cam_map), out / name / f"{path.stem}_{m}.png")
                big = img.resize((tile, tile), Image.NEAREST if img.width <= tile else
                                 Image.BILINEAR)
                tiles[m].append(overlay(big, cam_map))
        rows = []
        correct = 0
        for i, ((path, truth), img) in enumerate(zip(samples, images)):
            label, p = predictions[i]
            caption = [f"pred {label} {p:.0%}"]
            if truth is not None:
                caption.append(f"true {truth}")
                correct += int(truth == label)
            rows.append([(img, caption)] + [(tiles[m][i], []) for m in used])
        label_note = "shap" if "shap" not in used else f"shap ({shap_samples} perm.)"
        columns = ["input"] + [label_note if m == "shap" else m for m in used]
        grid_path = out / f"{name}_grid.png"
        save_png_atomic(make_grid(columns, rows, tile, title=name), grid_path)
        n_known = sum(t is not None for _, t in samples)
        summary["models"][name] = {
            "bundle": str(bpath), "grid": str(grid_path), "overlays": str(out / name),
            "methods": used, "seconds": seconds,
            "predictions": [{"file": p.name, "true": t, "predicted": lab, "probability": pr}
                            for (p, t), (lab, pr) in zip(samples, predictions)],
            "correct": correct if n_known else None,
            "total_seconds": round(time.perf_counter() - t_model, 3),
        }
        acc = f", {correct}/{n_known} predicted correctly" if n_known else ""
        log(f"{name}: {len(samples)} images x {len(used)} methods in "
            f"{time.perf_counter() - t_model:.1f}s{acc} -> {grid_path}")
        log("  seconds per method: " + ", ".join(f"{m} {s:.2f}" for m, s in seconds.items()))
    summary["total_seconds"] = round(time.perf_counter() - t_start, 3)
    write_bytes_atomic(out / "summary.json",
                       (json.dumps(summary, indent=2) + "\n").encode("utf-8"))
    return summary
