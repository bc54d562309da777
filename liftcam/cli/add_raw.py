"""``liftcam add-raw BUNDLE``: add ``explain_raw.onnx`` (decoded pixels in, the map at the
image's own size out) to a bundle exported before it existed; thin over
:func:`liftcam.export.raw.add_to_bundle`."""
from __future__ import annotations

import sys

from liftcam.cli.common import EXIT_OK, CliError, needs_extra, say


def add_parser(sub):
    r = sub.add_parser("add-raw", help="add explain_raw.onnx (raw pixels in) to a bundle",
                       description="Add explain_raw.onnx to an existing bundle: one graph that "
                                   "takes a decoded uint8 RGB image of any size ([H,W,3] or "
                                   "[N,H,W,3]) and the target, does the bundle's preprocessing "
                                   "itself and returns the logits, coefficients, the map at the "
                                   "image's own size and the overlay. Needs onnx.")
    r.add_argument("bundle", metavar="BUNDLE")
    r.add_argument("--alpha", type=float, default=0.5,
                   help="heatmap weight in the overlay output, 0..1 (default: %(default)s)")
    r.set_defaults(func=run)


def run(args) -> int:
    if not 0.0 <= args.alpha <= 1.0:
        raise CliError(f"--alpha must be in [0, 1], got {args.alpha}")
    try:
        from liftcam.export.raw import add_to_bundle
    except ImportError as exc:
        raise needs_extra("liftcam add-raw", exc, "export") from None
    path = add_to_bundle(args.bundle, alpha=args.alpha)
    say(f"wrote {path}", sys.stdout)
    return EXIT_OK
