"""Faithfulness evaluation of LIFT-CAM and the other CAM methods (issue: "Faithfulness
evaluation: the paper's metrics, ground-truth localisation and closeness to exact SHAP").

    python benchmarks/faithfulness.py [--quick] [--n-images N] [--out DIR] [--seed S]

Data: the procedural shape set (``liftcam.export.demo.shapes``) at 64x64, generated with seed
``EVAL_SEED_BASE + S`` (S = ``--seed``, default 0), a seed used by no training run (the demo
models train on 1000+, test on 2000+; the small models on 3100+/3200+). For each model the first
N images of that pool that the model classifies correctly are explained, with the class as target
(so target = ground-truth label = predicted class, and the object masks are the evidence).

Models (each exported with ``liftcam.export`` into a temporary bundle, run on ONNX Runtime CPU):
- ``vgg_demo``, ``resnet_demo``: the demo classifiers (``export/demo/weights/*.pt``), K = 64
  channels at the target layer; the SHAP reference is permutation-sampled (``--shap-samples``
  permutations of the K channels, K + 1 head evaluations each) with its standard error, and a
  second independent draw (another seed) is compared with the first to show the noise ceiling.
- ``mlp16`` (K = 16, max-pool + ReLU MLP head) and ``gap12`` (K = 12, GAP + linear head), see
  ``benchmarks/faith_models.py``: exact channel SHAP (2^K head evaluations per image).

Methods: liftcam, gradcam, gradcam++, xgradcam, layercam, ablationcam, scorecam, and shap itself
(its coefficients used as CAM weights). Metrics (``liftcam.metrics``), maps in [0, 1]:
- Average Drop % (lower is better), Increase in Confidence % (higher), Average Drop in Deletion %
  (higher): image x·m + b·(1 − m) (resp. x·(1 − m) + b·m) with b = 0, the normalised data mean.
- Deletion AUC (lower) with baseline 0 and insertion AUC (higher) starting from the image blurred
  with a Gaussian of sigma ``BLUR_SIGMA`` px: ``steps`` equal steps of H·W/steps pixels each,
  pixels in order of decreasing map value; softmax probability of the target; trapezoidal AUC.
- Pointing game (the map's maximum inside the object mask, tolerance ``--pg-tolerance`` px,
  default 0) and energy pointing game (share of the map's mass inside the object mask).
- SHAP closeness of each method's channel coefficients (N, K) to the SHAP reference φ, per image
  then averaged (``coefficient_agreement``): Pearson, Spearman, normalised L2 ‖c/‖c‖ − φ/‖φ‖‖ (in
  [0, 2]), relative L2 (JSON only: scale-dependent), top-k overlap by value (k = ``TOP_K``).

Outputs in ``--out`` (default ``out/faithfulness`` or ``out/faithfulness_quick``):
``faithfulness.md`` (also printed), ``faithfulness.json`` (every number; wall times under the
``runtime`` key only), ``curves.png`` (mean deletion / insertion curves per method and model) and
``examples_<model>.png`` (rows: images; columns: image, mask, the methods' maps).
Everything is seeded and ONNX Runtime runs with a fixed thread count (``--threads``, default 1),
so a rerun writes identical numbers.

``--quick`` (CI): 6 images, 8 steps, 16 SHAP permutations; the same four models (the committed
small models' weights are loaded, nothing is trained).
"""
from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

METHODS = ("liftcam", "gradcam", "gradcam++", "xgradcam", "layercam", "ablationcam", "scorecam",
           "shap")
DEMO_MODELS = ("vgg_demo", "resnet_demo")
SMALL_MODELS = ("mlp16", "gap12")
EVAL_SEED_BASE = 7000
BLUR_SIGMA = 5.0
TOP_K = 5
PREDICT_BATCH = 256
EVAL_BATCH = 4096

# metric key -> (table header, direction: +1 higher is better, -1 lower is better)
FAITH_METRICS = {
    "average_drop": ("AD % ↓", -1),
    "increase_in_confidence": ("IC % ↑", +1),
    "average_drop_in_deletion": ("ADD % ↑", +1),
    "deletion_auc": ("Del AUC ↓", -1),
    "insertion_auc": ("Ins AUC ↑", +1),
    "pointing_game": ("PG ↑", +1),
    "energy_pointing_game": ("EPG ↑", +1),
}
SHAP_METRICS = {
    "shap_pearson": ("φ Pearson ↑", +1),
    "shap_spearman": ("φ Spearman ↑", +1),
    "shap_l2_normalised": ("φ L2n ↓", -1),
    "shap_topk_overlap": ("φ top-k ↑", +1),
}
ALL_METRICS = {**FAITH_METRICS, **SHAP_METRICS}
# valid range of every metric (for tests and sanity checks)
RANGES = {
    "average_drop": (0.0, 100.0), "increase_in_confidence": (0.0, 100.0),
    "average_drop_in_deletion": (0.0, 100.0), "deletion_auc": (0.0, 1.0),
    "insertion_auc": (0.0, 1.0), "pointing_game": (0.0, 1.0),
    "energy_pointing_game": (0.0, 1.0), "shap_pearson": (-1.0, 1.0),
    "shap_spearman": (-1.0, 1.0), "shap_l2_normalised": (0.0, 2.0),
    "shap_topk_overlap": (0.0, 1.0),
}


def log(msg):
    print(msg, file=sys.stderr, flush=True)


# ----------------------------------------------------------------------------- config


def make_config(args) -> dict:
    quick = bool(args.quick)
    return {
        "quick": quick,
        "seed": args.seed,
        "eval_seed": EVAL_SEED_BASE + args.seed,
        "n_images": args.n_images if args.n_images is not None else (6 if quick else 200),
        "pool_factor": 3 if quick else 2,
        "image_size": 64,
        "steps": args.steps if args.steps is not None else (8 if quick else 32),
        "deletion_baseline": "zero (the normalised data mean)",
        "insertion_baseline": (f"blur (Gaussian, sigma {BLUR_SIGMA} px, "
                               f"radius {math.ceil(BLUR_SIGMA)})"),
        "confidence_baseline": "zero (the normalised data mean)",
        "pointing_tolerance": args.pg_tolerance,
        "shap_samples": (args.shap_samples if args.shap_samples is not None
                         else (16 if quick else 256)),
        "shap_exact_max_k": 16,
        "top_k": TOP_K,
        "threads": args.threads,
        "methods": list(METHODS),
        "models": list(args.models),
        "target": "the ground-truth class; only images the model classifies correctly are used",
    }


# ----------------------------------------------------------------------------- models


def demo_weights_path(name, demo_dir):
    from liftcam.export.demo.models import WEIGHTS_DIR

    d = Path(demo_dir) if demo_dir else WEIGHTS_DIR
    return d / f"{name}.pt"


def load_model(name, out_dir, demo_dir):
    """``(torch model, target layer, info)`` or raises FileNotFoundError (weights missing)."""
    if name in DEMO_MODELS:
        from liftcam.export.demo.models import build_demo_model

        path = demo_weights_path(name, demo_dir)
        if not path.is_file():
            raise FileNotFoundError(f"no demo weights at {path}")
        model = build_demo_model(name, path)
        return model, model.TARGET_LAYER, {"weights": _rel(path)}
    import faith_models

    model, path = faith_models.load_or_train(name, cache_dir=Path(out_dir) / "faith_weights",
                                             log=log)
    return model, faith_models.TARGET_LAYER, {"weights": _rel(path)}


def _rel(path):
    path = Path(path).resolve()
    try:
        return str(path.relative_to(REPO))
    except ValueError:
        return str(path)


# ----------------------------------------------------------------------------- evaluation


def _summary(per_image) -> dict:
    a = np.asarray(per_image, dtype=np.float64)
    sem = float(a.std(ddof=1) / math.sqrt(len(a))) if len(a) > 1 else 0.0
    return {"mean": float(a.mean()), "sem": sem}


def evaluate_model(name, explainer, x, targets, masks, cfg, info) -> dict:
    from liftcam import metrics as M

    K = explainer.bundle.activation_shape[0]
    exact = K <= cfg["shap_exact_max_k"]
    top_k = min(TOP_K, K)
    predict = explainer.predict
    steps = cfg["steps"]
    runtime = {}

    def run(method, **opts):
        t0 = time.perf_counter()
        e = explainer.explain(x, targets, method=method, progress=False, **opts)
        runtime[method if not opts.get("seed") else f"{method}_seed{opts['seed']}"] = \
            time.perf_counter() - t0
        return e

    shap_opts = {} if exact else {"n_samples": cfg["shap_samples"], "seed": cfg["seed"]}
    explanations = {}
    for method in METHODS:
        explanations[method] = run(method, **(shap_opts if method == "shap" else {}))
    ref = explanations["shap"]
    phi = ref.weights.astype(np.float64)
    stderr = None if exact else ref.extra["shap_stderr"].astype(np.float64)
    info.update({
        "K": int(K), "activation_shape": list(explainer.bundle.activation_shape),
        "linear_head": bool(explainer.bundle.manifest.get("head", {}).get("linear")),
        "shap_reference": "exact (2^K head evaluations)" if exact else
        (f"sampled: {cfg['shap_samples']} permutations x {K + 1} head evaluations, "
         f"seed {cfg['seed']}"),
        "shap_exact": bool(exact), "top_k": top_k,
    })
    if not exact:
        # the sampling noise of the reference: its standard error relative to |φ|, and how a
        # second independent draw agrees with it (the ceiling a perfect method could reach)
        info["shap_stderr_mean"] = float(stderr.mean())
        info["shap_noise_floor"] = float(np.mean(
            np.linalg.norm(stderr, axis=1) / np.maximum(np.linalg.norm(phi, axis=1), 1e-30)))
        second = run("shap", n_samples=cfg["shap_samples"], seed=cfg["seed"] + 1)
        ag = M.coefficient_agreement(second.weights, phi, shap_stderr=stderr, top_k=top_k)
        info["shap_second_draw"] = {
            "seed": cfg["seed"] + 1,
            "shap_pearson": ag.mean["pearson"], "shap_spearman": ag.mean["spearman"],
            "shap_l2_normalised": ag.mean["l2_normalised"],
            "shap_l2_relative": ag.mean["l2_relative"],
            "shap_topk_overlap": ag.mean["topk_overlap"], "shap_within_2se": ag.mean["within_2se"],
        }
    # completeness of the SHAP reference: Σφ = y_c(A) − y_c(0)  (a check of the reference)
    y = ref.logits[np.arange(len(targets)), targets].astype(np.float64)
    A0 = np.zeros((1, *explainer.bundle.activation_shape), np.float32)
    y0 = explainer.head(A0)[0, targets].astype(np.float64)
    info["shap_completeness_max_error"] = float(np.max(np.abs(phi.sum(axis=1) - (y - y0))))

    results = {}
    curves = {}
    per_image = {}
    for method in METHODS:
        t0 = time.perf_counter()
        e = explanations[method]
        maps = e.maps
        r = {}
        conf = M.confidence_metrics(predict, x, maps, targets, batch_size=PREDICT_BATCH,
                                    baseline=0.0)
        for key in ("average_drop", "increase_in_confidence", "average_drop_in_deletion"):
            s = _summary(conf[key].per_image)
            r[key], r[key + "_sem"] = s["mean"], s["sem"]
        dele = M.deletion_auc(predict, x, maps, targets, steps=steps, batch_size=PREDICT_BATCH,
                              baseline="zero")
        ins = M.insertion_auc(predict, x, maps, targets, steps=steps, batch_size=PREDICT_BATCH,
                              baseline="blur", blur_sigma=BLUR_SIGMA)
        for key, c in (("deletion_auc", dele), ("insertion_auc", ins)):
            s = _summary(c.auc)
            r[key], r[key + "_sem"] = s["mean"], s["sem"]
        pg = M.pointing_game(maps, masks, tolerance=cfg["pointing_tolerance"])
        epg = M.energy_pointing_game(maps, masks)
        r["pointing_game"] = pg.accuracy
        r["pointing_game_sem"] = _summary(pg.hits.astype(float))["sem"]
        r["energy_pointing_game"], r["energy_pointing_game_sem"] = \
            _summary(epg.per_image)["mean"], _summary(epg.per_image)["sem"]
        r["empty_maps"] = int(epg.empty.sum())
        r["map_mean"] = float(maps.mean())      # coverage: AD/IC/ADD favour broad maps
        ag = M.coefficient_agreement(e.weights.astype(np.float64), phi, shap_stderr=stderr,
                                     top_k=top_k)
        for key in ("pearson", "spearman", "l2_normalised", "l2_relative", "topk_overlap",
                    "degenerate") + (("within_2se",) if stderr is not None else ()):
            r[f"shap_{key}"] = ag.mean[key]
        for key in ("pearson", "spearman", "l2_normalised", "topk_overlap"):
            r[f"shap_{key}_sem"] = _summary(getattr(ag, key))["sem"]
        per_image[method] = {
            "average_drop": conf["average_drop"].per_image,
            "average_drop_in_deletion": conf["average_drop_in_deletion"].per_image,
            "deletion_auc": dele.auc, "insertion_auc": ins.auc,
            "pointing_game": pg.hits.astype(np.float64), "energy_pointing_game": epg.per_image,
            "shap_pearson": ag.pearson, "shap_l2_normalised": ag.l2_normalised}
        results[method] = r
        curves[method] = {"fractions": dele.fractions.tolist(),
                          "deletion": dele.curves.mean(axis=0).tolist(),
                          "insertion": ins.curves.mean(axis=0).tolist()}
        runtime[f"metrics_{method}"] = time.perf_counter() - t0
    # paired per-image differences (method − liftcam): mean and its standard error
    for method in METHODS:
        results[method]["vs_liftcam"] = {
            key: _summary(np.asarray(v, np.float64) - per_image["liftcam"][key])
            for key, v in per_image[method].items()}
    return {"info": info, "methods": results, "curves": curves}, explanations, runtime


def select_images(explainer, images, labels, masks, n, to_input):
    x_all = to_input(images).numpy()
    logits = np.concatenate([explainer.predict(x_all[i:i + PREDICT_BATCH])
                             for i in range(0, len(x_all), PREDICT_BATCH)])
    correct = np.nonzero(logits.argmax(axis=1) == labels)[0]
    idx = correct[:n]
    acc = float(len(correct) / len(labels))
    return idx, x_all[idx], labels[idx], masks[idx], acc


# ----------------------------------------------------------------------------- output


def _fmt(v, key):
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "–"
    digits = 1 if key in ("average_drop", "increase_in_confidence",
                          "average_drop_in_deletion") else 3
    v = round(v, digits) + 0.0   # no "-0.000"
    return f"{v:.{digits}f}"


def markdown(report) -> str:
    cfg = report["config"]
    lines = ["# Faithfulness of CAM methods (liftcam)", ""]
    lines.append(
        f"Shape data set, 64x64, seed {cfg['eval_seed']}; per model the first {cfg['n_images']} "
        f"correctly classified images, target = true class. ONNX Runtime CPU, {cfg['threads']} "
        f"thread(s). Deletion: {cfg['steps']} steps to {cfg['deletion_baseline']}; insertion: "
        f"{cfg['steps']} steps from {cfg['insertion_baseline']}; AD/IC/ADD baseline "
        f"{cfg['confidence_baseline']}. PG: map maximum inside the object mask (tolerance "
        f"{cfg['pointing_tolerance']} px); EPG: share of map mass inside the mask. "
        f"φ columns: each method's channel coefficients vs the SHAP reference (per image, "
        f"averaged); L2n = ‖c/‖c‖ − φ/‖φ‖‖; top-k overlap by value with k = min({TOP_K}, K). "
        f"**Bold**: best CAM method per column (the shap row is the reference, not ranked). "
        f"map mean: the maps' mean value (coverage; AD, IC and ADD favour broad maps). The JSON "
        f"holds standard errors (``*_sem``) and paired per-image differences to LIFT-CAM "
        f"(``vs_liftcam``).")
    lines.append("")
    for name, m in report["models"].items():
        if "skipped" in m:
            lines += [f"## {name}", "", f"Skipped: {m['skipped']}", ""]
            continue
        info = m["info"]
        kind = "linear" if info["linear_head"] else "non-linear"
        lines.append(f"## {name} (K = {info['K']}, {kind}"
                     f" head, target layer `{info['target_layer']}`)")
        lines.append("")
        extra = (f"{info['n_images']} images (accuracy on the pool {info['pool_accuracy']:.3f}). "
                 f"SHAP reference: {info['shap_reference']}; completeness max error "
                 f"{info['shap_completeness_max_error']:.2g}.")
        if not info["shap_exact"]:
            sd = info["shap_second_draw"]
            extra += (f" Mean standard error {info['shap_stderr_mean']:.3g} (‖se‖/‖φ‖ = "
                      f"{info['shap_noise_floor']:.3f}); a second independent draw vs the "
                      f"reference: Pearson {sd['shap_pearson']:.3f}, Spearman "
                      f"{sd['shap_spearman']:.3f}, L2n {sd['shap_l2_normalised']:.3f}, top-k "
                      f"{sd['shap_topk_overlap']:.3f} (the noise ceiling).")
        lines += [extra, ""]
        keys = list(ALL_METRICS)
        lines.append("| method | " + " | ".join(ALL_METRICS[k][0] for k in keys)
                     + " | map mean |")
        lines.append("|---|" + "---:|" * (len(keys) + 1))
        best = {}
        for k in keys:  # ties as displayed count as ties
            shown = {meth: float(_fmt(m["methods"][meth][k], k))
                     for meth in METHODS if meth != "shap"
                     and math.isfinite(m["methods"][meth][k])}
            sign = ALL_METRICS[k][1]
            top = max((sign * v for v in shown.values()), default=None)
            best[k] = {meth for meth, v in shown.items() if sign * v == top}
        for meth in METHODS:
            cells = []
            for k in keys:
                c = _fmt(m["methods"][meth][k], k)
                if meth != "shap" and meth in best[k]:
                    c = f"**{c}**"
                cells.append(c)
            cells.append(f"{m['methods'][meth]['map_mean']:.3f}")
            lines.append(f"| {meth} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def plot_curves(report, path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = [n for n, m in report["models"].items() if "skipped" not in m]
    if not models:
        return
    fig, axes = plt.subplots(len(models), 2, figsize=(10, 3.2 * len(models)), squeeze=False)
    colors = plt.get_cmap("tab10")
    for i, name in enumerate(models):
        for j, kind in enumerate(("deletion", "insertion")):
            ax = axes[i, j]
            for mi, meth in enumerate(METHODS):
                c = report["models"][name]["curves"][meth]
                auc = report["models"][name]["methods"][meth][f"{kind}_auc"]
                ax.plot(c["fractions"], c[kind], color=colors(mi),
                        ls="--" if meth == "shap" else "-", lw=2 if meth == "liftcam" else 1.2,
                        label=f"{meth} ({auc:.3f})")
            ax.set_title(f"{name}: {kind}")
            ax.set_xlabel("fraction of pixels " + ("removed" if kind == "deletion" else "revealed"))
            ax.set_ylabel("p(target)")
            ax.set_xlim(0, 1)
            ax.set_ylim(0, 1.02)
            ax.legend(fontsize=7, loc="upper right" if kind == "deletion" else "lower right")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_examples(name, images, masks, explanations, path, n_rows):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = min(n_rows, len(images))
    cols = ["image", "mask"] + list(METHODS)
    fig, axes = plt.subplots(n, len(cols), figsize=(1.5 * len(cols), 1.55 * n + 0.3),
                             squeeze=False)
    for r in range(n):
        for c, col in enumerate(cols):
            ax = axes[r, c]
            ax.axis("off")
            ax.imshow(images[r])
            if col == "mask":
                ax.imshow(masks[r], cmap="gray", alpha=0.6)
            elif col != "image":
                ax.imshow(explanations[col].maps[r], cmap="jet", alpha=0.5, vmin=0, vmax=1)
            if r == 0:
                ax.set_title(col, fontsize=8)
    fig.suptitle(name, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def _write_atomic(path, text):
    tmp = Path(str(path) + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- main


def run(args) -> dict:
    import liftcam
    from liftcam.export.demo import shapes
    from liftcam.export.demo.models import PREPROCESSING, to_input

    cfg = make_config(args)
    out = Path(args.out) if args.out else REPO / "out" / ("faithfulness_quick" if cfg["quick"]
                                                          else "faithfulness")
    out.mkdir(parents=True, exist_ok=True)
    t_start = time.perf_counter()
    n_pool = cfg["n_images"] * cfg["pool_factor"]
    images, labels, masks = shapes.make_dataset(n_pool, seed=cfg["eval_seed"],
                                                size=cfg["image_size"])
    report = {"config": cfg, "models": {}, "runtime": {}}
    import onnxruntime
    import torch
    report["versions"] = {"liftcam": liftcam.__version__, "onnxruntime": onnxruntime.__version__,
                          "torch": torch.__version__, "numpy": np.__version__}
    report["runtime"]["machine"] = platform.platform()
    with tempfile.TemporaryDirectory(prefix="faith_bundles_") as tmp:
        for name in cfg["models"]:
            t0 = time.perf_counter()
            try:
                model, layer, info = load_model(name, out, args.demo_weights)
            except FileNotFoundError as exc:
                log(f"[{name}] skipped: {exc}")
                report["models"][name] = {"skipped": str(exc)}
                continue
            bundle = liftcam.export(model, layer, input_shape=(3, 64, 64),
                                    out_dir=Path(tmp) / f"{name}.liftcam",
                                    preprocessing=PREPROCESSING, labels=list(shapes.CLASSES))
            explainer = liftcam.Explainer(bundle, threads=cfg["threads"], eval_batch=EVAL_BATCH)
            idx, x, t, mk, acc = select_images(explainer, images, labels, masks, cfg["n_images"],
                                               to_input)
            if len(idx) == 0:
                report["models"][name] = {"skipped": "the model classifies no pool image correctly"}
                continue
            info.update({"target_layer": layer, "n_images": int(len(idx)), "pool_size": n_pool,
                         "pool_accuracy": acc, "image_indices": idx.tolist()})
            log(f"[{name}] {len(idx)} images (pool accuracy {acc:.3f}), explaining ...")
            res, explanations, rt = evaluate_model(name, explainer, x, t, mk, cfg, info)
            report["models"][name] = res
            plot_examples(name, images[idx], masks[idx], explanations,
                          out / f"examples_{name}.png", n_rows=3 if cfg["quick"] else 6)
            rt["total"] = time.perf_counter() - t0
            report["runtime"][name] = rt
            log(f"[{name}] done in {rt['total']:.1f}s")
    report["runtime"]["total"] = time.perf_counter() - t_start
    md = markdown(report)
    _write_atomic(out / "faithfulness.md", md + "\n")
    _write_atomic(out / "faithfulness.json", json.dumps(report, indent=1, sort_keys=True) + "\n")
    plot_curves(report, out / "curves.png")
    print(md)
    log(f"wrote {out}/faithfulness.md, faithfulness.json, curves.png, examples_*.png "
        f"({report['runtime']['total']:.1f}s)")
    return report


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--quick", action="store_true",
                   help="CI size: 6 images, 8 steps, 16 SHAP permutations")
    p.add_argument("--n-images", type=int, default=None,
                   help="correctly classified images per model (default 200; quick 6)")
    p.add_argument("--out", default=None, help="output directory")
    p.add_argument("--seed", type=int, default=0,
                   help=f"data seed offset (data seed {EVAL_SEED_BASE} + S) and SHAP sampling seed")
    p.add_argument("--steps", type=int, default=None,
                   help="deletion/insertion steps (default 32; quick 8)")
    p.add_argument("--shap-samples", type=int, default=None,
                   help="SHAP permutations for K > 16 (default 256; quick 16)")
    p.add_argument("--pg-tolerance", type=int, default=0, help="pointing game tolerance (px)")
    p.add_argument("--threads", type=int, default=1, help="ONNX Runtime intra-op threads")
    p.add_argument("--models", nargs="+", default=list(DEMO_MODELS + SMALL_MODELS),
                   choices=list(DEMO_MODELS + SMALL_MODELS))
    p.add_argument("--demo-weights", default=None,
                   help="directory with vgg_demo.pt / resnet_demo.pt (default export/demo/weights)")
    a = p.parse_args(argv)
    if a.n_images is not None and a.n_images < 1:
        p.error("--n-images must be >= 1")
    if a.steps is not None and a.steps < 1:
        p.error("--steps must be >= 1")
    if a.shap_samples is not None and a.shap_samples < 2:
        p.error("--shap-samples must be >= 2")
    return a


def main(argv=None):
    run(parse_args(argv))
    return 0


if __name__ == "__main__":
    sys.exit(main())
