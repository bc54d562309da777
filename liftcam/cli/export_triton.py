"""``liftcam export-triton BUNDLE -o REPO``: a Triton Inference Server model repository with the
fused explain graph; thin over :func:`liftcam.integrations.triton.export_triton`."""
from __future__ import annotations

import sys

from liftcam.cli.common import EXIT_OK, positive_arg, say


def add_parser(sub):
    t = sub.add_parser("export-triton", help="write a Triton model repository for a bundle",
                       description="Write REPO/<name>/config.pbtxt and REPO/<name>/1/model.onnx "
                                   "(the fused explain graph with its weights inside) for "
                                   "Triton's ONNX Runtime backend with dynamic batching: inputs "
                                   "image FP32 [C,H,W] and target INT64 (-1: the predicted "
                                   "class), outputs logits, weights and map. Also labels.txt and "
                                   "client_example.py (tritonclient.http). Needs onnx.")
    t.add_argument("bundle", metavar="BUNDLE")
    t.add_argument("-o", "--out", required=True, metavar="REPO",
                   help="the model repository folder (created if missing)")
    t.add_argument("--name", default=None,
                   help="model name (default: the bundle's folder name without .liftcam)")
    t.add_argument("--method", choices=("liftcam", "gradcam"), default="liftcam",
                   help="which fused graph: explain.onnx (liftcam) or explain_gradcam.onnx")
    t.add_argument("--max-batch", type=positive_arg, default=32, metavar="N",
                   help="max_batch_size for dynamic batching (default: %(default)s)")
    t.add_argument("--instances", type=positive_arg, default=1, metavar="N",
                   help="model instances (instance_group count; default: %(default)s)")
    t.add_argument("--gpu", action="store_true",
                   help="instances on GPUs (KIND_GPU; default: KIND_CPU)")
    t.add_argument("--overwrite", action="store_true",
                   help="replace an existing model folder of that name")
    t.set_defaults(func=run)


def run(args) -> int:
    from liftcam.integrations.triton import export_triton

    path = export_triton(args.bundle, args.out, name=args.name, method=args.method,
                         max_batch=args.max_batch, instances=args.instances, gpu=args.gpu,
                         overwrite=args.overwrite)
    say(f"wrote {path}/ (config.pbtxt, 1/model.onnx, client_example.py)", sys.stdout)
    return EXIT_OK
