"""Progress on stderr for long work: a bar on a terminal, periodic lines elsewhere.

On a terminal the bar redraws in place. Off a terminal (a log file, CI, a pipe) a plain line
``label: done/total (p%), rate/s, ETA`` is printed at most every ``interval`` seconds and once
at the end, so a long run is never silent.
"""
from __future__ import annotations

import os
import shutil
import sys
import time

#: seconds between progress lines off a terminal (environment: LIFTCAM_PROGRESS_SECONDS)
INTERVAL = 10.0


def is_tty(stream) -> bool:
    """Whether ``stream`` is an interactive terminal."""
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


class Progress:
    """``update(n)`` after each unit of work, ``write(msg)`` for messages, ``close()`` at the end.

    ``enabled``: None (default) shows progress (bar or lines); False silences it. ``tty``:
    None detects whether ``stream`` is a terminal. ``interval``: seconds between lines off a
    terminal (default :data:`INTERVAL`); off a terminal the closing line is printed only when
    the work took long enough for periodic lines."""

    def __init__(self, total: int, label: str = "", stream=None, enabled=None, tty=None,
                 interval=None, unit: str = ""):
        self.stream = stream or sys.stderr
        self.total, self.label, self.done, self.unit = max(int(total), 0), label, 0, unit
        self.tty = is_tty(self.stream) if tty is None else bool(tty)
        self.enabled = enabled is not False and self.total > 0
        if interval is None:
            try:
                interval = float(os.environ.get("LIFTCAM_PROGRESS_SECONDS", INTERVAL))
            except ValueError:
                interval = INTERVAL
        self.interval = float(interval)
        self._lines = 0
        self._ended = False
        self.t0 = self._last = time.perf_counter()
        self._drawn = False
        self._closed = False

    def _rate(self) -> float:
        return self.done / max(time.perf_counter() - self.t0, 1e-9)

    def _line(self) -> str:
        rate = self._rate()
        left = (self.total - self.done) / rate if rate > 0 else float("inf")
        eta = f", ETA {left:.0f}s" if self.done < self.total and left != float("inf") else ""
        unit = f" {self.unit}" if self.unit else ""
        return (f"{self.label}: {self.done}/{self.total}{unit} "
                f"({100 * self.done / self.total:.0f}%), {rate:.1f}/s{eta}")

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        if self.tty:
            bar = "#" * int(30 * self.done / self.total)
            line = (f"{self.label} [{bar:<30}] {self.done}/{self.total} {self._rate():.1f}/s "
                    f"{note[:30]:<30}")
            width = max(20, shutil.get_terminal_size((100, 24)).columns)
            self.stream.write("\r" + line[:width - 1])
            self.stream.flush()
            self._drawn = True
            return
        now = time.perf_counter()
        final = self.done == self.total
        if (now - self._last >= self.interval and not self._ended) or \
                (final and self._lines and not self._ended):
            self._ended = final
            self._last = now
            self._lines += 1
            self.stream.write(self._line() + "\n")
            self.stream.flush()

    def write(self, msg: str) -> None:
        """Print a message line without garbling the bar."""
        if self._drawn:
            width = max(20, shutil.get_terminal_size((100, 24)).columns)
            self.stream.write("\r" + " " * (width - 1) + "\r")
        self.stream.write(msg + "\n")
        self.stream.flush()
        if self._drawn:
            self.update(0)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
