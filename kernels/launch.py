"""Launching the CAM tail of ``kernels/liftcam.cu``: :class:`TailLauncher` on device pointers,
:func:`tail_ortvalues` on ONNX Runtime OrtValues, :func:`tail_numpy` on host arrays.

Importing this module needs numpy only; the backend (see :mod:`liftcam.kernels.backends`)
is created, and liftcam.cu compiled, when :func:`get_launcher` is first called for a
(backend, device).

Pointers are plain Python ints (``OrtValue.data_ptr()``, ``torch.Tensor.data_ptr()``, ...).
Kernels are launched on ``stream`` (a ``cudaStream_t`` as int; 0 = the legacy default
stream) and not synchronised: stream order is what orders them. A launcher owns one device
workspace (grown on demand); use one launcher per stream when launching concurrently.

Entry points:
    get_launcher(backend, device) -> TailLauncher
    TailLauncher.tail_multipliers / tail_weights   (device pointers)
    tail_ortvalues(A, M, maps, ...)                 (ONNX Runtime OrtValues on CUDA)
    tail_numpy(A, M, size=...)                      (host arrays; copies in and out)
"""
from __future__ import annotations

import threading
from typing import Dict, Optional, Tuple

import numpy as np

from liftcam.engine.errors import InputError
from liftcam.kernels.backends import BACKENDS, resolve_backend
from liftcam.kernels.plan import (
    TailDims,
    chunk_channels,
    mm_bytes,
    num_chunks,
    plan_tail,
    validate_ortvalues,
    validate_tail_arrays,
    validate_tail_dims,
    workspace_bytes,
)

__all__ = ["DeviceArray", "TailLauncher", "get_launcher", "tail_numpy", "tail_ortvalues"]


def _u64(p) -> np.uint64:
    return np.uint64(int(p))


class DeviceArray:
    """A float32 device buffer owned by a launcher (for tests and the numpy convenience)."""

    def __init__(self, launcher: "TailLauncher", shape: Tuple[int, ...]):
        self.launcher = launcher
        self.shape = tuple(int(s) for s in shape)
        self.nbytes = int(np.prod(self.shape)) * 4
        with launcher._ctx():
            self.ptr = launcher._b.alloc(self.nbytes)

    def upload(self, arr: np.ndarray) -> "DeviceArray":
        arr = np.ascontiguousarray(arr, dtype=np.float32)
        if arr.shape != self.shape:
            raise InputError(f"upload: shape {arr.shape} != {self.shape}")
        with self.launcher._ctx():
            self.launcher._b.htod(self.ptr, arr)
        return self

    def download(self) -> np.ndarray:
        out = np.empty(self.shape, np.float32)
        with self.launcher._ctx():
            self.launcher._b.synchronize()
            self.launcher._b.dtoh(out, self.ptr)
        return out

    def free(self):
        if self.ptr:
            with self.launcher._ctx():
                self.launcher._b.free(self.ptr)
            self.ptr = 0


class TailLauncher:
    """Compiled kernels of liftcam.cu on one device (primary context) with one backend."""

    def __init__(self, backend: str = "cuda-python", device: int = 0):
        self.backend = resolve_backend(backend)
        self.device = int(device)
        self._b = BACKENDS[self.backend](self.device)
        self._lock = threading.RLock()
        self._ws_ptr = 0
        self._ws_size = 0

    # context management -------------------------------------------------------
    class _Ctx:
        def __init__(self, launcher):
            self.l = launcher

        def __enter__(self):
            self.l._lock.acquire()
            self.l._b.activate()

        def __exit__(self, *exc):
            try:
                self.l._b.deactivate()
            finally:
                self.l._lock.release()

    def _ctx(self):
        return TailLauncher._Ctx(self)

    def _workspace(self, nbytes: int, stream: int) -> int:
        if nbytes > self._ws_size:
            if self._ws_ptr:
                self._b.synchronize(stream)
                self._b.free(self._ws_ptr)
                self._ws_ptr, self._ws_size = 0, 0
            size = max(nbytes, 1 << 20)
            self._ws_ptr = self._b.alloc(size)
            self._ws_size = size
        return self._ws_ptr

    def empty(self, shape) -> DeviceArray:
        return DeviceArray(self, shape)

    def to_device(self, arr: np.ndarray) -> DeviceArray:
        return DeviceArray(self, np.shape(arr)).upload(arr)

    def synchronize(self, stream: int = 0):
        with self._ctx():
            self._b.synchronize(stream)

    # the tail -----------------------------------------------------------------
    def _tail(self, d: TailDims, A: int, M: int, alpha: int, low: int, maps: int,
              has_m: bool, stream: int):
        for name, p in (("A", A), ("alpha/weights", alpha), ("low_res", low), ("maps", maps)):
            if not p:
                raise InputError(f"{name}: null device pointer")
        if has_m and not M:
            raise InputError("M: null device pointer")
        hw = d.h * d.w
        C = num_chunks(d.N, d.K)
        ws = self._workspace(workspace_bytes(d.N, d.K, d.h, d.w), stream)
        mm = ws
        partial = ws + mm_bytes(d.N)
        i32 = np.int32
        l1, l2, l3, l4 = plan_tail(d)
        b = self._b
        b.launch(l1.kernel, l1.grid, l1.block,
                 (_u64(A), _u64(M or 0), _u64(alpha), _u64(partial), i32(d.N), i32(d.K),
                  i32(hw), i32(chunk_channels(d.N, d.K)), i32(C), i32(1 if has_m else 0)),
                 stream)
        b.launch(l2.kernel, l2.grid, l2.block,
                 (_u64(partial), _u64(low), _u64(mm), i32(d.N), i32(hw), i32(C)), stream)
        dims = (i32(d.N), i32(d.h), i32(d.w), i32(d.H), i32(d.W))
        b.launch(l3.kernel, l3.grid, l3.block, (_u64(low), _u64(mm)) + dims, stream)
        b.launch(l4.kernel, l4.grid, l4.block, (_u64(low), _u64(mm), _u64(maps)) + dims, stream)

    def _scratch_outputs(self, d: TailDims, alpha: Optional[int], low: Optional[int]):
        """Device scratch for alpha / low when the caller does not want them."""
        need_a = 0 if alpha else d.N * d.K * 4
        need_l = 0 if low else d.N * d.h * d.w * 4
        if not (need_a or need_l):
            return alpha, low
        cur = getattr(self, "_scratch", None)
        if cur is None or cur[0] < need_a + need_l + 256:
            if cur is not None:
                self._b.synchronize()
                self._b.free(cur[1])
            size = max(need_a + need_l + 256, 1 << 16)
            self._scratch = (size, self._b.alloc(size))
        base = self._scratch[1]
        return (alpha or base), (low or (base + ((need_a + 255) & ~255)))

    def tail_multipliers(self, A: int, M: int, maps: int, N: int, K: int, h: int, w: int,
                         H: int, W: int, *, alpha: Optional[int] = None,
                         low_res: Optional[int] = None, stream: int = 0) -> None:
        """LIFT-CAM tail on device pointers: A, M (N,K,h,w) -> maps (N,H,W)
        [, alpha (N,K), low_res (N,h,w)]. Asynchronous on `stream`."""
        d = validate_tail_dims(N, K, h, w, H, W)
        with self._ctx():
            alpha, low_res = self._scratch_outputs(d, alpha, low_res)
            self._tail(d, A, M, alpha, low_res, maps, True, stream)

    def tail_weights(self, A: int, weights: int, maps: int, N: int, K: int, h: int, w: int,
                     H: int, W: int, *, low_res: Optional[int] = None,
                     stream: int = 0) -> None:
        """Grad-CAM-style tail: A (N,K,h,w), given weights (N,K) -> maps [, low_res]."""
        d = validate_tail_dims(N, K, h, w, H, W)
        with self._ctx():
            _, low_res = self._scratch_outputs(d, weights, low_res)
            self._tail(d, A, 0, weights, low_res, maps, False, stream)


_LAUNCHERS: Dict[Tuple[str, int], TailLauncher] = {}
_LAUNCHERS_LOCK = threading.Lock()


def get_launcher(backend: str = "cuda-python", device: int = 0) -> TailLauncher:
    """A cached TailLauncher per (backend, device); compiles on first use."""
    key = (resolve_backend(backend), int(device))
    with _LAUNCHERS_LOCK:
        if key not in _LAUNCHERS:
            _LAUNCHERS[key] = TailLauncher(key[0], key[1])
        return _LAUNCHERS[key]


def tail_numpy(A: np.ndarray, M: Optional[np.ndarray] = None, *, weights=None, size=None,
               backend: str = "cuda-python", device: int = 0, poison_outputs: bool = False):
    """Host arrays in and out (copies; for tests). Returns (alpha (N,K), low_res (N,h,w),
    maps (N,H,W)); with weights, alpha is the weights. poison_outputs fills the device
    outputs with NaN before launching."""
    d = validate_tail_arrays(A, M, weights, size)
    lau = get_launcher(backend, device)
    bufs = []
    try:
        dA = lau.to_device(A)
        bufs.append(dA)
        dW = lau.to_device(M if M is not None else weights)
        bufs.append(dW)
        outs = {"alpha": (d.N, d.K), "low": (d.N, d.h, d.w), "maps": (d.N, d.H, d.W)}
        dev = {}
        for k, s in outs.items():
            if k == "alpha" and M is None:
                continue
            dev[k] = lau.empty(s)
            bufs.append(dev[k])
            if poison_outputs:
                dev[k].upload(np.full(s, np.nan, np.float32))
        if M is not None:
            lau.tail_multipliers(dA.ptr, dW.ptr, dev["maps"].ptr, d.N, d.K, d.h, d.w, d.H, d.W,
                                 alpha=dev["alpha"].ptr, low_res=dev["low"].ptr)
            alpha = dev["alpha"].download()
        else:
            lau.tail_weights(dA.ptr, dW.ptr, dev["maps"].ptr, d.N, d.K, d.h, d.w, d.H, d.W,
                             low_res=dev["low"].ptr)
            alpha = np.array(weights, np.float32, copy=True)
        return alpha, dev["low"].download(), dev["maps"].download()
    finally:
        for b in bufs:
            b.free()


def tail_ortvalues(A, M, maps, *, weights=None, alpha=None, low_res=None,
                   backend: str = "cuda-python", device: int = 0, stream: int = 0) -> None:
    """The tail on ONNX Runtime OrtValues that live on CUDA (e.g. IO-binding outputs):
    A (N,K,h,w) and M (N,K,h,w) -- or M=None and weights (N,K) -- into the preallocated
    output maps (N,H,W) [and alpha (N,K), low_res (N,h,w)]. No host copy. `device` is the
    CUDA device the OrtValues live on (OrtValue does not report it)."""
    d = validate_ortvalues(A, M, maps, weights=weights, alpha=alpha, low_res=low_res)
    lau = get_launcher(backend, device)
    ptr = lambda ov: None if ov is None else int(ov.data_ptr())  # noqa: E731
    if M is not None:
        lau.tail_multipliers(ptr(A), ptr(M), ptr(maps), d.N, d.K, d.h, d.w, d.H, d.W,
                             alpha=ptr(alpha), low_res=ptr(low_res), stream=stream)
    else:
        lau.tail_weights(ptr(A), ptr(weights), ptr(maps), d.N, d.K, d.h, d.w, d.H, d.W,
                         low_res=ptr(low_res), stream=stream)
