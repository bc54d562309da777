"""``liftcam bench BUNDLE``: latency of explaining against predicting, thin over
:mod:`liftcam.engine.bench` (in the spirit of ``onnxruntime_perf_test`` and ``trtexec``)."""
from __future__ import annotations

import json
import sys

from liftcam.cli.common import (
    EXIT_OK,
    CliError,
    count_arg,
    ints_arg,
    methods_arg,
    positive_arg,
    say,
)


def add_parser(sub):
    b = sub.add_parser("bench", help="measure explaining against predicting",
                       description="Measure each method's latency against plain prediction "
                                   "(features then head) of the same bundle, interleaved in one "
                                   "process: p50/p90/p99 ms, images/s, the ratio to predict's "
                                   "p50 and peak RSS, per batch size. A table on stdout, "
                                   "progress on stderr, records with --json.")
    b.add_argument("bundle", metavar="BUNDLE")
    b.add_argument("--methods", type=methods_arg, default=["liftcam"], metavar="M[,M...]",
                   help="methods to time, or 'all' (default: liftcam)")
    b.add_argument("--batch", type=ints_arg, default=[1, 8], metavar="B[,B...]",
                   help="batch sizes (default: 1,8)")
    b.add_argument("--providers", nargs="+", default=None, metavar="P",
                   help="ONNX Runtime execution providers: cpu, cuda, tensorrt (default: cpu)")
    b.add_argument("--path", default="auto", metavar="P",
                   help="how LIFT-CAM and Grad-CAM run on the CPU: auto (the rule of DESIGN.md "
                        "§13), fused (the one-graph explain.onnx), alpha (features + the "
                        "partial-sums α graph) or multipliers (default: auto)")
    b.add_argument("--threads", type=positive_arg, default=None, metavar="N",
                   help="intra-op threads per session (default: ONNX Runtime's)")
    b.add_argument("--warmup", type=count_arg, default=2, metavar="N",
                   help="untimed calls per entry and batch first (default: %(default)s)")
    b.add_argument("--repeats", type=positive_arg, default=10, metavar="N",
                   help="timed calls per entry and batch (default: %(default)s)")
    b.add_argument("--shap-samples", type=positive_arg, default=None, metavar="N",
                   help="permutations per image for 'shap' on wide layers (default: 64)")
    b.add_argument("--json", default=None, metavar="FILE",
                   help="write the records as a JSON list to FILE")
    b.set_defaults(func=run)


def run(args) -> int:
    from liftcam.engine import bench
    from liftcam.engine.atomic import write_bytes_atomic
    from liftcam.engine.explainer import Explainer
    from liftcam.engine.pipeline import resolve_methods

    explainer = Explainer(args.bundle, providers=args.providers, threads=args.threads,
                          path=args.path)
    methods = resolve_methods(args.methods, explainer.bundle)
    if args.json is not None and args.json.endswith("/"):
        raise CliError(f"--json must be a file name, got {args.json!r}")
    options = {"shap": {"n_samples": args.shap_samples}} if args.shap_samples else {}
    provider = ",".join(args.providers) if args.providers else "cpu"
    records = bench.run(explainer, methods, args.batch, warmup=args.warmup,
                        repeats=args.repeats, options=options, provider=provider,
                        log=lambda s: say(s))
    say(bench.table(records), sys.stdout)
    if args.json is not None:
        data = json.dumps([r.as_dict() for r in records], indent=2) + "\n"
        write_bytes_atomic(args.json, data.encode("utf-8"))
        say(f"wrote {args.json}")
    return EXIT_OK
