"""``liftcam layers MODEL``: the layers a model can be cut at, the default first."""
from __future__ import annotations

import sys
from pathlib import Path

from liftcam.cli.common import EXIT_OK, CliError, positive_arg, say, shape_arg


def add_parser(sub):
    ly = sub.add_parser("layers", help="list the layers a model can be cut at",
                        description="List the candidate target layers of a model (torchvision "
                                    "architecture name, module:function, or .onnx file) with "
                                    "their activation shapes; the default comes first.")
    ly.add_argument("model", metavar="MODEL", help="arch name, module:function or model.onnx")
    ly.add_argument("--input-shape", type=shape_arg, default=None, metavar="C,H,W",
                    help="input shape (default: 3,224,224; ONNX: the model's own)")
    ly.add_argument("--layout", choices=("NCHW", "NHWC"), default=None,
                    help="ONNX files: the input's layout (default: detected)")
    ly.add_argument("--num-classes", type=positive_arg, default=None, metavar="N")
    ly.add_argument("--all", action="store_true",
                    help="also list layers a skip connection crosses (not cuttable)")
    ly.set_defaults(func=run)


def run(args) -> int:
    import liftcam

    spec = args.model
    from liftcam.export.models import factory_model, need_build_extras, torchvision_model

    try:
        from liftcam.export.split import POOLING_OPS
    except ImportError as exc:
        raise need_build_extras("liftcam layers", exc) from None
    if spec.lower().endswith(".onnx") or Path(spec).is_file():
        if args.num_classes:
            raise CliError("--num-classes applies to architecture names, not ONNX files")
        cands = liftcam.candidate_layers(spec, args.input_shape or (3, 224, 224),
                                         layout=args.layout)
    else:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise need_build_extras("liftcam layers on a PyTorch model", exc) from None
        if ":" in spec:
            model = factory_model(spec, args.num_classes)
        else:
            model = torchvision_model(spec, args.num_classes)
        cands = liftcam.candidate_layers(model, args.input_shape or (3, 224, 224))
    default = next((i for i, c in enumerate(cands)
                    if c["cuttable"] and c["op"] not in POOLING_OPS
                    and c["shape"][1] * c["shape"][2] > 1), None)
    if default is not None:
        cands = [cands[default]] + cands[:default] + cands[default + 1:]
    rows = [c for j, c in enumerate(cands) if args.all or c["cuttable"]]
    if not rows:
        raise CliError(f"{spec} has no layer liftcam can cut at")
    head = ("", "layer", "shape (K,h,w)", "op", "cut", "aliases")
    table = [head]
    for j, c in enumerate(rows):
        mark = "*" if (default is not None and j == 0) else ""
        cut = "yes" if c["cuttable"] else "no (skip: " + ",".join(c["crossing"][:2]) + ")"
        table.append((mark, c["name"], "x".join(str(d) for d in c["shape"]), c["op"], cut,
                      ", ".join(c["aliases"][:3]) + (" ..." if len(c["aliases"]) > 3 else "")))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        say("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip(), sys.stdout)
    if default is not None:
        say(f"* default target layer ({len(rows)} listed"
             + ("" if args.all else "; --all adds the non-cuttable ones") + ")", sys.stdout)
    return EXIT_OK
