"""``liftcam explain BUNDLE INPUTS -o OUT``: thin over
:func:`liftcam.engine.pipeline.explain_files`."""
from __future__ import annotations

import sys
import time

from liftcam.cli.common import (
    EXIT_OK,
    EXIT_PARTIAL,
    CliError,
    method_choices,
    methods_arg,
    positive_arg,
    say,
)


def add_parser(sub):
    e = sub.add_parser("explain", help="explain images with a bundle",
                       description="Explain images with a bundle. INPUTS are image files, "
                                   "folders (searched recursively for image files) and glob "
                                   "patterns. Writes <stem>_<method>.png overlays at each "
                                   "image's own size, the maps, and results.jsonl (one line per "
                                   "image and method, written as the run goes). Unreadable "
                                   "images become error lines and are named on stderr; the run "
                                   "goes on (exit status 3).")
    e.add_argument("bundle", metavar="BUNDLE", help="a bundle directory (*.liftcam)")
    e.add_argument("inputs", nargs="+", metavar="INPUTS", help="image files, folders, globs")
    e.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    e.add_argument("-m", "--method", type=methods_arg, default=["liftcam"], metavar="M[,M...]",
                   help=f"CAM method(s), comma-separated: {method_choices()}, or 'all' (every "
                        "method the bundle can run; 'cam' only on linear heads; default: "
                        "liftcam)")
    e.add_argument("-t", "--target", default=None, metavar="T",
                   help="class to explain: an index or a label (default: the predicted class)")
    e.add_argument("-b", "--batch-size", type=positive_arg, default=8, metavar="B",
                   help="images per engine pass (default: %(default)s)")
    e.add_argument("--providers", nargs="+", default=None, metavar="P",
                   help="ONNX Runtime execution providers, e.g. cuda cpu (default: cpu)")
    e.add_argument("--threads", type=positive_arg, default=None, metavar="N",
                   help="intra-op threads per session (default: ONNX Runtime's)")
    e.add_argument("--maps", choices=("npy", "npz", "none"), default="npy",
                   help="save the maps (float32 in [0,1], the model's input size) as one .npy "
                        "per image, one maps.npz, or not at all (default: %(default)s)")
    e.add_argument("-k", "--top-k", type=positive_arg, default=5, metavar="K",
                   help="classes to list per image in results.jsonl (default: %(default)s)")
    e.add_argument("--alpha", type=float, default=0.5,
                   help="heatmap weight in the overlay, 0..1 (default: %(default)s)")
    e.add_argument("--shap-samples", type=positive_arg, default=None, metavar="N",
                   help="permutations per image for 'shap' when the layer has > 16 channels "
                        "(default: 64)")
    e.add_argument("--max-pixels", type=positive_arg, default=None, metavar="N",
                   help="refuse images with more pixels than this (default: 40,000,000)")
    e.add_argument("--overwrite", action="store_true",
                   help="replace the outputs of an earlier run in DIR (default: refuse)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress or summary")
    r = e.add_argument_group("Ray Data (pip install 'liftcam[ray]')")
    r.add_argument("--ray", action="store_true",
                   help="explain on Ray (decode tasks + a pool of explaining actors) and write "
                        "Parquet files into DIR: path, predicted, target, target_label, "
                        "probability, map (float16), method, error; no overlays (--maps, "
                        "--top-k and --alpha do not apply)")
    r.add_argument("--ray-address", default=None, metavar="ADDR",
                   help="the Ray cluster to connect to (e.g. auto or ray://head:10001; "
                        "default: a local Ray)")
    r.add_argument("--ray-actors", type=positive_arg, default=2, metavar="N",
                   help="explaining actors, each loading the bundle once (default: %(default)s)")
    e.set_defaults(func=run)


def run(args) -> int:
    from liftcam.engine.images import DEFAULT_MAX_PIXELS
    from liftcam.engine.inputs import printable
    from liftcam.engine.pipeline import explain_files

    t0 = time.perf_counter()
    options = {"shap": {"n_samples": args.shap_samples}} if args.shap_samples else None
    if args.ray_address and not args.ray:
        raise CliError("--ray-address needs --ray")
    if args.ray:
        return _run_ray(args, options, args.max_pixels or DEFAULT_MAX_PIXELS, t0)
    summary = explain_files(args.bundle, args.inputs, args.out, methods=args.method,
                            target=args.target, batch_size=args.batch_size, maps=args.maps,
                            top_k=args.top_k, alpha=args.alpha, overwrite=args.overwrite,
                            options=options, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS,
                            providers=args.providers, threads=args.threads,
                            progress=not args.quiet)
    if not args.quiet:
        say(f"explained {summary.explained} image(s) with {', '.join(summary.methods)} in "
            f"{time.perf_counter() - t0:.1f}s -> {printable(args.out)}/ (overlays, "
            f"{'maps, ' if args.maps != 'none' else ''}results.jsonl)", sys.stderr)
    if summary.failures:
        names = sorted({printable(name) for name, _ in summary.failures})
        say(f"liftcam: {len(names)} input(s) failed: " + ", ".join(names[:10])
            + (" ..." if len(names) > 10 else "") + " (error lines in results.jsonl)")
        if summary.explained == 0:
            say("liftcam: error: no image could be explained")
        return EXIT_PARTIAL
    return EXIT_OK


def _run_ray(args, options, max_pixels, t0) -> int:
    from liftcam.integrations.ray import explain_to_parquet

    rows, failures = explain_to_parquet(
        args.inputs, args.bundle, args.out, address=args.ray_address, overwrite=args.overwrite,
        method=args.method, target=args.target, batch_size=args.batch_size,
        concurrency=args.ray_actors, options=options, max_pixels=max_pixels,
        providers=args.providers, threads=args.threads, progress=not args.quiet)
    if not args.quiet:
        say(f"explained {rows - len(failures)} row(s) on Ray in {time.perf_counter() - t0:.1f}s "
            f"-> {args.out}/ (Parquet)", sys.stderr)
    if failures:
        names = sorted({str(name) for name, _ in failures})
        say(f"liftcam: {len(names)} input(s) failed: " + ", ".join(names[:10])
            + (" ..." if len(names) > 10 else "") + " (rows with an error in the Parquet files)")
        return EXIT_PARTIAL
    return EXIT_OK
