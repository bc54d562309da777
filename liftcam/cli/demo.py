"""The built-in demo (``liftcam demo``) and the comparison grid it draws.

Run time only: numpy + onnxruntime + Pillow. The demo bundles (``vgg_demo.liftcam``,
``resnet_demo.liftcam``) and the sample images live in ``engine/demo/`` (package data, written
by ``python -m liftcam.export.demo.make``), so the demo works on a fresh install with no torch.

:func:`make_grid` lays out one tile per (image, column): a header row with the column names,
then one row per image; the first column is the input with its predicted class (and the true
class where known), the others are the CAM overlays. Its size is :func:`grid_size`.
"""
from __future__ import annotations

import json
import time
from pathlib import Path

from PIL import Image, ImageDraw, ImageFont

from liftcam.engine.errors import InputError

from liftcam.engine import DEMO_DIR  # noqa: E402
SAMPLES_JSON = "samples.json"
SHAP_SAMPLES = 128         # permutations per image for the sampled channel-SHAP column

TILE = 128                 # pixels per tile (square)
GAP = 4                    # pixels between tiles and around the border
HEADER = 20                # height of the header row with the column names
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)


# ----------------------------------------------------------------------------- the grid

def grid_size(rows: int, cols: int, tile: int = TILE) -> tuple:
    """``(width, height)`` of a grid of ``rows`` x ``cols`` tiles (header row included)."""
    return (cols * tile + (cols + 1) * GAP, HEADER + rows * tile + (rows + 1) * GAP)


def tile_box(row: int, col: int, tile: int = TILE) -> tuple:
    """``(left, top, right, bottom)`` of the tile at (row, col)."""
    left = GAP + col * (tile + GAP)
    top = HEADER + GAP + row * (tile + GAP)
    return left, top, left + tile, top + tile


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)    # scalable font (Pillow >= 10.1 + FreeType)
    except TypeError:
        return ImageFont.load_default()


def _text_width(draw, text, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if _text_width(draw, text, font) <= width:
        return text
    while text and _text_width(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def _caption(tile_img: Image.Image, lines) -> Image.Image:
    """Draw ``lines`` on a dark strip at the bottom of a tile."""
    lines = [s for s in lines if s]
    if not lines:
        return tile_img
    img = tile_img.convert("RGBA")
    font = _font(max(9, img.width // 12))
    layer = Image.new("RGBA", img.size, (0, 0, 0, 0))
    draw = ImageDraw.Draw(layer)
    line_h = draw.textbbox((0, 0), "Ag", font=font)[3] + 2
    top = img.height - line_h * len(lines) - 2
    draw.rectangle((0, top, img.width, img.height), fill=(0, 0, 0, 150))
    for i, s in enumerate(lines):
        draw.text((3, top + 1 + i * line_h), _fit(draw, s, font, img.width - 6), font=font,
                  fill=(255, 255, 255, 255))
    return Image.alpha_composite(img, layer).convert("RGB")


def make_grid(columns, rows, tile: int = TILE) -> Image.Image:
    """Lay out tiles in a labelled grid.

    ``columns``: the column names (header). ``rows``: one list per row of
    ``(image, caption_lines)`` pairs (``caption_lines`` may be empty), one per column; a
    ``None`` image leaves its tile blank. Images are resized to ``tile`` x ``tile``."""
    columns = list(columns)
    if not columns or not rows:
        raise InputError("make_grid needs at least one column and one row")
    for r, row in enumerate(rows):
        if len(row) != len(columns):
            raise InputError(f"row {r} has {len(row)} tiles for {len(columns)} columns")
    W, H = grid_size(len(rows), len(columns), tile)
    grid = Image.new("RGB", (W, H), BACKGROUND)
    draw = ImageDraw.Draw(grid)
    font = _font(12)
    for c, name in enumerate(columns):
        left, top, right, _ = tile_box(0, c, tile)
        text = _fit(draw, str(name), font, tile)
        tw = _text_width(draw, text, font)
        draw.text((left + (tile - tw) // 2, 3), text, font=font, fill=TEXT)
    for r, row in enumerate(rows):
        for c, (img, lines) in enumerate(row):
            if img is None:
                continue
            img = img.convert("RGB")
            if img.size != (tile, tile):
                img = img.resize((tile, tile), Image.NEAREST if img.width <= tile else
                                 Image.BILINEAR)
            grid.paste(_caption(img, lines or []), tile_box(r, c, tile)[:2])
    return grid


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
    from liftcam.engine.bundle import load_bundle
    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import overlay, save_png_atomic, write_bytes_atomic
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
        save_png_atomic(make_grid(columns, grid_rows, tile), grid_path)
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
