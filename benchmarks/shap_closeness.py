"""Closeness of every CAM method's channel coefficients to exact channel SHAP, K <= 16.

    python benchmarks/shap_closeness.py [--quick] [--n-images N] [--out DIR]

The game: v(S) = y_c(A with only the channels in S kept, the others zeroed), c the predicted
class. The reference is liftcam's exact SHAP (2^K head evaluations per image). Models, each
exported with ``liftcam.export_model`` and run on ONNX Runtime CPU (1 thread):

- ``rand8-s{0..3}``, ``rand12-s0``, ``rand16-s0``: random CNNs (conv-ReLU-maxpool-conv-ReLU to
  K channels at 8x8; head max-pool 2 -> flatten -> dense 64 -> ReLU -> dense 8), weights from
  torch's default init with seed s, times 2 (as tests/test_engine.py) so that ReLUs switch;
- ``mlp16`` (K = 16, max-pool + ReLU-MLP head) and ``gap12`` (K = 12, linear head): the trained
  small models of ``benchmarks/faith_models.py``.

Images: the procedural shapes at 64x64 (``liftcam.export.demo.shapes``, seed 7100).

Per image: Pearson r(c, φ); relative L1 ‖c − φ‖₁ / ‖φ‖₁ for coefficients in logit units
(pairshap, liftcam, Ablation-CAM's numerator y_c·w = v(all) − v(all∖k), hirescam, layercam);
and for every method the relative L1 after the best scale s* = ⟨c, φ⟩/⟨c, c⟩ (generous to
methods whose coefficients have no unit). Reported: the mean over images and the worst image,
per model and over all models. Cost: head (or, for scorecam, model) evaluations per image from
the registry record and wall milliseconds per image.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
if str(HERE) not in sys.path:
    sys.path.insert(0, str(HERE))

METHODS = ("pairshap", "liftcam", "ablationcam", "gradcam", "gradcam++", "xgradcam",
           "layercam", "hirescam", "scorecam")
LOGIT_UNITS = ("pairshap", "liftcam", "ablationcam", "layercam", "hirescam")
RANDOM = {"rand8-s0": (8, 0), "rand8-s1": (8, 1), "rand8-s2": (8, 2), "rand8-s3": (8, 3),
          "rand12-s0": (12, 0), "rand16-s0": (16, 0)}
TRAINED = ("mlp16", "gap12")
DATA_SEED = 7100


def random_cnn(K: int, seed: int):
    import torch
    from torch import nn

    torch.manual_seed(seed)
    net = nn.Sequential()
    net.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(4),
                                 nn.Conv2d(16, K, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2))
    net.head = nn.Sequential(nn.MaxPool2d(2), nn.Flatten(), nn.Linear(K * 16, 64), nn.ReLU(),
                             nn.Linear(64, 8))
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
    return net.eval()


def load(name):
    if name in RANDOM:
        return random_cnn(*RANDOM[name]), "features"
    import faith_models

    model, _ = faith_models.load_or_train(name, cache_dir=REPO / "out" / "faith_weights")
    return model, faith_models.TARGET_LAYER


def closeness(c, phi):
    """Per-image Pearson, relative L1 and relative L1 at the best scale (arrays of (N,))."""
    c, phi = c.astype(np.float64), phi.astype(np.float64)
    cc, pc = c - c.mean(1, keepdims=True), phi - phi.mean(1, keepdims=True)
    den = np.sqrt((cc ** 2).sum(1) * (pc ** 2).sum(1))
    r = np.divide((cc * pc).sum(1), den, out=np.zeros(len(c)), where=den > 0)
    l1 = np.abs(phi).sum(1)
    rel = np.abs(c - phi).sum(1) / l1
    s = np.divide((c * phi).sum(1), (c * c).sum(1), out=np.zeros(len(c)),
                  where=(c * c).sum(1) > 0)
    rel_s = np.abs(s[:, None] * c - phi).sum(1) / l1
    return r, rel, rel_s


def evaluate(name, n_images, tmp, log):
    import liftcam
    from liftcam.engine.methods import METHODS as REGISTRY
    from liftcam.export.demo import shapes
    from liftcam.export.demo.models import PREPROCESSING, to_input

    model, layer = load(name)
    bundle = liftcam.export_model(model, layer, input_shape=(3, 64, 64),
                                  out_dir=Path(tmp) / f"{name}.liftcam",
                                  preprocessing=PREPROCESSING)
    ex = liftcam.Explainer(bundle, threads=1, eval_batch=4096)
    images, _, _ = shapes.make_dataset(n_images, seed=DATA_SEED, size=64)
    x = to_input(images).numpy()
    K = ex.bundle.activation_shape[0]
    t0 = time.perf_counter()
    ref = ex.explain(x, method="shap", progress=False)
    ms = {"shap": 1e3 * (time.perf_counter() - t0) / len(x)}
    phi, targets = ref.weights.astype(np.float64), ref.targets
    out = {"K": int(K), "n_images": len(x), "methods": {}}
    for m in METHODS:
        ex.explain(x[:1], targets[:1], method=m, progress=False)        # warm the sessions
        t0 = time.perf_counter()
        e = ex.explain(x, targets, method=m, progress=False)
        ms[m] = 1e3 * (time.perf_counter() - t0) / len(x)
        c = e.weights.astype(np.float64)
        if m == "ablationcam":     # Ablation-CAM's numerator: w_k · y_c = v(all) − v(all ∖ k)
            c = c * e.logits[np.arange(len(x)), targets][:, None]
        r, rel, rel_s = closeness(c, phi)
        out["methods"][m] = {
            "pearson_mean": float(r.mean()), "pearson_worst": float(r.min()),
            "rel_l1_mean": float(rel.mean()) if m in LOGIT_UNITS else None,
            "rel_l1_worst": float(rel.max()) if m in LOGIT_UNITS else None,
            "rel_l1_scaled_mean": float(rel_s.mean()), "rel_l1_scaled_worst": float(rel_s.max()),
            "evals_per_image": REGISTRY[m].count(1, K), "ms_per_image": ms[m],
            "per_image": {"pearson": r.tolist(), "rel_l1": rel.tolist(),
                          "rel_l1_scaled": rel_s.tolist()}}
    out["shap"] = {"evals_per_image": REGISTRY["shap"].count(1, K), "ms_per_image": ms["shap"]}
    log(f"[{name}] K={K}: " + ", ".join(
        f"{m} r={out['methods'][m]['pearson_mean']:.3f}" for m in METHODS[:3]))
    return out


def pooled(models):
    """Every method's mean and worst over all images of all models."""
    res = {}
    for m in METHODS:
        per = {k: np.concatenate([v["methods"][m]["per_image"][k] for v in models.values()])
               for k in ("pearson", "rel_l1", "rel_l1_scaled")}
        res[m] = {"pearson_mean": float(per["pearson"].mean()),
                  "pearson_worst": float(per["pearson"].min()),
                  "rel_l1_mean": float(per["rel_l1"].mean()) if m in LOGIT_UNITS else None,
                  "rel_l1_worst": float(per["rel_l1"].max()) if m in LOGIT_UNITS else None,
                  "rel_l1_scaled_mean": float(per["rel_l1_scaled"].mean()),
                  "rel_l1_scaled_worst": float(per["rel_l1_scaled"].max())}
    return res


def _f(v):
    return "–" if v is None else f"{v:.3f}"


def markdown(report):
    cfg = report["config"]
    lines = ["# Closeness to exact channel SHAP (K ≤ 16)", "",
             f"Command: `{cfg['command']}`. {cfg['n_images']} shape images (seed {DATA_SEED}) "
             "per model, target = predicted class, reference = exact SHAP (2^K head "
             "evaluations). r: Pearson; rL1 = ‖c − φ‖₁/‖φ‖₁ (logit-unit methods; Ablation-CAM "
             "as its numerator y_c·w); rL1* at the best scale ⟨c,φ⟩/⟨c,c⟩ (every method). "
             "worst = the worst image. ONNX Runtime CPU, 1 thread.", "",
             "## All models pooled", "",
             "| method | r mean | r worst | rL1 mean | rL1 worst | rL1* mean | rL1* worst |",
             "|---|---:|---:|---:|---:|---:|---:|"]
    keys = ("pearson_mean", "pearson_worst", "rel_l1_mean", "rel_l1_worst",
            "rel_l1_scaled_mean", "rel_l1_scaled_worst")
    for m, v in report["pooled"].items():
        lines.append(f"| {m} | " + " | ".join(_f(v[k]) for k in keys) + " |")
    lines += ["", "## Per model (r mean / worst, rL1 mean / worst, rL1* mean)", "",
              "| model | K | " + " | ".join(METHODS) + " |",
              "|---|---:|" + "---|" * len(METHODS)]
    for name, mod in report["models"].items():
        cells = []
        for m in METHODS:
            v = mod["methods"][m]
            rl = (f"{_f(v['rel_l1_mean'])}/{_f(v['rel_l1_worst'])}" if v["rel_l1_mean"]
                  is not None else "–")
            cells.append(f"{v['pearson_mean']:.3f}/{v['pearson_worst']:.3f}, {rl}, "
                         f"{v['rel_l1_scaled_mean']:.3f}")
        lines.append(f"| {name} | {mod['K']} | " + " | ".join(cells) + " |")
    lines += ["", "## Cost per image (head evaluations; ms, mean over models of each K)", "",
              "| K | " + " | ".join(f"{m} evals | {m} ms" for m in
                                    ("pairshap", "liftcam", "ablationcam", "shap")) + " |",
              "|---:|" + "---:|" * 8]
    for K in sorted({mod["K"] for mod in report["models"].values()}):
        mods = [mod for mod in report["models"].values() if mod["K"] == K]
        cells = []
        for m in ("pairshap", "liftcam", "ablationcam", "shap"):
            src = [mod["shap"] if m == "shap" else mod["methods"][m] for mod in mods]
            cells += [str(src[0]["evals_per_image"]),
                      f"{np.mean([s['ms_per_image'] for s in src]):.2f}"]
        lines.append(f"| {K} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 images, rand8-s0 and gap12 only")
    p.add_argument("--n-images", type=int, default=None, help="images per model (default 48)")
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    n = a.n_images or (4 if a.quick else 48)
    names = ["rand8-s0", "gap12"] if a.quick else list(RANDOM) + list(TRAINED)
    out = Path(a.out) if a.out else REPO / "out" / "shap_closeness"
    out.mkdir(parents=True, exist_ok=True)
    cmd = "python benchmarks/shap_closeness.py" + (" --quick" if a.quick else "") + \
        (f" --n-images {a.n_images}" if a.n_images else "")
    report = {"config": {"n_images": n, "models": names, "command": cmd}, "models": {}}

    def log(s):
        print(s, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="closeness_") as tmp:
        for name in names:
            report["models"][name] = evaluate(name, n, tmp, log)
    report["pooled"] = pooled(report["models"])
    md = markdown(report)
    (out / "closeness.md").write_text(md, encoding="utf-8")
    (out / "closeness.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
