"""Edge deployment benchmark: ``liftcam edge`` on the two demo bundles and a torchvision model.

    python benchmarks/edge.py [--out benchmarks/results/edge] [--repeats 5] [--no-web]

For each bundle, ``liftcam edge BUNDLE -o DIR --int8 --fp16 --calibration IMAGES`` with the
eight demo images (``engine/demo/*.png``) as calibration and fidelity images, and keeps
``<out>/<bundle>/report.json``. The torchvision model is resnet18 with random weights (seed 0),
10 classes, exported at 3x224x224 with ``liftcam.export_model`` at ``layer4``: random weights
are fine here, the numbers measure the error that quantisation and float16 add to the same
network's maps, not how good the maps are. The demo images are upscaled by the bundle's
ImageNet preprocessing. With ``--web`` (default) the VGG demo's page is also built and run in
headless Chromium, and a screenshot kept as ``<out>/web_vgg_demo.png``. Writes ``<out>/README.md``
(the tables and the commands).
"""
from __future__ import annotations

import argparse
import contextlib
import io
import json
import shutil
import sys
import tempfile
from pathlib import Path

from liftcam.cli import main as cli
from liftcam.engine import DEMO_DIR

REPO = Path(__file__).resolve().parents[1]


def _resnet18(tmp: Path) -> Path:
    import torch
    import torchvision

    import liftcam

    torch.manual_seed(0)
    model = torchvision.models.resnet18(num_classes=10).eval()
    return Path(liftcam.export_model(model, target_layer="layer4", input_shape=(3, 224, 224),
                                     out_dir=tmp / "resnet18_random.liftcam", overwrite=True))


def _run(bundle: Path, out: Path, repeats: int, web: bool) -> dict:
    argv = ["edge", str(bundle), "-o", str(out), "--int8", "--fp16", "--overwrite",
            "--repeats", str(repeats), "--calibration", *map(str, sorted(DEMO_DIR.glob("*.png")))]
    if web:
        argv.append("--web")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        rc = cli(argv)
    print(buf.getvalue(), end="")
    if rc != 0:
        raise SystemExit(f"liftcam edge failed on {bundle.name} (exit {rc})")
    return json.loads((out / "report.json").read_text())


def _command(bundle_arg: str, repeats: int, web: bool) -> str:
    return (f"liftcam edge {bundle_arg} -o OUT --int8 --fp16 --calibration engine/demo/*.png "
            f"--repeats {repeats}" + (" --web" if web else ""))


def _md(reports: dict, repeats: int, web: bool) -> str:
    lines = ["# liftcam edge: ORT format, INT8 and FP16 variants against float32", "",
             "Made by `python benchmarks/edge.py` on the 2-core development machine (ONNX "
             "Runtime CPU, 1 thread, batch 1; latencies are medians and noisy on a shared "
             "machine). Fidelity is measured on the 8 demo images against the float32 "
             "`explain.onnx` maps. resnet18 has random weights (seed 0): the numbers measure "
             "the error quantisation adds, not the maps' quality.", ""]
    for name, (rep, arg) in reports.items():
        lines += [f"## {name}", "", "    " + _command(arg, repeats, web and "vgg" in name), "",
                  "| variant | file | size (MB) | size ×fp32 | latency (ms) | latency ×fp32 | "
                  "top-1 | Pearson mean / worst | IoU top-20% mean / worst |",
                  "| --- | --- | ---: | ---: | ---: | ---: | ---: | --- | --- |"]
        for v in rep["variants"]:
            lines.append(
                f"| {v['name']} | {v['file']} | {v['bytes'] / 1e6:.3f} | {v['size_ratio']:.2f} "
                f"| {v['latency_ms']:.2f} | {v['latency_ratio']:.2f} | "
                f"{v['top1_agreement']:.2f} | {v['pearson']['mean']:.4f} / "
                f"{v['pearson']['worst']:.4f} | {v['iou_top20']['mean']:.3f} / "
                f"{v['iou_top20']['worst']:.3f} |" + (" ⚠" if v["warnings"] else ""))
        d = rep["int8_decision"]
        lines += ["", f"INT8 ({d['mode']}) keep-float decision: **{d['chosen']}** — "
                  f"{d['reason']}.", "",
                  "| INT8 candidate | quantised ops | size (MB) | top-1 | Pearson mean / worst "
                  "| IoU mean / worst |", "| --- | --- | ---: | ---: | --- | --- |"]
        for c, n in d["candidates"].items():
            if "error" in n:
                lines.append(f"| {c} | failed: {n['error']} | | | | |")
                continue
            lines.append(f"| {c} | {n['quantized_ops']} | {n['bytes'] / 1e6:.3f} | "
                         f"{n['top1_agreement']:.2f} | {n['pearson']['mean']:.4f} / "
                         f"{n['pearson']['worst']:.4f} | {n['iou_top20']['mean']:.3f} / "
                         f"{n['iou_top20']['worst']:.3f} |")
        warns = [w for v in rep["variants"] for w in v["warnings"]]
        lines += [""] + [f"- warning: {w}" for w in warns] + ([""] if warns else [])
    if web:
        lines += ["## Web page", "", "The VGG demo's `--web` page in headless Chromium "
                  "(onnxruntime-web, WASM), star.png picked: `web_vgg_demo.png`.", ""]
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--out", default=str(REPO / "benchmarks" / "results" / "edge"))
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--no-web", action="store_true")
    args = p.parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    web = not args.no_web
    reports = {}
    with tempfile.TemporaryDirectory(prefix="liftcam-edge-bench-") as tmp:
        tmp = Path(tmp)
        bundles = [(DEMO_DIR / "vgg_demo.liftcam", "engine/demo/vgg_demo.liftcam"),
                   (DEMO_DIR / "resnet_demo.liftcam", "engine/demo/resnet_demo.liftcam"),
                   (_resnet18(tmp), "resnet18_random.liftcam")]
        for bundle, arg in bundles:
            name = bundle.name.replace(".liftcam", "")
            is_web = web and name == "vgg_demo"
            rep = _run(bundle, tmp / name, args.repeats, is_web)
            rep["bundle"] = arg                              # no temp paths in the results
            (out / name).mkdir(exist_ok=True)
            (out / name / "report.json").write_text(json.dumps(rep, indent=2) + "\n")
            reports[name] = (rep, arg)
            if is_web:
                from liftcam.export.edge.browser import run_page

                res = run_page(tmp / name / "web", DEMO_DIR / "star.png",
                               screenshot=out / "web_vgg_demo.png")
                print(f"web page: star.png -> class {res['top']} in {res['ms']:.0f} ms")
            shutil.rmtree(tmp / name)
    (out / "README.md").write_text(_md(reports, args.repeats, web))
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
