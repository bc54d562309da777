"""``liftcam edge BUNDLE -o DIR [--int8] [--fp16] [--calibration IMAGES] [--web]``: the
explain graph for edge devices (ORT format, minimal-build operators config, INT8 and float16
variants, a web page), with its fidelity to float32 measured; thin over
:func:`liftcam.export.edge.build.build_edge`."""
from __future__ import annotations

import sys

from liftcam.cli.common import EXIT_OK, CliError, needs_extra, positive_arg, say


def _fraction(text: str) -> float:
    import argparse

    try:
        v = float(text)
    except ValueError:
        v = -1.0
    if not 0.0 <= v <= 1.0:
        raise argparse.ArgumentTypeError(f"expected a number in [0, 1], got {text!r}")
    return v


def add_parser(sub):
    e = sub.add_parser(
        "edge", help="ORT format, INT8/FP16 variants and a web page, with fidelity numbers",
        description="Convert the bundle's explain.onnx to ORT format (DIR/explain.ort) with "
                    "the required-operators config of an ONNX Runtime minimal build, "
                    "optionally quantise it (--int8) and convert it to float16 (--fp16), and "
                    "measure every variant against float32: size, latency, top-1 agreement, "
                    "per-image Pearson and top-20%% IoU of the maps (DIR/report.json and a "
                    "table). Without --calibration the INT8 variant is dynamic and fidelity is "
                    "measured on liftcam's demo images. Needs onnx.")
    e.add_argument("bundle", metavar="BUNDLE")
    e.add_argument("-o", "--out", required=True, metavar="DIR")
    e.add_argument("--int8", action="store_true",
                   help="INT8 variant: static QDQ calibrated on --calibration, else dynamic")
    e.add_argument("--fp16", action="store_true", help="float16 variant (float32 in and out)")
    e.add_argument("--calibration", nargs="+", metavar="IMAGES",
                   help="image files, folders or globs for calibration and fidelity")
    e.add_argument("--web", action="store_true",
                   help="DIR/web/: a static page explaining images with onnxruntime-web")
    e.add_argument("--threads", type=positive_arg, default=1,
                   help="ONNX Runtime threads when timing (default: %(default)s)")
    e.add_argument("--repeats", type=positive_arg, default=3,
                   help="timing passes over the images (default: %(default)s)")
    e.add_argument("--min-pearson", type=_fraction, help="warn below this mean Pearson (0.9)")
    e.add_argument("--min-worst-pearson", type=_fraction,
                   help="warn below this worst per-image Pearson (0.7)")
    e.add_argument("--min-iou", type=_fraction, help="warn below this mean top-20%% IoU (0.5)")
    e.add_argument("--min-top1", type=_fraction, help="warn below this top-1 agreement (0.9)")
    e.add_argument("--overwrite", action="store_true", help="replace an earlier run in DIR")
    e.set_defaults(func=run)


def run(args) -> int:
    try:
        from liftcam.export.edge.build import build_edge
        from liftcam.export.edge.report import table, thresholds
    except ImportError as exc:
        raise needs_extra("liftcam edge", exc, "export") from None
    from liftcam.engine.inputs import collect_inputs

    files = None
    if args.calibration:
        files, missing = collect_inputs(args.calibration)
        if missing:
            raise CliError(f"--calibration: no such file or no images matched: {missing[0]}")
        if not files:
            raise CliError("--calibration matched no image files")
    limits = thresholds(pearson_mean=args.min_pearson, pearson_worst=args.min_worst_pearson,
                        iou_mean=args.min_iou, top1=args.min_top1)
    rep = build_edge(args.bundle, args.out, int8=args.int8, fp16_variant=args.fp16,
                     calibration=files, web=args.web, limits=limits, threads=args.threads,
                     repeats=args.repeats, overwrite=args.overwrite, say=say)
    say(table(rep), sys.stdout)
    say(f"wrote {args.out}/report.json" + (f", {rep['web']['page']}" if rep["web"] else ""),
        sys.stdout)
    return EXIT_OK
