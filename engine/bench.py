"""Latency of explaining against the floor of predicting, for one bundle (``liftcam bench``).

For each batch size, ``predict`` (features then head: the plain model, the floor) and every
method asked for are measured in one process, interleaved: each repeat calls every entry once,
in a rotating order, with a short pause between calls so that no thread pool is still busy
from the call before. Reported per (entry, batch): p50/p90/p99 latency in ms, images/s at the
p50, the ratio of the p50 to ``predict``'s p50 at the same batch, and the process's peak RSS
after that entry's calls. Inputs are random (a fixed seed) in the bundle's own layout.
Methods that evaluate the head or the model once per channel say how long they will take
before they start.
"""
from __future__ import annotations

import resource
import sys
import time
from dataclasses import asdict, dataclass

import numpy as np

from liftcam.engine.errors import InputError
from liftcam.engine.progress import Progress

PREDICT = "predict"
PAUSE_S = 0.05             # between timed calls: lets intra-op threads go idle


@dataclass
class Record:
    method: str
    batch: int
    provider: str
    p50_ms: float
    p90_ms: float
    p99_ms: float
    images_per_s: float
    ratio_to_predict: float
    peak_rss_mb: float
    repeats: int
    path: str = ""           # how the Explainer ran it (Explainer.path_for; DESIGN.md §13)

    def as_dict(self) -> dict:
        return asdict(self)


def _peak_rss_mb() -> float:
    kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss        # KiB on Linux
    return round(kb / 1024, 1)


def _call(explainer, method, x, options):
    if method == PREDICT:
        return explainer.predict(x)
    return explainer.explain(x, method=method, progress=False, batch_size=len(x),
                             **options.get(method, {}))


def _path(explainer, entry: str, batch: int) -> str:
    return "features+head" if entry == PREDICT else explainer.path_for(entry, batch)


def estimate(explainer, method: str, batch: int, options=None) -> float:
    """Seconds one call of a per-channel method will take: its evaluation count times one
    measured head (or model) evaluation of ``eval_batch`` rows."""
    from liftcam.engine.methods import get

    spec = get(method)
    if not spec.per_channel:
        return 0.0
    K = explainer.bundle.activation_shape[0]
    n = spec.count(batch, K, **(options or {}).get(method, {}))
    rows = min(explainer.eval_batch, max(n, 1))
    if spec.per_channel == "model":
        x = np.zeros((rows, *explainer.bundle.input_shape), np.float32)
        t0 = time.perf_counter()
        explainer.predict(x)
    else:
        A = np.zeros((rows, *explainer.bundle.activation_shape), np.float32)
        t0 = time.perf_counter()
        explainer.head(A)
    return (time.perf_counter() - t0) * n / rows


def run(explainer, methods, batches, warmup: int = 2, repeats: int = 10, options=None,
        provider: str = "cpu", log=None, progress=True) -> list:
    """Measure; returns :class:`Record` rows (``predict`` first at each batch)."""
    options = dict(options or {})
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    for name, v in (("warmup", warmup), ("repeats", repeats)):
        if isinstance(v, bool) or not isinstance(v, int) or v < (0 if name == "warmup" else 1):
            raise InputError(f"{name} must be an int >= {0 if name == 'warmup' else 1}, "
                             f"got {v!r}")
    entries = [PREDICT, *methods]
    rng = np.random.default_rng(0)
    records = []
    total = len(batches) * len(entries) * (warmup + repeats)
    bar = Progress(total, "bench", enabled=bool(progress), unit="calls")
    try:
        for batch in batches:
            x = rng.standard_normal((batch, *explainer.bundle.input_shape)).astype(np.float32)
            for m in methods:          # the slow ones say how long they will take
                secs = estimate(explainer, m, batch, options)
                if secs > 0:
                    bar.write(f"bench: {m} at batch {batch} evaluates the "
                              f"{'model' if m == 'scorecam' else 'head'} once per channel: "
                              f"~{secs:.2g} s per call, ~{secs * (warmup + repeats):.2g} s "
                              "for its calls")
            for e in entries:                           # warm-up, also builds the sessions
                for _ in range(warmup):
                    _call(explainer, e, x, options)
                    bar.update(1)
            times = {e: [] for e in entries}
            peak = {}
            for r in range(repeats):
                for i in range(len(entries)):
                    e = entries[(i + r) % len(entries)]
                    time.sleep(PAUSE_S)
                    t0 = time.perf_counter()
                    _call(explainer, e, x, options)
                    times[e].append((time.perf_counter() - t0) * 1000)
                    peak[e] = _peak_rss_mb()
                    bar.update(1)
            floor = float(np.percentile(times[PREDICT], 50))
            for e in entries:
                p50, p90, p99 = (float(np.percentile(times[e], q)) for q in (50, 90, 99))
                records.append(Record(e, batch, provider, round(p50, 3), round(p90, 3),
                                      round(p99, 3), round(batch / (p50 / 1000), 2),
                                      round(p50 / floor, 4), peak[e], repeats,
                                      _path(explainer, e, batch)))
    finally:
        bar.close()
    return records


def table(records) -> str:
    """The records as a Markdown table."""
    head = ["method", "batch", "provider", "path", "p50 ms", "p90 ms", "p99 ms", "images/s",
            "× predict", "peak RSS MiB"]
    rows = [[r.method, r.batch, r.provider, r.path, f"{r.p50_ms:.2f}", f"{r.p90_ms:.2f}",
             f"{r.p99_ms:.2f}", f"{r.images_per_s:.1f}", f"{r.ratio_to_predict:.3f}",
             f"{r.peak_rss_mb:.0f}"] for r in records]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)
