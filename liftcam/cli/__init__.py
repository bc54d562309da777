"""The ``liftcam`` command line: ``demo``, ``explain``, ``info``, ``export``, ``layers``,
``add-raw``, ``serve``, ``edge``, ``bench``, ``export-triton``.

One module per command (``add_parser(sub)`` + ``run(args)``), each thin over the public API;
what they share is in :mod:`liftcam.cli.common`. Run-time commands (``demo``, ``explain``,
``info``) need numpy + onnxruntime + Pillow only; ``export`` and ``layers`` need the build
extras (torch/torchvision for PyTorch models, onnx), imported only inside those commands;
``serve`` needs the ``serve`` extra (Starlette, uvicorn), imported only inside it.

Exit status: 0 success; 1 an error (bad bundle, bad target, unreadable model, ...; one line on
stderr starting ``liftcam: error:``); 2 a bad command line; 3 ``explain`` finished but some
inputs could not be read or explained (each named on stderr and in results.jsonl, the others
written); 130 interrupted; 143 terminated (SIGTERM: clean-ups run, results.jsonl stays
valid). Every path in a message is shown with control characters escaped.
"""
from __future__ import annotations

import os
import signal
import sys
import threading

from liftcam import __version__
from liftcam.cli import (
    add_raw,
    bench,
    demo,
    edge,
    explain,
    export,
    export_triton,
    info,
    layers,
    serve,
)
from liftcam.cli.common import (
    EXIT_ERROR,
    EXIT_INTERRUPTED,
    EXIT_TERMINATED,
    EXIT_USAGE,
    CliError,
    Parser,
    Terminated,
    raise_terminated,
    say,
)
from liftcam.engine.errors import LiftcamError, one_line
from liftcam.engine.inputs import printable

COMMANDS = (demo, explain, info, export, layers, add_raw, serve, edge, bench, export_triton)
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
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, raise_terminated)
    try:
        return args.func(args)
    except Terminated:
        say("liftcam: terminated")
        return EXIT_TERMINATED
    except LiftcamError as exc:
        say(f"liftcam: error: {printable(one_line(exc))}")
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
        where = f" {printable(exc.filename)}" if exc.filename else ""
        say(f"liftcam: error:{where}: {exc.strerror or one_line(exc)}")
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("LIFTCAM_DEBUG"):
            raise
        say(f"liftcam: error: unexpected {type(exc).__name__}: {printable(one_line(exc))[:500]} "
            "(set LIFTCAM_DEBUG=1 for the traceback)")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
