"""Prometheus text exposition (format 0.0.4) for the server, without a client library.

Counters of requests by route and status, a latency histogram by route, a histogram of engine
batch sizes and a queue-depth gauge. Thread-safe (one lock); rendering takes a snapshot.
"""
from __future__ import annotations

import threading
from bisect import bisect_left

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)


def batch_buckets(max_batch: int) -> tuple:
    """1, 2, 4, ... up to and including ``max_batch``."""
    out, b = [], 1
    while b < max_batch:
        out.append(b)
        b *= 2
    out.append(max_batch)
    return tuple(sorted(set(out)))


class Histogram:
    def __init__(self, buckets):
        self.buckets = tuple(float(b) for b in buckets)
        self.counts = [0] * (len(self.buckets) + 1)      # the last one: +Inf only
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect_left(self.buckets, value)] += 1
        self.sum += value

    def lines(self, name: str, labels: str = "") -> list:
        sep = "," if labels else ""
        out, cumulative = [], 0
        for le, n in zip(self.buckets + (float("inf"),), self.counts):
            cumulative += n
            le_text = "+Inf" if le == float("inf") else f"{le:g}"
            out.append(f'{name}_bucket{{{labels}{sep}le="{le_text}"}} {cumulative}')
        braces = f"{{{labels}}}" if labels else ""
        out.append(f"{name}_sum{braces} {self.sum:.6g}")
        out.append(f"{name}_count{braces} {cumulative}")
        return out


def _escape(value: str) -> str:
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


class Metrics:
    """The server's counters; ``queue_depth`` is a callable read at render time."""

    def __init__(self, max_batch: int, queue_depth=lambda: 0):
        self._lock = threading.Lock()
        self._requests = {}                 # (route, status) -> count
        self._latency = {}                  # route -> Histogram
        self._batches = Histogram(batch_buckets(max_batch))
        self.queue_depth = queue_depth

    def request(self, route: str, status: int, seconds: float) -> None:
        with self._lock:
            key = (route, str(status))
            self._requests[key] = self._requests.get(key, 0) + 1
            self._latency.setdefault(route, Histogram(LATENCY_BUCKETS)).observe(seconds)

    def batch(self, size: int) -> None:
        with self._lock:
            self._batches.observe(size)

    def render(self) -> str:
        with self._lock:
            out = ["# HELP liftcam_requests_total HTTP requests by route and status.",
                   "# TYPE liftcam_requests_total counter"]
            for (route, status), n in sorted(self._requests.items()):
                out.append(f'liftcam_requests_total{{route="{_escape(route)}",'
                           f'status="{status}"}} {n}')
            out += ["# HELP liftcam_request_duration_seconds Request latency by route.",
                    "# TYPE liftcam_request_duration_seconds histogram"]
            for route, h in sorted(self._latency.items()):
                out += h.lines("liftcam_request_duration_seconds", f'route="{_escape(route)}"')
            out += ["# HELP liftcam_batch_size Images per engine call (dynamic batching).",
                    "# TYPE liftcam_batch_size histogram"]
            out += self._batches.lines("liftcam_batch_size")
        out += ["# HELP liftcam_queue_depth Explain requests queued or in the engine.",
                "# TYPE liftcam_queue_depth gauge",
                f"liftcam_queue_depth {int(self.queue_depth())}"]
        return "\n".join(out) + "\n"
