"""``report.json``, the table on stdout and the fidelity warnings of ``liftcam edge``.

Thresholds (defaults; ``liftcam edge --min-pearson`` etc. change them). A variant whose maps,
against float32's on the measured images, fall below any of them gets a
``liftcam: warning: ...`` line on stderr and the same text in its ``warnings``:

    pearson_mean   0.9   mean per-image Pearson correlation of the maps
    pearson_worst  0.7   the lowest per-image Pearson correlation
    iou_mean       0.5   mean IoU of the top-20% regions
    top1           0.9   fraction of images whose predicted class is float32's
"""
from __future__ import annotations

import json
from pathlib import Path

THRESHOLDS = {"pearson_mean": 0.9, "pearson_worst": 0.7, "iou_mean": 0.5, "top1": 0.9}
_WHAT = {"pearson_mean": "mean map Pearson", "pearson_worst": "worst map Pearson",
         "iou_mean": "mean top-20% IoU", "top1": "top-1 agreement"}


def thresholds(**overrides) -> dict:
    """The defaults with ``overrides`` (None values ignored); each must be in [0, 1]."""
    out = dict(THRESHOLDS)
    for k, v in overrides.items():
        if k not in out:
            raise ValueError(f"unknown threshold {k!r}; known: {', '.join(out)}")
        if v is not None:
            if not 0.0 <= float(v) <= 1.0:
                raise ValueError(f"threshold {k} must be in [0, 1], got {v}")
            out[k] = float(v)
    return out


def _values(fid: dict) -> dict:
    return {"pearson_mean": fid["pearson"]["mean"], "pearson_worst": fid["pearson"]["worst"],
            "iou_mean": fid["iou_top20"]["mean"], "top1": fid["top1_agreement"]}


def warnings_for(name: str, fid: dict, limits: dict) -> list:
    """One message per threshold the variant ``name`` falls below."""
    return [f"{name}: {_WHAT[k]} {v:.3f} is below the threshold {limits[k]:g}; its maps are "
            "not faithful to float32's on these images"
            for k, v in _values(fid).items() if v < limits[k]]


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def table(report: dict) -> str:
    """The variants as a fixed-width text table."""
    head = (f"{'variant':<8} {'file':<22} {'size':>9} {'x fp32':>7} {'latency':>9} "
            f"{'x fp32':>7} {'top-1':>6} {'pearson':>15} {'iou top-20%':>15}")
    lines = [f"{report['bundle_name']}: {report['images']['count']} images "
             f"({report['images']['source']}), ONNX Runtime {report['onnxruntime']} CPU, "
             f"{report['latency']['threads']} thread(s), batch 1",
             head, " " * 75 + "mean / worst" + " " * 5 + "mean / worst"]
    for v in report["variants"]:
        lines.append(
            f"{v['name']:<8} {v['file']:<22} {_mb(v['bytes']):>9} {v['size_ratio']:>7.2f} "
            f"{v['latency_ms']:>7.2f}ms {v['latency_ratio']:>7.2f} {v['top1_agreement']:>6.2f} "
            f"{v['pearson']['mean']:>7.4f} / {v['pearson']['worst']:<6.4f}"
            f"{v['iou_top20']['mean']:>6.3f} / {v['iou_top20']['worst']:.3f}"
            + ("  WARNING" if v["warnings"] else ""))
    d = report.get("int8_decision")
    if d:
        lines.append(f"int8 ({d['mode']}): quantised {d['chosen']!r} — {d['reason']}")
    return "\n".join(lines)


def write(report: dict, path: Path) -> None:
    Path(path).write_text(json.dumps(report, indent=2) + "\n")
