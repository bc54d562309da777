"""The model-zoo sweep: popular CNN architectures (timm, lukemelas' efficientnet_pytorch and
the transformers CNN classifiers, random weights, ``pretrained=False`` / from a config) exported,
checked and timed, one subprocess per model. The transformers models are exported as they are
(they return a ModelOutput and take ``pixel_values=``; benchmarks/hf_models.py builds them).

For each model: export at the default layer and at one inner block (the second-to-last stage
of timm's ``feature_info``); the bundle's logits against the model's; DeepLIFT completeness on
the head (sum((A - 0) * M) == y_t(A) - y_t(0)); Grad-CAM coefficients and maps against
pytorch-grad-cam's at the same layer; the export's wall time and the child's peak RSS.
A model that fails shows the one-line refusal a user sees; a traceback-type error (anything
but liftcam's ExportError/LayerError) or a timeout counts as an unclear failure.

    python benchmarks/zoo.py --size 128 --timeout 240 --out benchmarks/results
    python benchmarks/zoo.py --only resnet18,convnext_atto --out /tmp/zoo   # a subset

Writes ``zoo.json`` and ``zoo.md`` under ``--out``.
"""
from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import common  # noqa: E402
import hf_models  # noqa: E402

#: (model, family); "ep:" = efficientnet_pytorch, "hf:" = transformers, everything else timm
MODELS = [
    ("resnet18", "ResNet"), ("resnet26d", "ResNet-D"), ("resnext26ts", "ResNeXt"),
    ("seresnet18", "SE-ResNet"), ("res2net50_14w_8s", "Res2Net"), ("resnest14d", "ResNeSt"),
    ("skresnet18", "SK-ResNet"), ("ecaresnet26t", "ECA-ResNet"),
    ("efficientnet_b0", "EfficientNet"), ("tf_efficientnet_b0", "EfficientNet (TF same pad)"),
    ("ep:efficientnet-b0", "EfficientNet (efficientnet_pytorch)"),
    ("ep:efficientnet-b1", "EfficientNet (efficientnet_pytorch)"),
    ("efficientnetv2_rw_t", "EfficientNet-V2"), ("tf_efficientnetv2_b0", "EfficientNet-V2"),
    ("mobilenetv2_050", "MobileNet V2"), ("mobilenetv3_small_050", "MobileNet V3"),
    ("mobilenetv3_large_100", "MobileNet V3"), ("mobilenetv4_conv_small", "MobileNet V4"),
    ("mnasnet_100", "MnasNet"), ("fbnetc_100", "FBNet"), ("mixnet_s", "MixNet"),
    ("tinynet_e", "TinyNet"), ("regnetx_002", "RegNet X"), ("regnety_002", "RegNet Y"),
    ("regnetz_b16", "RegNet Z"), ("convnext_atto", "ConvNeXt"),
    ("convnextv2_atto", "ConvNeXt-V2"), ("densenet121", "DenseNet"),
    ("inception_v3", "Inception-V3"), ("xception41", "Xception"), ("dla34", "DLA"),
    ("ghostnet_050", "GhostNet"), ("rexnet_100", "RexNet"), ("repvgg_a0", "RepVGG"),
    ("mobileone_s0", "MobileOne"), ("cspresnet50", "CSP"), ("cs3darknet_s", "Darknet"),
    ("dpn48b", "DPN"), ("hrnet_w18_small", "HRNet"), ("nf_resnet26", "NFNet"),
    ("nf_regnet_b0", "NFNet"), ("ese_vovnet19b_dw", "VoVNet"), ("vgg11", "VGG"),
    ("lcnet_050", "LCNet"), ("selecsls42b", "SelecSLS"), ("resnetv2_50x1_bit", "BiT ResNet-V2"),
    ("hgnetv2_b0", "HGNet-V2"), ("hgnet_tiny", "HGNet"), ("gernet_s", "GENet"),
]
MODELS += [(name, fam) for name, (_, _, fam) in hf_models.FAMILIES.items()]


# ============================================================================ child
def build(name: str, size: int = 128):
    import torch

    torch.manual_seed(0)
    if name.startswith("hf:"):
        return hf_models.build(name, size)
    if name.startswith("ep:"):
        from efficientnet_pytorch import EfficientNet

        model = EfficientNet.from_name(name[3:])
        inner = f"_blocks.{len(model._blocks) - 4}"
        return model.eval(), inner
    import timm

    model = timm.create_model(name, pretrained=False)
    info = getattr(model, "feature_info", None)
    inner = None
    if info:
        mods = [f["module"] for f in info]
        inner = mods[-2] if len(mods) > 1 else mods[0]
        inner = inner.replace("_", ".") if inner not in dict(model.named_modules()) else inner
    return model.eval(), inner


def _refusal(exc) -> dict:
    from liftcam.engine.errors import ExportError, LayerError

    msg = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return {"ok": False, "clear": isinstance(exc, (ExportError, LayerError)),
            "error": f"{type(exc).__name__}: {msg}"}


def _export(model, layer, size, out):
    import liftcam

    t0 = time.perf_counter()
    rss0 = common.peak_rss_mb()
    bundle = liftcam.export_model(model, target_layer=layer, input_shape=(3, size, size),
                                  out_dir=out, overwrite=True)
    manifest = json.loads((Path(bundle) / "manifest.json").read_text())
    return bundle, {"ok": True, "export_s": round(time.perf_counter() - t0, 2),
                    "peak_rss_mb": round(common.peak_rss_mb(), 1),
                    "rss_before_mb": round(rss0, 1),
                    "layer": manifest["target_layer"]["name"],
                    "act_shape": manifest["activation"]["shape"][1:],
                    "verification": manifest["verification"]}


def _rel(a, b):
    import numpy as np

    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-12))


def _checks(model, bundle, size, layer_name) -> dict:
    import numpy as np
    import onnxruntime as ort
    import torch

    import liftcam
    from liftcam.export.outputs import ModelCall

    call = ModelCall(model)

    class Logits(torch.nn.Module):   # for pytorch-grad-cam: the same modules, logits out
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return call(x)

    x = torch.randn(2, 3, size, size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = call(x).numpy()
    ex = liftcam.Explainer(bundle, threads=1)
    e = ex.explain(x.numpy(), method="gradcam")
    res = {"logits_rel_err": _rel(e.logits, ref)}
    # DeepLIFT completeness on the head: sum((A - 0) * M) == y_t(A) - y_t(0)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.log_severity_level = 3
    sess = {k: ort.InferenceSession(str(Path(bundle) / f"{k}.onnx"), so,
                                    providers=["CPUExecutionProvider"])
            for k in ("features", "head", "multipliers_deeplift")}
    (A,) = sess["features"].run(None, {"image": x.numpy()})
    t = e.targets.astype(np.int64)
    yA, M = sess["multipliers_deeplift"].run(None, {"activation": A, "target": t})
    (y0,) = sess["head"].run(None, {"activation": np.zeros_like(A)})
    lhs = (A.astype(np.float64) * M).reshape(len(A), -1).sum(1)
    rhs = yA[np.arange(len(t)), t].astype(np.float64) - y0[np.arange(len(t)), t]
    # scaled like tests/test_lift_properties.py, by sum|A*M| + |delta|, plus the float32 floor
    # (efficientnet_pytorch's random classifier gives every class nearly the same logit)
    scale = (np.abs(A.astype(np.float64) * M).reshape(len(A), -1).sum(1) + np.abs(rhs)
             + 1e-6 * np.abs(yA).max() + 1e-12)      # float32 noise floor of the logits
    res["completeness_rel_err"] = float((np.abs(lhs - rhs) / scale).max())
    # Grad-CAM against pytorch-grad-cam at the same layer
    from pytorch_grad_cam import GradCAM
    from pytorch_grad_cam.utils.model_targets import ClassifierOutputTarget

    module = dict(model.named_modules())[layer_name]
    with GradCAM(model=Logits(), target_layers=[module]) as cam:
        maps = cam(input_tensor=x, targets=[ClassifierOutputTarget(int(c)) for c in t])
        # gradients are prepended as they arrive: the last entry is the last forward call (a
        # module called several times, efficientnet_pytorch's shared _swish, has several)
        all_grads = cam.activations_and_grads.gradients
        grads = all_grads[-1].numpy()
    res["gradcam_weights_rel_err"] = _rel(e.weights, grads.mean(axis=(2, 3)))
    res["gradcam_map_max_abs"] = (float(np.abs(e.maps - maps).max()) if len(all_grads) == 1
                                  else None)   # pytorch-grad-cam's map mixes every call
    res["checks_ok"] = bool(res["logits_rel_err"] < 1e-2 and res["completeness_rel_err"] < 1e-3
                            and res["gradcam_weights_rel_err"] < 1e-2)
    return res


def child(name: str, size: int) -> dict:
    import torch

    torch.set_num_threads(1)
    row = {"model": name}
    t0 = time.perf_counter()
    model, inner = build(name, size)
    row["build_s"] = round(time.perf_counter() - t0, 2)
    row["params_m"] = round(sum(p.numel() for p in model.parameters()) / 1e6, 2)
    with tempfile.TemporaryDirectory() as tmp:
        try:
            bundle, row["default"] = _export(model, None, size, f"{tmp}/default")
        except Exception as exc:
            row["default"] = _refusal(exc)
        else:
            try:
                row["default"].update(_checks(model, bundle, size, row["default"]["layer"]))
            except Exception as exc:
                row["default"]["checks_ok"] = False
                row["default"]["checks_error"] = f"{type(exc).__name__}: {exc}"[:300]
        row["inner_layer"] = inner
        if inner is not None:
            try:
                _, row["inner"] = _export(model, inner, size, f"{tmp}/inner")
            except Exception as exc:
                row["inner"] = _refusal(exc)
    return row


# ============================================================================ parent
def run_one(name, family, size, timeout, log):
    t0 = time.perf_counter()
    cmd = [sys.executable, os.path.abspath(__file__), "--child", name, "--size", str(size)]
    try:
        p = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        row = {"model": name, "default": {"ok": False, "clear": False,
                                          "error": f"timeout after {timeout} s"}}
    else:
        lines = [ln for ln in p.stdout.splitlines() if ln.startswith("ZOO_ROW ")]
        if lines:
            row = json.loads(lines[-1][len("ZOO_ROW "):])
        else:
            tail = (p.stderr.strip().splitlines() or ["(no output)"])[-1]
            row = {"model": name, "default": {"ok": False, "clear": False,
                                              "error": f"child died (rc {p.returncode}): {tail}"}}
    row["family"] = family
    row["wall_s"] = round(time.perf_counter() - t0, 1)
    d = row["default"]
    log(f"{name:28s} {'PASS' if d.get('ok') and d.get('checks_ok') else 'FAIL':4s} "
        f"{row['wall_s']:6.1f}s {d.get('layer') or d.get('error', '')[:110]}")
    return row


def markdown(rows, args, machine, before=None) -> str:
    n = len(rows)
    ok = [r for r in rows if r["default"].get("ok")]
    checked = [r for r in ok if r["default"].get("checks_ok")]
    inner = [r for r in rows if r.get("inner", {}).get("ok")]
    clear = [r for r in rows if not r["default"].get("ok") and r["default"].get("clear")]
    out = ["# Model-zoo sweep", "",
           f"`python benchmarks/zoo.py --size {args.size} --timeout {args.timeout}"
           f"{' --only ' + args.only if args.only else ''}` — random weights, input "
           f"{args.size} px, one subprocess per model. Machine: {machine.get('cpu', '?')}.", "",
           f"- default layer exported: **{len(ok)}/{n}** ({100 * len(ok) / max(n, 1):.0f} %), "
           f"all checks passed: {len(checked)}/{n}",
           f"- inner block exported: {len(inner)}/{sum('inner' in r for r in rows)}",
           f"- failures that are a clear one-line refusal: {len(clear)}/{n - len(ok)}", "",
           "| model | family | default layer (K,h,w) | export s | peak RSS MB | split err "
           "(ORT/torch) | logits err | DeepLIFT compl. | Grad-CAM w / map | inner block |",
           "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        d = r["default"]
        inn = r.get("inner")
        inner_s = "—" if inn is None else (f"{r['inner_layer']} ✓" if inn.get("ok") else
                                           f"{r['inner_layer']} ✗")
        if d.get("ok"):
            v = d["verification"]
            split = f"{v.get('max_relative_error', 0):.1e}"
            if "reference_relative_error" in v:
                split += f" / {v['reference_relative_error']:.1e}"
            cells = [f"{d['layer']} {tuple(d['act_shape'])}", f"{d['export_s']}",
                     f"{d['peak_rss_mb']:.0f}", split,
                     f"{d.get('logits_rel_err', float('nan')):.1e}",
                     f"{d.get('completeness_rel_err', float('nan')):.1e}",
                     f"{d.get('gradcam_weights_rel_err', float('nan')):.1e} / "
                     + (f"{d['gradcam_map_max_abs']:.1e}" if d.get("gradcam_map_max_abs")
                        is not None else "n/a (module called repeatedly)")]
            if d.get("checks_error"):
                cells[-1] += f" ({d['checks_error'][:80]})"
        else:
            cells = [f"✗ {d['error'][:160]}".replace("|", "\\|"), "", "", "", "", "", ""]
        out.append(f"| {r['model']} | {r['family']} | " + " | ".join(cells) + f" | {inner_s} |")
    if before:
        old = {r["model"]: r for r in before}
        out += ["", "## Before and after the zoo fixes (default layer exported and checked)", "",
                "| model | before | after |", "|---|---|---|"]

        def cell(r):
            if r is None:
                return "—"
            d = r["default"]
            if d.get("ok") and d.get("checks_ok"):
                return f"✓ {d['layer']}"
            return "✗ " + d.get("error", "checks")[:70].replace("|", "\\|")
        for r in rows:
            out.append(f"| {r['model']} | {cell(old.get(r['model']))} | {cell(r)} |")
        good = sum(1 for r in before if r["default"].get("ok") and r["default"].get("checks_ok"))
        now = sum(1 for r in rows if r["default"].get("ok") and r["default"].get("checks_ok"))
        out += ["", f"Passing: **{good}/{len(before)} before**, **{now}/{len(rows)} after**."]
    fails = [r for r in rows if not r["default"].get("ok") or not r["default"].get("checks_ok")
             or (r.get("inner") and not r["inner"].get("ok"))]
    if fails:
        out += ["", "## What still fails (the message a user sees)", ""]
        for r in fails:
            d, inn = r["default"], r.get("inner") or {}
            if not d.get("ok"):
                out.append(f"- **{r['model']}** (default): {d['error']}")
            elif not d.get("checks_ok"):
                out.append(f"- **{r['model']}** (checks): {d.get('checks_error') or 'tolerance'}")
            if inn and not inn.get("ok"):
                out.append(f"- **{r['model']}** (inner `{r['inner_layer']}`): {inn['error']}")
    return "\n".join(out) + "\n"


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--size", type=int, default=128)
    ap.add_argument("--timeout", type=int, default=240)
    ap.add_argument("--only", default="", help="comma-separated model names (a subset)")
    ap.add_argument("--out", default=str(HERE / "results"))
    ap.add_argument("--before", default=None, help="zoo.json of an earlier run to compare")
    ap.add_argument("--render", nargs="*", default=None, metavar="ZOO_JSON",
                    help="no sweep: re-render --out/zoo.json, rows of these files replacing "
                         "the same models' rows (a rerun of some models)")
    ap.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    before = json.loads(Path(args.before).read_text())["rows"] if args.before else None
    if args.render is not None:
        out = Path(args.out)
        data = json.loads((out / "zoo.json").read_text())
        for extra in args.render:
            new = {r["model"]: r for r in json.loads(Path(extra).read_text())["rows"]}
            data["rows"] = [new.get(r["model"], r) for r in data["rows"]]
        (out / "zoo.json").write_text(json.dumps(data, indent=1))
        (out / "zoo.md").write_text(markdown(data["rows"], args, data["machine"], before))
        return 0
    if args.child:
        row = child(args.child, args.size)
        print("ZOO_ROW " + json.dumps(row), flush=True)
        return 0
    only = [s for s in args.only.split(",") if s]
    models = [(m, f) for m, f in MODELS if not only or m in only]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for name, family in models:
        rows.append(run_one(name, family, args.size, args.timeout,
                            lambda s: print(s, flush=True)))
        (out / "zoo.json").write_text(json.dumps({"rows": rows, "size": args.size}, indent=1))
    machine = common.machine_description(1)
    (out / "zoo.json").write_text(json.dumps({"machine": machine, "size": args.size,
                                              "rows": rows}, indent=1))
    (out / "zoo.md").write_text(markdown(rows, args, machine, before))
    return 0


if __name__ == "__main__":
    sys.exit(main())
