"""The ``liftcam`` command line: ``demo``, ``explain``, ``info``, ``export``, ``layers``,
``add-raw``, ``export-triton``.

One module per command (``add_parser(sub)`` + ``run(args)``), each thin over the public API;
what they share is in :mod:`liftcam.cli.common`. Run-time commands (``demo``, ``explain``,
``info``) need numpy + onnxruntime + Pillow only; ``export`` and ``layers`` need the build
extras (torch/torchvision for PyTorch models, onnx), imported only inside those commands.

Exit status: 0 success; 1 an error (bad bundle, bad target, unreadable model, ...; one line on
stderr starting ``liftcam: error:``); 2 a bad command line; 3 ``explain`` finished but some
inputs could not be read or explained (each named on stderr and in results.jsonl, the others
written); 130 interrupted.
"""
from __future__ import annotations

import os
import sys

from liftcam import __version__
from liftcam.cli import add_raw, demo, explain, export, export_triton, info, layers
from liftcam.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_USAGE,
    CliError,
    Parser,
    one_line,
    say,
)
from liftcam.engine.errors import LiftcamError

COMMANDS = (demo, explain, info, export, layers, add_raw, export_triton)
__all__ = ["main", "build_parser", "CliError"]


def build_parser() -> Parser:
    p = Parser(prog="liftcam",
               description="LIFT-CAM and the CAM family on ONNX Runtime: export a CNN "
                           "classifier to a bundle, then explain images with it.",
               epilog="exit status: 0 ok, 1 error, 2 bad command line, 3 some inputs could "
                      "not be read. Run 'liftcam COMMAND --help' for a command's options.")
    p.add_argument("--version", action="version", version=f"liftcam {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=Parser)
    sub.required = True
    for command in COMMANDS:
        command.add_parser(sub)
    return p


def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:           # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.func(args)
    except LiftcamError as exc:
        say(f"liftcam: error: {one_line(exc)}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        say("liftcam: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_ERROR
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        say(f"liftcam: error:{where}: {exc.strerror or one_line(exc)}")
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("LIFTCAM_DEBUG"):
            raise
        say(f"liftcam: error: unexpected {type(exc).__name__}: {one_line(exc)[:500]} "
            "(set LIFTCAM_DEBUG=1 for the traceback)")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
