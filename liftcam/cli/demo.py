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

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from liftcam.engine.errors import InputError

from liftcam.engine import DEMO_DIR  # noqa: E402
SAMPLES_JSON = "samples.json"
#: every method, in the demo's column order; ``cam`` only where the head is linear
METHODS = ("liftcam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam", "ablationcam",
           "scorecam", "shap", "cam")
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
        save_png_atomic(make_grid(columns, rows, tile), grid_path)
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
