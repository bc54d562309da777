"""``liftcam export``: a torchvision architecture, a factory function or an ONNX file to a
bundle, thin over :func:`liftcam.export_model` / :func:`liftcam.export_onnx`."""
from __future__ import annotations

import sys
import time
from pathlib import Path

from liftcam.cli.common import (
    EXIT_OK,
    CliError,
    fmt_bytes,
    hw_arg,
    positive_arg,
    say,
    shape_arg,
    triple_arg,
)
from liftcam.engine.bundle import load_bundle
from liftcam.engine.errors import LayerError, one_line


def add_parser(sub):
    x = sub.add_parser("export", help="export a model to a bundle (needs torch or onnx)",
                       description="Export a classifier to a bundle: a torchvision "
                                   "architecture (--arch, optional --weights), a factory "
                                   "function (--factory module:function) or an ONNX file "
                                   "(--onnx).")
    src = x.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", metavar="NAME", help="torchvision architecture, e.g. resnet50")
    src.add_argument("--factory", metavar="MODULE:FUNCTION",
                     help="a function that returns a torch.nn.Module (the current folder is "
                          "on the import path)")
    src.add_argument("--onnx", metavar="FILE", help="an ONNX classifier")
    x.add_argument("--weights", metavar="FILE",
                   help="a state_dict file for --arch/--factory (torch.load weights_only=True; "
                        "default: random weights, with a warning)")
    x.add_argument("--num-classes", type=positive_arg, default=None, metavar="N",
                   help="number of classes for --arch (default: 1000) or --factory")
    x.add_argument("--layer", metavar="NAME",
                   help="target layer: module name (PyTorch) or tensor name (ONNX); default: "
                        "the last activation before pooling (see 'liftcam layers')")
    x.add_argument("--input-shape", type=shape_arg, default=None, metavar="C,H,W",
                   help="input shape (default: 3,224,224; ONNX: the model's own)")
    x.add_argument("--layout", choices=("NCHW", "NHWC"), default=None,
                   help="--onnx: the input's layout, channels first or last (default: detected "
                        "from the graph; --input-shape is then in that layout, e.g. 224,224,3)")
    x.add_argument("--labels", metavar="FILE", help="class labels, one per line")
    x.add_argument("--mean", type=triple_arg, default=None, metavar="R,G,B",
                   help="normalisation mean on [0,1] pixels (default: ImageNet's)")
    x.add_argument("--std", type=triple_arg, default=None, metavar="R,G,B",
                   help="normalisation std on [0,1] pixels (default: ImageNet's)")
    x.add_argument("--resize-shorter", type=positive_arg, default=None, metavar="S",
                   help="resize the shorter side to S, keeping the aspect ratio (use with "
                        "--center-crop); default: resize to exactly H,W")
    x.add_argument("--center-crop", type=hw_arg, default=None, metavar="H,W",
                   help="cut the centre H,W after resizing (default: none)")
    x.add_argument("--bgr", action="store_true", help="the model expects BGR channel order")
    x.add_argument("-o", "--out", default=None, metavar="OUT",
                   help="bundle directory (default: <name>.liftcam)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    x.set_defaults(func=run)


def read_labels(path):
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"labels file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read labels file {p}: {one_line(exc)}") from None
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise CliError(f"labels file {p} is empty")
    return labels


def layer_hint(exc: LayerError, model: str) -> CliError:
    """A bad --layer: the command-line hint instead of the Python one."""
    return CliError(f"{exc.message}; run 'liftcam layers {model}' to list the layers it can "
                    "be cut at")


def run(args) -> int:
    try:
        return _export(args)
    except LayerError as exc:
        raise layer_hint(exc, args.onnx or args.arch or args.factory) from None


def _export(args) -> int:
    import liftcam
    from liftcam.export.models import build_model, need_build_extras

    t0 = time.perf_counter()
    labels = read_labels(args.labels) if args.labels else None
    pre = {}
    if args.mean is not None:
        pre["mean"] = args.mean
    if args.std is not None:
        if min(args.std) <= 0:
            raise CliError(f"--std must be > 0, got {args.std}")
        pre["std"] = args.std
    if args.resize_shorter is not None:
        pre["resize"] = None
        pre["resize_shorter"] = args.resize_shorter
        if args.center_crop is None:
            raise CliError("--resize-shorter needs --center-crop H,W (the model input size)")
    if args.center_crop is not None:
        pre["center_crop"] = args.center_crop
        if args.resize_shorter is None:
            pre["resize"] = None
    if args.bgr:
        pre["channel_order"] = "BGR"
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise CliError(f"{args.out} already exists; pass --overwrite to replace it")
    if args.onnx:
        if args.weights or args.num_classes:
            raise CliError("--weights/--num-classes apply to --arch/--factory, not --onnx")
        out = args.out or f"{Path(args.onnx).stem}.liftcam"
        try:
            path = liftcam.export_onnx(args.onnx, activation=args.layer, out_dir=out,
                                       layout=args.layout,
                                       input_shape=args.input_shape, labels=labels,
                                       preprocessing=pre or None, overwrite=args.overwrite)
        except ImportError as exc:
            raise need_build_extras("--onnx", exc) from None
    else:
        model, name = build_model(args.arch, args.factory, args.weights, args.num_classes)
        if not args.weights:
            say(f"liftcam: warning: no --weights given: exporting {name} with random weights")
        out = args.out or f"{name}.liftcam"
        if not args.out and Path(out).exists() and not args.overwrite:
            raise CliError(f"{out} already exists; pass --overwrite to replace it")
        shape = args.input_shape or (3, 224, 224)
        path = liftcam.export_model(model, target_layer=args.layer, input_shape=shape,
                                    out_dir=out, labels=labels, preprocessing=pre or None,
                                    overwrite=args.overwrite)
    if pre.get("center_crop") is not None:
        _check_crop(path, pre)
    bundle = load_bundle(path, verify=False)
    m = bundle.manifest
    size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
    say(f"exported {path} ({fmt_bytes(size)}) in {time.perf_counter() - t0:.1f}s: "
         f"target layer {m['target_layer']['name']}, activation "
         f"{'x'.join(str(d) for d in m['activation']['shape'][1:])}, "
         f"{m['num_classes']} classes", sys.stdout)
    return EXIT_OK


def _check_crop(path, pre):
    bundle = load_bundle(path, verify=False)
    H, W = bundle.image_hw
    if list(pre["center_crop"]) != [H, W]:
        say(f"liftcam: warning: --center-crop {pre['center_crop']} differs from the model "
             f"input {H}x{W}; images will be rejected")
