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

from PIL import Image

from liftcam.cli.grid import TILE, make_grid
from liftcam.engine import DEMO_DIR
from liftcam.engine.errors import InputError

SAMPLES_JSON = "samples.json"
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


def add_parser(sub):
    from liftcam.cli.common import methods_arg, positive_arg

    d = sub.add_parser("demo", help="explain the built-in sample images with every method",
                       description="Explain the bundled sample images (procedural shapes) with "
                                   "every CAM method for both demo models; writes a grid PNG per "
                                   "model and per-image overlays. Needs no torch.")
    d.add_argument("-o", "--out", default="liftcam-demo", metavar="DIR",
                   help="output folder (default: %(default)s/)")
    d.add_argument("--methods", type=methods_arg, default=None, metavar="M[,M...]",
                   help="methods to run (default: all the model can run; 'cam' only on linear "
                        "heads)")
    d.add_argument("--shap-samples", type=positive_arg, default=None, metavar="N",
                   help=f"permutations per image for 'shap' (default: {SHAP_SAMPLES})")
    d.add_argument("--tile", type=positive_arg, default=None, metavar="PX",
                   help=f"tile size of the grid in pixels (default: {TILE})")
    d.add_argument("--providers", nargs="+", default=None, metavar="P",
                   help="ONNX Runtime execution providers, e.g. cuda cpu (default: cpu)")
    d.set_defaults(func=run)


def run(args) -> int:
    import sys

    from liftcam.cli.common import EXIT_OK, say

    t0 = time.perf_counter()
    kwargs = {}
    if args.shap_samples is not None:
        kwargs["shap_samples"] = args.shap_samples
    if args.tile is not None:
        kwargs["tile"] = args.tile
    summary = run_demo(args.out, methods=args.methods, providers=args.providers,
                       log=lambda s: say(s, sys.stdout), **kwargs)
    for name, m in summary["models"].items():
        say(f"  {name}: grid {m['grid']}, overlays in {m['overlays']}/", sys.stdout)
    say(f"wrote {args.out}/ (summary.json) in {time.perf_counter() - t0:.1f}s", sys.stdout)
    return EXIT_OK


def run_demo(out_dir, methods=None, shap_samples: int = SHAP_SAMPLES, tile: int = TILE,
             providers=None, demo_dir=None, log=print) -> dict:
    """Explain the sample images with every method for every demo bundle, through the public
    pipeline (:func:`liftcam.engine.pipeline.explain_files`).

    ``methods``: None or ``["all"]`` for every method each model can run (``cam`` only on
    linear heads), else a list of names. Writes ``<out>/<model>_grid.png`` (rows images,
    columns input + methods), the overlays, maps and results of ``<out>/<model>/``, and
    ``<out>/summary.json``. Returns the summary (paths, predictions, seconds per method)."""
    from liftcam.engine.atomic import save_png_atomic, write_bytes_atomic
    from liftcam.engine.bundle import load_bundle
    from liftcam.engine.explainer import Explainer
    from liftcam.engine.maps import overlay
    from liftcam.engine.methods import registry
    from liftcam.engine.pipeline import explain_files

    t_start = time.perf_counter()
    asked = ["all"] if methods is None else list(methods)
    for m in asked:
        if m != "all":
            registry.get(m)
    bundles = demo_bundles(demo_dir)
    samples = demo_samples(demo_dir)
    if not bundles or not samples:
        raise InputError(f"the demo assets are missing from {demo_dir or DEMO_DIR} (no bundles "
                         "or no images); reinstall liftcam or run python -m "
                         "liftcam.export.demo.make")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    truth = {p: t for p, t in samples}
    summary = {"out_dir": str(out), "models": {}}
    for bpath in bundles:
        t_model = time.perf_counter()
        bundle = load_bundle(bpath)
        name = bpath.name[:-len(".liftcam")]
        can = registry.available(bundle)
        used = can if "all" in asked else [m for m in asked if m in can]
        wanted = registry.METHODS if "all" in asked else asked
        for m in wanted:
            if m not in can:
                log(f"{name}: skipping {m!r} (it needs a linear head; this one is pooling + "
                    "MLP)")
        tiles, rows = {}, {}

        def keep(r, tile=tile, tiles=tiles, rows=rows):
            big = r.image.resize((tile, tile), Image.NEAREST if r.image.width <= tile else
                                 Image.BILINEAR)
            tiles[(r.path, r.method)] = overlay(big, r.map)
            rows.setdefault(r.path, (r.image, r.record))

        run = explain_files(bundle, [p for p, _ in samples], out / name, used, maps="none",
                            overwrite=True, options={"shap": {"n_samples": shap_samples}},
                            explainer=Explainer(bundle, providers=providers), progress=False,
                            on_result=keep, log=log)
        grid_rows, predictions, correct = [], [], 0
        for path, t in samples:
            img, rec = rows[path]
            top = rec["top_k"][0]
            label, p = top["label"] or str(top["class"]), top["probability"]
            predictions.append({"file": path.name, "true": t, "predicted": label,
                                "probability": p})
            caption = [f"pred {label} {p:.0%}"] + ([f"true {t}"] if t is not None else [])
            correct += int(t == label)
            grid_rows.append([(img, caption)] + [(tiles[(path, m)], []) for m in used])
        label_note = f"shap ({shap_samples} perm.)"
        columns = ["input"] + [label_note if m == "shap" else m for m in used]
        grid_path = out / f"{name}_grid.png"
        save_png_atomic(make_grid(columns, grid_rows, tile, title=name), grid_path)
        n_known = sum(t is not None for t in truth.values())
        seconds = {m: round(s, 3) for m, s in run.method_seconds.items()}
        summary["models"][name] = {
            "bundle": str(bpath), "grid": str(grid_path), "overlays": str(out / name),
            "methods": used, "seconds": seconds, "predictions": predictions,
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
