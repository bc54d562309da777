"""Shared helpers for liftcam's benchmarks: machine description, timing, child-process
measurement, medians, JSON and Markdown output.

Nothing here imports torch: a child process that measures an ONNX Runtime entry must not pay
for torch's import in its peak memory.
"""
from __future__ import annotations

import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path


# ----------------------------------------------------------------------------- machine
def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _physical_cores():
    try:
        import psutil  # optional

        return psutil.cpu_count(logical=False)
    except Exception:
        pass
    try:
        pairs = set()
        phys = core = None
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("physical id"):
                phys = line.split(":")[1].strip()
            elif line.startswith("core id"):
                core = line.split(":")[1].strip()
                pairs.add((phys, core))
        return len(pairs) or None
    except OSError:
        return None


def _version(mod: str):
    try:
        from importlib.metadata import version

        return version(mod)
    except Exception:
        return None


def load_average():
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def machine_description(threads=None) -> dict:
    """CPU, cores, memory, library versions and thread settings of this machine."""
    mem = None
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal"):
                mem = round(int(line.split()[1]) / 2**20, 1)
    except OSError:
        pass
    return {
        "cpu": _cpu_model(),
        "logical_cores": os.cpu_count(),
        "physical_cores": _physical_cores(),
        "memory_gib": mem,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "versions": {m: _version(m) for m in ("onnxruntime", "onnx", "torch", "torchvision",
                                               "numpy", "captum", "grad-cam", "liftcam")},
        "threads": {"intra_op": threads if threads else "onnxruntime default (physical cores)",
                    "torch_num_threads": threads or _physical_cores() or os.cpu_count(),
                    **{k: os.environ.get(k) for k in ("OMP_NUM_THREADS", "MKL_NUM_THREADS",
                                                      "OPENBLAS_NUM_THREADS")}},
        "load_average": load_average(),
    }


# ----------------------------------------------------------------------------- timing
def peak_rss_mb() -> float:
    """This process's resident-set high-water mark in MiB.

    Linux: ``VmHWM`` of /proc/self/status, the peak of this process's own address space.
    ``getrusage(RUSAGE_SELF).ru_maxrss`` is *not* used there: Linux carries it across fork and
    exec, so a child started by a big parent reports at least the parent's RSS at fork time.
    Elsewhere: ru_maxrss.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    r = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return r / 1024.0 if sys.platform != "darwin" else r / 2**20


def current_rss_mb() -> float:
    try:
        pages = int(Path("/proc/self/statm").read_text().split()[1])
        return pages * os.sysconf("SC_PAGE_SIZE") / 2**20
    except OSError:
        return float("nan")


def timed(fn) -> float:
    t0 = time.perf_counter()
    fn()
    return time.perf_counter() - t0


def median(xs):
    return statistics.median(xs)


# ----------------------------------------------------------------------------- child processes
class Child:
    """A measurement child process speaking a line protocol on stdin/stdout.

    The child prints ``ready <json>`` once set up; then answers each command line with one
    ``ok <json>`` line (or ``error <message>``). Used so that every entry has its own process:
    its own peak memory, its own thread pools, and no state shared with the other entries.
    """

    def __init__(self, argv, name: str, env=None):
        self.name = name
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     stderr=None, text=True, bufsize=1, env=env)
        self.info = self._read()

    def _read(self):
        while True:
            line = self.proc.stdout.readline()
            if not line:
                raise RuntimeError(f"benchmark child {self.name!r} died "
                                   f"(exit code {self.proc.poll()})")
            line = line.rstrip("\n")
            if line.startswith(("ready ", "ok ")):
                return json.loads(line.split(" ", 1)[1])
            if line.startswith("error "):
                raise RuntimeError(f"benchmark child {self.name!r}: {line[6:]}")
            # anything else is a stray print from a library: ignore

    def ask(self, command: str, **args):
        self.proc.stdin.write(json.dumps({"cmd": command, **args}) + "\n")
        self.proc.stdin.flush()
        return self._read()

    def close(self):
        try:
            if self.proc.poll() is None:
                self.ask("quit")
        except Exception:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


def serve(handlers: dict, ready_info: dict):
    """The child side of :class:`Child`: answer commands with ``handlers[cmd](**args)``."""
    out = sys.stdout
    sys.stdout = sys.stderr            # library prints must not corrupt the protocol
    out.write("ready " + json.dumps(ready_info) + "\n")
    out.flush()
    for line in sys.stdin:
        req = json.loads(line)
        cmd = req.pop("cmd")
        if cmd == "quit":
            out.write("ok {}\n")
            out.flush()
            return
        try:
            res = handlers[cmd](**req)
        except Exception as exc:  # report, keep serving
            out.write(f"error {type(exc).__name__}: {exc}\n".replace("\n", " ") + "\n")
            out.flush()
            continue
        out.write("ok " + json.dumps(res) + "\n")
        out.flush()


# ----------------------------------------------------------------------------- output
def write_json(path, data) -> Path:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
    return path


def markdown_table(headers, rows) -> str:
    """A GitHub Markdown table; numbers right-aligned."""
    def cell(v):
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(headers) + " |",
             "|" + "|".join("---:" if i else ":---" for i in range(len(headers))) + "|"]
    lines += ["| " + " | ".join(cell(v) for v in r) + " |" for r in rows]
    return "\n".join(lines)
