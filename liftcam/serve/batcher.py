"""Dynamic batching: concurrent explain requests become one engine call.

The rule (DESIGN.md §9): the first queued request opens a batch; requests queued behind it join
at once, and the batch waits for more until it holds ``max_batch`` images or ``max_wait_ms`` has
passed since it opened. The batch is then split into engine calls by method and by whether the
target is given (an explicit class for each image, or None: the predicted class), because
``Explainer.explain`` takes one method and either per-image targets or None. A method with a
``seed`` option (its sampling stream spans the call, registry.py) runs one image per call, so its
result never depends on its neighbours. Every result is therefore the one a single call gives.

One engine thread runs the calls in order; while it works the next batch fills.
"""
from __future__ import annotations

import asyncio
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Optional

import numpy as np

from liftcam.engine import methods as _methods


@dataclass
class Row:
    """One image's share of an engine call."""

    method: str
    logits: np.ndarray         # (C,)
    probabilities: np.ndarray  # (C,)
    target: int
    map: np.ndarray            # (H, W) at the model's input size, in [0, 1]
    batch_size: int            # images in the engine call that produced it
    engine_ms: float


@dataclass
class _Job:
    x: np.ndarray              # (1, C, H, W) preprocessed
    target: Optional[int]
    method: str
    future: asyncio.Future


class Batcher:
    """Queue of explain requests in front of one :class:`~liftcam.engine.explainer.Explainer`.

    ``await submit(x, target, method)`` → :class:`Row`. ``max_batch=1`` turns batching off.
    ``on_batch(size)`` is called for every engine call (metrics)."""

    def __init__(self, explainer, max_batch: int = 16, max_wait_ms: float = 5.0,
                 on_batch=None):
        if max_batch < 1 or max_wait_ms < 0:
            raise ValueError("max_batch must be >= 1 and max_wait_ms >= 0")
        self.explainer = explainer
        self.max_batch, self.max_wait = int(max_batch), float(max_wait_ms) / 1000.0
        self.on_batch = on_batch or (lambda size: None)
        self._engine = ThreadPoolExecutor(1, thread_name_prefix="liftcam-engine")
        self._queue: Optional[asyncio.Queue] = None
        self._task = None
        self._pending = 0

    @property
    def depth(self) -> int:
        """Requests submitted and not yet answered (queued or in the engine)."""
        return self._pending

    async def run_in_engine(self, fn, *args):
        """Run ``fn`` on the engine thread (warm-up; anything that must not race a batch)."""
        return await asyncio.get_running_loop().run_in_executor(self._engine, fn, *args)

    async def start(self) -> None:
        self._queue = asyncio.Queue()
        self._task = asyncio.create_task(self._loop(), name="liftcam-batcher")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            try:
                await self._task
            except asyncio.CancelledError:
                pass
        while self._queue is not None and not self._queue.empty():
            job = self._queue.get_nowait()
            if not job.future.done():
                job.future.set_exception(RuntimeError("the server is shutting down"))
        self._engine.shutdown(wait=True)

    async def submit(self, x: np.ndarray, target: Optional[int], method: str) -> Row:
        if self._queue is None:
            raise RuntimeError("the batcher is not running")
        job = _Job(x, target, method, asyncio.get_running_loop().create_future())
        self._pending += 1
        try:
            self._queue.put_nowait(job)
            return await job.future
        finally:
            self._pending -= 1

    # ------------------------------------------------------------------ the loop
    async def _collect(self) -> list:
        jobs = [await self._queue.get()]
        deadline = time.monotonic() + self.max_wait
        while len(jobs) < self.max_batch:
            if not self._queue.empty():
                jobs.append(self._queue.get_nowait())
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                break
            try:
                jobs.append(await asyncio.wait_for(self._queue.get(), left))
            except asyncio.TimeoutError:
                break
        return jobs

    async def _loop(self) -> None:
        while True:
            jobs = await self._collect()
            for group in self._groups(jobs):
                live = [j for j in group if not j.future.done()]   # a client gone: skip it
                if not live:
                    continue
                try:
                    rows = await self.run_in_engine(self._run, live)
                except Exception as exc:                          # noqa: BLE001 (to the caller)
                    for j in live:
                        if not j.future.done():
                            j.future.set_exception(exc)
                    continue
                for j, row in zip(live, rows):
                    if not j.future.done():
                        if isinstance(row, Exception):
                            j.future.set_exception(row)
                        else:
                            j.future.set_result(row)

    @staticmethod
    def _groups(jobs) -> list:
        groups = {}
        for i, j in enumerate(jobs):
            alone = "seed" in _methods.get(j.method).options
            key = (j.method, j.target is None, i if alone else -1)
            groups.setdefault(key, []).append(j)
        return list(groups.values())

    def _run(self, jobs) -> list:
        """On the engine thread: one engine call for ``jobs`` (one method, one target kind).
        If the call fails, each image is retried alone so only the failing one errs."""
        method = jobs[0].method
        x = np.concatenate([j.x for j in jobs])
        targets = None if jobs[0].target is None else np.array([j.target for j in jobs])
        t0 = time.perf_counter()
        try:
            e = self.explainer.explain(x, targets=targets, method=method, progress=False)
        except Exception as exc:                                  # noqa: BLE001
            if len(jobs) == 1:
                return [exc]
            return [self._run([j])[0] for j in jobs]
        ms = (time.perf_counter() - t0) * 1000.0
        self.on_batch(len(jobs))
        probs = e.probabilities()
        return [Row(method, e.logits[i], probs[i], int(e.targets[i]), e.maps[i], len(jobs), ms)
                for i in range(len(jobs))]
