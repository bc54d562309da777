"""``liftcam edge``: a bundle's ``explain.onnx`` made ready for edge devices, and measured.

Writes into the output folder:

- ``explain.ort`` (+ ``explain_int8.ort``) in ONNX Runtime's ORT format and
  ``required_operators.config`` for a minimal build that runs both (:mod:`.convert`);
- ``explain_int8.onnx`` (``int8=True``, :mod:`.quantize`) for other execution providers, and
  ``explain_fp16.onnx`` (``fp16=True``, :mod:`.fp16`) for GPU/NPU providers (no .ort: the ORT
  format conversion optimises for the CPU provider, which folds float16 weights back to
  float32; measured: the resnet18 .ort came out at float32's size);
- ``report.json``: per variant its size, latency ratio to float32 and its fidelity to the
  float32 maps on the measured images (:mod:`.fidelity`), warnings below the thresholds
  (:mod:`.report`), and the INT8 keep-float decision with both candidates' numbers;
- ``fidelity_maps.npz``: the maps and logits the numbers were computed from;
- ``web/`` (``web=True``): a static page running ``explain_raw.onnx`` in the browser
  (:mod:`.web`).

The images: the calibration images when given (static INT8 calibration and fidelity); else
liftcam's eight demo images (:data:`liftcam.engine.DEMO_DIR`), INT8 is dynamic and the
report says the fidelity was measured on stand-in images.

INT8 keep-float decision, per bundle, by measurement: ``all`` (every Conv/MatMul/Gemm
quantised, the head's DeepLIFT/gradient sub-graph too) is kept when its maps are about as
faithful as ``features`` (only the features part quantised): mean Pearson no more than
``KEEP_FLOAT_MARGIN["pearson_mean"]`` lower, mean IoU no more than ``["iou_mean"]`` lower, and
top-1 agreement not lower; otherwise the sub-graph stays in float.
"""
from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

from liftcam import __version__
from liftcam.contract import EXPLAIN
from liftcam.engine.bundle import load_bundle
from liftcam.engine.errors import InputError
from liftcam.engine.images import load_image, preprocess
from liftcam.export.edge import convert, fidelity, fp16, quantize, report

KEEP_FLOAT_MARGIN = {"pearson_mean": 0.01, "iou_mean": 0.05}
#: the variants converted to ORT format (a float16 .ort optimised for the CPU provider gets
#: its weights folded back to float32: the float16 variant ships as .onnx for GPU/NPU providers)
ORT_VARIANTS = ("fp32", "int8")
OUTPUTS = ("explain.ort", "explain_int8.ort", "explain_int8.onnx", "explain_fp16.onnx",
           convert.CONFIG, "report.json", "fidelity_maps.npz", "web")


def demo_images() -> list:
    from liftcam.engine import DEMO_DIR

    samples = json.loads((DEMO_DIR / "samples.json").read_text())
    return [DEMO_DIR / s["file"] for s in samples["images"]]


def _images(files, pre, layout):
    if not files:
        raise InputError("no calibration images")
    return preprocess([load_image(f) for f in files], pre, layout)


def _measure(path, x, targets, ref_logits, ref_maps, threads=1):
    s = fidelity.session(path, threads)
    logits, maps = fidelity.run_explain(s, x, targets)
    return fidelity.compare(ref_logits, ref_maps, logits, maps), logits, maps, s


def _decide(cands: dict):
    """The keep-float rule on the measured candidates (name -> numbers or an error)."""
    a, f = cands.get("all"), cands.get("features")
    if "error" in a:
        return "features", f"quantising the head's sub-graph failed ({a['error']})"
    if "error" in f:
        return "all", f"keeping the head's sub-graph in float failed ({f['error']})"
    dp = f["pearson"]["mean"] - a["pearson"]["mean"]
    di = f["iou_top20"]["mean"] - a["iou_top20"]["mean"]
    worse = dp > KEEP_FLOAT_MARGIN["pearson_mean"] or di > KEEP_FLOAT_MARGIN["iou_mean"] \
        or a["top1_agreement"] < f["top1_agreement"]
    nums = (f"quantising the head's DeepLIFT/gradient sub-graph changes mean Pearson by "
            f"{-dp:+.4f} and mean IoU by {-di:+.4f}, size {a['bytes'] / f['bytes']:.2f}x")
    if worse:
        return "features", nums + f"; beyond the margins {KEEP_FLOAT_MARGIN}: kept in float"
    return "all", nums + f"; within the margins {KEEP_FLOAT_MARGIN}: quantised"


def _int8(src, work, x, targets, ref_logits, ref_maps, static: bool):
    cands = {}
    for name in quantize.CANDIDATES:
        dst = work / f"explain_int8_{name}.onnx"
        try:
            info = quantize.quantize(src, dst, name, x if static else None, targets)
            fid, *_ = _measure(dst, x, targets, ref_logits, ref_maps)
        except Exception as exc:                     # measured, reported, the other is used
            cands[name] = {"error": " ".join(str(exc).split())[:300]}
            continue
        fid.pop("per_image")
        cands[name] = {"bytes": dst.stat().st_size, **info, **fid}
    chosen, reason = _decide(cands)
    if "error" in cands[chosen]:
        raise InputError(f"int8 quantisation failed: {cands[chosen]['error']}")
    mode = "static QDQ" if static else "dynamic"
    return work / f"explain_int8_{chosen}.onnx", {"mode": mode, "chosen": chosen,
                                                   "reason": reason, "candidates": cands}


def _check_out(out: Path, overwrite: bool):
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if out.is_dir() and any(out.iterdir()):
        if not overwrite:
            raise InputError(f"{out} is not empty; use --overwrite to replace an earlier run")
        for name in OUTPUTS:
            p = out / name
            if p.is_dir():
                shutil.rmtree(p)
            elif p.exists():
                p.unlink()
    out.mkdir(parents=True, exist_ok=True)


def build_edge(bundle, out_dir, int8=False, fp16_variant=False, calibration=None, web=False,
               limits=None, threads=1, repeats=3, overwrite=False, say=None) -> dict:
    """Build and measure; returns the report (also written to ``out_dir/report.json``).
    ``calibration``: image files (None: the demo images, dynamic INT8). ``say``: called with
    each warning line."""
    b = load_bundle(bundle)
    limits = limits or report.thresholds()
    pre = b.manifest["preprocessing"]
    files = list(calibration) if calibration else demo_images()
    x = _images(files, pre, b.layout)
    out = Path(out_dir)
    _check_out(out, overwrite)
    with tempfile.TemporaryDirectory(prefix="liftcam-edge-") as tmp:
        work = Path(tmp)
        src = work / "explain.onnx"
        onnx.save(onnx.load(str(b.graph(EXPLAIN))), str(src))       # weights inlined
        ref_s = fidelity.session(src, threads)
        ref_logits, ref_maps = fidelity.run_explain(ref_s, x)
        targets = np.argmax(ref_logits, 1)
        variants, decision, fp16_info = {"fp32": src}, None, None
        if int8:
            variants["int8"], decision = _int8(src, work, x, targets, ref_logits, ref_maps,
                                               static=bool(calibration))
        if fp16_variant:
            variants["fp16"] = work / "explain_fp16.onnx"
            fp16_info = fp16.to_fp16(src, variants["fp16"])
        named, shipped = [], {}
        for name, p in variants.items():
            stem = "explain" if name == "fp32" else f"explain_{name}"
            if name != "fp32":
                shipped[name] = out / f"{stem}.onnx"
                shutil.copy(p, shipped[name])
            if name in ORT_VARIANTS:
                named.append(work / "convert" / f"{stem}.onnx")
                named[-1].parent.mkdir(exist_ok=True)
                shutil.copy(p, named[-1])
        ort_files = convert.to_ort(named, out)
    rows, saved = [], {"targets": targets, "ref_logits": ref_logits, "ref_maps": ref_maps}
    base_ms = base_bytes = None
    for name in variants:
        path = ort_files["explain" if name == "fp32" else f"explain_{name}"] \
            if name in ORT_VARIANTS else shipped[name]
        fid, logits, maps, s = _measure(path, x, targets, ref_logits, ref_maps, threads)
        ms = fidelity.latency_ms(s, x, targets, repeats)
        base_ms = base_ms or ms
        base_bytes = base_bytes or path.stat().st_size
        warn = report.warnings_for(name, fid, limits)
        rows.append({"name": name, "file": path.name, "bytes": path.stat().st_size,
                     "size_ratio": path.stat().st_size / base_bytes, "latency_ms": ms,
                     "latency_ratio": ms / base_ms, **fid, "warnings": warn})
        saved[f"{name}_logits"], saved[f"{name}_maps"] = logits, maps
    np.savez_compressed(out / "fidelity_maps.npz", **saved)
    demo = not calibration
    rep = {
        "liftcam": __version__, "onnxruntime": ort.__version__,
        "bundle": str(b.path), "bundle_name": b.path.name,
        "input_shape": list(b.input_shape),
        "images": {"source": "demo samples (no --calibration)" if demo else "calibration",
                   "count": len(files), "files": [Path(f).name for f in files]},
        "thresholds": limits,
        "latency": {"threads": threads, "repeats": repeats, "batch": 1,
                    "provider": "CPUExecutionProvider", "baseline": "fp32 explain.ort"},
        "variants": rows, "int8_decision": decision, "fp16": fp16_info,
        "minimal_build": {"config": convert.CONFIG,
                          "build": "./build.sh --minimal_build --include_ops_by_config "
                                   + convert.CONFIG},
        "web": None,
    }
    if demo and not b.path.name.endswith("_demo.liftcam"):
        rep["images"]["note"] = ("fidelity measured on liftcam's demo images, not images of "
                                 "this model's domain; pass --calibration")
    if web:
        from liftcam.export.edge.web import build_page

        rep["web"] = build_page(b, out / "web")
    report.write(rep, out / "report.json")
    if say:
        for row in rows:
            for w in row["warnings"]:
                say(f"liftcam: warning: {w}")
        if "note" in rep["images"]:
            say(f"liftcam: warning: {rep['images']['note']}")
    return rep
