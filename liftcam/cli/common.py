"""What every command shares: exit codes, messages, argument types, the error class."""
from __future__ import annotations

import argparse
import sys

from liftcam.engine.errors import LiftcamError, one_line

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
EXIT_TERMINATED = 143


class Terminated(BaseException):
    """SIGTERM, raised in the main thread so that ``finally`` blocks and temporary-file
    clean-ups run (results.jsonl closed, a half-written bundle removed)."""


def raise_terminated(signum, frame):
    raise Terminated()


class CliError(LiftcamError):
    """A command-line level error (bad option value, nothing to do)."""


def say(msg: str, stream=None) -> None:
    """Write a message line by line, control characters (from file names) escaped."""
    from liftcam.engine.inputs import printable

    stream = stream or sys.stderr
    stream.write("\n".join(printable(line) for line in str(msg).split("\n")) + "\n")
    stream.flush()


class Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"liftcam: error: {one_line(message)} "
                              f"(see '{self.prog} --help')\n")


def _ints(text: str, n: int, what: str) -> tuple:
    try:
        vals = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}") from None
    if n == 2 and len(vals) == 1:
        vals = vals * 2
    if len(vals) != n or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected {n} positive ints {what}, got {text!r}")
    return vals


def shape_arg(text: str) -> tuple:
    """``C,H,W`` (e.g. 3,224,224)."""
    return _ints(text, 3, "C,H,W (e.g. 3,224,224)")


def hw_arg(text: str) -> list:
    """``H,W`` or one size for both."""
    return list(_ints(text, 2, "H,W"))


def triple_arg(text: str) -> list:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers a,b,c, got {text!r}") \
            from None
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers a,b,c, got {text!r}")
    return vals


def _int_at_least(text: str, minimum: int, what: str) -> int:
    try:
        v = int(text)
    except ValueError:
        v = minimum - 1
    if v < minimum:
        raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
    return v


def positive_arg(text: str) -> int:
    return _int_at_least(text, 1, "a positive int")


def count_arg(text: str) -> int:
    """An int >= 0 (e.g. a number of warm-up calls)."""
    return _int_at_least(text, 0, "an int >= 0")


def ints_arg(text: str) -> list:
    """Comma-separated positive ints, e.g. batch sizes ``1,8,32`` (duplicates dropped)."""
    vals = [_int_at_least(v, 1, "positive ints like 1,8,32") for v in text.split(",")]
    return list(dict.fromkeys(vals))


def needs_extra(what: str, exc: ImportError, extra: str) -> "CliError":
    """The error for a command whose optional dependencies are not installed."""
    return CliError(f"{what} needs the '{extra}' extra ({exc.name or exc} is missing): "
                    f"pip install 'liftcam[{extra}]'")


def methods_arg(text: str) -> list:
    """Comma-separated method names or ``all`` (expanded per bundle by the pipeline)."""
    from liftcam.engine import methods

    out = []
    for m in text.split(","):
        m = m.strip().lower()
        if m != "all":
            try:
                methods.get(m)
            except LiftcamError as exc:
                raise argparse.ArgumentTypeError(f"{exc} or 'all'") from None
        out.append(m)
    return out


def method_choices() -> str:
    from liftcam.engine.methods import METHODS

    return ", ".join(METHODS)


def fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
