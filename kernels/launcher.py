"""Run-time compilation (NVRTC) and launch of ``kernels/liftcam.cu`` on raw device pointers.

Importing this module needs numpy only: cuda-python / pycuda, the CUDA driver and a GPU are
looked for when a launcher is first used, and their absence is a clear
:class:`KernelUnavailableError`.

Backends (``backend=``):

- ``"cuda-python"`` (default; aliases ``"cuda"``, ``"cuda.core"``): NVIDIA cuda-python,
  ``cuda.core`` (``Device(i).set_current()`` = the device's *primary* context, the one the
  CUDA runtime -- and so ONNX Runtime's CUDA EP -- uses) and ``cuda.bindings`` (NVRTC and
  driver memory calls).
- ``"pycuda"``: ``pycuda.driver.Device(i).retain_primary_context()`` (never ``pycuda.autoinit``),
  pushed around every call. Launches go to the legacy default stream only.

Compilation: NVRTC (``cuda.bindings.nvrtc``) to a cubin for the device's ``sm_XY``, or to PTX
for the newest architecture NVRTC knows when the device is newer; with pycuda and no
cuda.bindings, ``pycuda.compiler`` (nvcc). The source is the same file nvcc compiles.

Pointers are plain Python ints (``OrtValue.data_ptr()``, ``torch.Tensor.data_ptr()``, ...).
Kernels are launched on ``stream`` (a ``cudaStream_t`` as int; 0 = the legacy default
stream) and not synchronised: stream order is what orders them. A launcher owns one device
workspace (grown on demand); use one launcher per stream when launching concurrently.

Entry points:
    get_launcher(backend, device) -> TailLauncher
    TailLauncher.tail_multipliers / tail_weights                (device pointers)
    tail_ortvalues(A, M, maps, ...)                              (ONNX Runtime OrtValues on CUDA)
    tail_numpy(A, M, size=...)                                   (host arrays; copies in and out)
    validate_* / plan_tail / compile_source                      (no GPU needed)
"""
from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from typing import Dict, List, Optional, Sequence, Tuple

import numpy as np

from liftcam.engine.errors import InputError, LiftcamError

__all__ = [
    "KernelUnavailableError", "KernelLaunchError",
    "SOURCE_PATH", "kernel_source", "compile_source",
    "TailDims", "Launch", "plan_tail", "chunk_channels", "num_chunks", "workspace_bytes",
    "validate_tail_dims", "validate_tail_arrays", "validate_ortvalues",
    "get_launcher", "TailLauncher", "DeviceArray",
    "tail_numpy", "tail_ortvalues",
]

SOURCE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "liftcam.cu")

# launch-plan constants: keep equal to the #defines in liftcam.cu
BLOCK = 256
MAX_CHUNK = 64
MIN_CHUNK = 8
TARGET_BLOCKS = 1024
PIX_PER_BLOCK = 512
MAX_PIX_BLOCKS = 1024
MAX_GRID_Y = 65535
LOWRES_MAX_BLOCKS = 4096
_INT32_MAX = 2**31 - 1

KERNEL_NAMES = ("liftcam_channel_partial", "liftcam_lowres", "liftcam_upsample_minmax",
                "liftcam_upsample_normalise")


class KernelUnavailableError(LiftcamError, RuntimeError):
    """No usable CUDA backend, driver or GPU for the liftcam kernels."""


class KernelLaunchError(LiftcamError, RuntimeError):
    """Compiling, loading or launching a liftcam kernel failed."""


def kernel_source() -> str:
    with open(SOURCE_PATH, "r", encoding="utf-8") as f:
        return f.read()


# ----------------------------------------------------------------------------- planning
@dataclass(frozen=True)
class TailDims:
    N: int
    K: int
    h: int
    w: int
    H: int
    W: int


@dataclass(frozen=True)
class Launch:
    kernel: str
    grid: Tuple[int, int, int]
    block: Tuple[int, int, int]


def chunk_channels(N: int, K: int) -> int:
    want = -(-(N * K) // TARGET_BLOCKS)
    return int(min(max(want, MIN_CHUNK), MAX_CHUNK))


def num_chunks(N: int, K: int) -> int:
    c = chunk_channels(N, K)
    return -(-K // c)


def _mm_bytes(N: int) -> int:
    return (N * 4 * 4 + 255) & ~255


def workspace_bytes(N: int, K: int, h: int, w: int) -> int:
    """Device workspace of the tail: mm (4N uint32, 256-aligned) + partial (N*C*h*w float32)."""
    return _mm_bytes(N) + N * num_chunks(N, K) * h * w * 4


def plan_tail(d: TailDims) -> List[Launch]:
    """The four launches of the tail, as liftcam.cu's host launcher makes them."""
    C = num_chunks(d.N, d.K)
    gy = min(d.N, MAX_GRID_Y)
    blk = (BLOCK, 1, 1)
    low_blocks = min(-(-(d.N * d.h * d.w) // BLOCK), LOWRES_MAX_BLOCKS)
    gx = min(-(-(d.H * d.W) // PIX_PER_BLOCK), MAX_PIX_BLOCKS)
    return [
        Launch("liftcam_channel_partial", (C, gy, 1), blk),
        Launch("liftcam_lowres", (low_blocks, 1, 1), blk),
        Launch("liftcam_upsample_minmax", (gx, gy, 1), blk),
        Launch("liftcam_upsample_normalise", (gx, gy, 1), blk),
    ]


# ----------------------------------------------------------------------------- validation
def validate_tail_dims(N, K, h, w, H, W) -> TailDims:
    vals = {"N": N, "K": K, "h": h, "w": w, "H": H, "W": W}
    for name, v in vals.items():
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise InputError(f"{name}: expected an int, got {v!r}")
        if int(v) <= 0:
            raise InputError(f"{name}: every size must be > 0, got {name}={int(v)}")
        if int(v) > _INT32_MAX:
            raise InputError(f"{name}={int(v)} does not fit the kernel's 32-bit sizes")
    d = TailDims(*(int(vals[k]) for k in ("N", "K", "h", "w", "H", "W")))
    if d.h * d.w > _INT32_MAX or d.N * d.K > 2**40:
        raise InputError(f"h*w={d.h * d.w} (or N*K) is too large for the kernel")
    return d


def _shape_of(x) -> Tuple[int, ...]:
    s = x.shape() if callable(getattr(x, "shape", None)) else x.shape
    return tuple(int(v) for v in s)


def _check_host_array(x, name: str, shape: Optional[Tuple[int, ...]] = None,
                      ndim: Optional[int] = None) -> np.ndarray:
    if not isinstance(x, np.ndarray):
        raise InputError(f"{name}: expected a numpy array, got {type(x).__name__}")
    if x.dtype != np.float32:
        raise InputError(f"{name}: expected dtype float32, got {x.dtype}")
    if not x.flags.c_contiguous:
        raise InputError(f"{name}: expected a C-contiguous array "
                         f"(use np.ascontiguousarray)")
    if ndim is not None and x.ndim != ndim:
        raise InputError(f"{name}: expected {ndim} dimensions, got shape {x.shape}")
    if shape is not None and tuple(x.shape) != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)}, got {tuple(x.shape)}")
    if x.size == 0:
        raise InputError(f"{name}: empty array (shape {x.shape}); sizes must be > 0")
    return x


def _parse_size(size) -> Tuple[int, int]:
    if isinstance(size, (int, np.integer)) and not isinstance(size, bool):
        return int(size), int(size)
    try:
        H, W = (int(v) for v in size)
    except Exception as exc:
        raise InputError(f"size: expected an int or (H, W), got {size!r}") from exc
    return H, W


def validate_tail_arrays(A, M=None, weights=None, size=None) -> TailDims:
    """Host arrays: A (N,K,h,w) float32; exactly one of M (N,K,h,w) / weights (N,K)."""
    if (M is None) == (weights is None):
        raise InputError("give exactly one of M (multipliers, LIFT-CAM) and weights (N, K)")
    _check_host_array(A, "A", ndim=4)
    N, K, h, w = A.shape
    if M is not None:
        _check_host_array(M, "M", shape=A.shape)
    else:
        _check_host_array(weights, "weights", shape=(N, K))
    if size is None:
        raise InputError("size: the output (H, W) is required")
    H, W = _parse_size(size)
    return validate_tail_dims(N, K, h, w, H, W)


def _ort_check(ov, name: str, shape=None, ndim=None) -> Tuple[int, ...]:
    for attr in ("data_ptr", "device_name", "shape", "data_type"):
        if not callable(getattr(ov, attr, None)):
            raise InputError(f"{name}: expected an onnxruntime.OrtValue, got {type(ov).__name__}")
    dev = str(ov.device_name()).lower()
    if dev != "cuda":
        raise InputError(f"{name}: the OrtValue lives on {dev!r}; the kernel needs device "
                         f"'cuda' (OrtValue.ortvalue_from_numpy(arr, 'cuda', 0))")
    dt = str(ov.data_type())
    if dt != "tensor(float)":
        raise InputError(f"{name}: expected tensor(float) (float32), got {dt}")
    s = _shape_of(ov)
    if ndim is not None and len(s) != ndim:
        raise InputError(f"{name}: expected {ndim} dimensions, got shape {s}")
    if shape is not None and s != tuple(shape):
        raise InputError(f"{name}: expected shape {tuple(shape)}, got {s}")
    if any(v <= 0 for v in s):
        raise InputError(f"{name}: every size must be > 0, got shape {s}")
    return s


def validate_ortvalues(A, M, maps, *, weights=None, alpha=None, low_res=None) -> TailDims:
    """OrtValues (device 'cuda', float32): A (N,K,h,w); M like A or weights (N,K);
    maps (N,H,W); optional alpha (N,K) and low_res (N,h,w) outputs."""
    if (M is None) == (weights is None):
        raise InputError("give exactly one of M (multipliers, LIFT-CAM) and weights (N, K)")
    N, K, h, w = _ort_check(A, "A", ndim=4)
    if M is not None:
        _ort_check(M, "M", shape=(N, K, h, w))
    else:
        _ort_check(weights, "weights", shape=(N, K))
    s = _ort_check(maps, "maps", ndim=3)
    if s[0] != N:
        raise InputError(f"maps: batch {s[0]} differs from A's batch {N}")
    if alpha is not None:
        if M is None:
            raise InputError("alpha: an output only when M is given (with weights, "
                             "the weights are the coefficients)")
        _ort_check(alpha, "alpha", shape=(N, K))
    if low_res is not None:
        _ort_check(low_res, "low_res", shape=(N, h, w))
    return validate_tail_dims(N, K, h, w, s[1], s[2])


# ----------------------------------------------------------------------------- compilation
def _nvrtc():
    try:
        from cuda.bindings import nvrtc  # type: ignore
    except Exception:
        try:
            from cuda import nvrtc  # type: ignore  # cuda-python < 12.6 layout
        except Exception as exc:
            raise KernelUnavailableError(
                "NVRTC is not available: install cuda-python (pip install 'liftcam[gpu]' "
                "or pip install cuda-python)") from exc
    return nvrtc


def _nvrtc_check(nvrtc, result, prog=None, what="nvrtc"):
    err = result[0] if isinstance(result, tuple) else result
    if int(err) != 0:
        log = ""
        if prog is not None:
            try:
                _, n = nvrtc.nvrtcGetProgramLogSize(prog)
                buf = bytearray(n)
                nvrtc.nvrtcGetProgramLog(prog, buf)
                log = buf.decode(errors="replace").rstrip("\x00 ")
            except Exception:  # pragma: no cover
                pass
        raise KernelLaunchError(f"{what} failed ({err}). {log}")
    if not isinstance(result, tuple) or len(result) == 1:
        return None
    return result[1] if len(result) == 2 else result[1:]


def nvrtc_supported_archs() -> List[int]:
    nvrtc = _nvrtc()
    return list(_nvrtc_check(nvrtc, nvrtc.nvrtcGetSupportedArchs(), what="nvrtcGetSupportedArchs"))


def compile_source(arch: str = "sm_90", target: str = "cubin",
                   extra_options: Sequence[str] = (), return_log: bool = False):
    """NVRTC-compile liftcam.cu. arch 'sm_XY' (cubin or ptx) or 'compute_XY' (ptx).
    No GPU and no driver needed. Returns bytes (and the compiler log if return_log)."""
    if target not in ("cubin", "ptx"):
        raise InputError(f"target: 'cubin' or 'ptx', got {target!r}")
    nvrtc = _nvrtc()
    src = kernel_source().encode()
    prog = _nvrtc_check(nvrtc, nvrtc.nvrtcCreateProgram(src, b"liftcam.cu", 0, [], []),
                        what="nvrtcCreateProgram")
    try:
        opts = [f"--gpu-architecture={arch}".encode(), b"--std=c++11"]
        opts += [o.encode() for o in extra_options]
        _nvrtc_check(nvrtc, nvrtc.nvrtcCompileProgram(prog, len(opts), opts), prog,
                     what=f"NVRTC compile of liftcam.cu for {arch}")
        _, n = nvrtc.nvrtcGetProgramLogSize(prog)
        # NVRTC writes into the buffer: it must be a fresh writable bytearray. A bytes object
        # such as b" " * n is immutable, and for n == 1 it is CPython's shared b" ", which
        # would then read b"\x00" everywhere in the process.
        logbuf = bytearray(n)
        nvrtc.nvrtcGetProgramLog(prog, logbuf)
        log = logbuf.decode(errors="replace").rstrip("\x00 ")
        if target == "cubin":
            n = _nvrtc_check(nvrtc, nvrtc.nvrtcGetCUBINSize(prog), what="nvrtcGetCUBINSize")
            buf = bytearray(n)
            _nvrtc_check(nvrtc, nvrtc.nvrtcGetCUBIN(prog, buf), what="nvrtcGetCUBIN")
        else:
            n = _nvrtc_check(nvrtc, nvrtc.nvrtcGetPTXSize(prog), what="nvrtcGetPTXSize")
            buf = bytearray(n)
            _nvrtc_check(nvrtc, nvrtc.nvrtcGetPTX(prog, buf), what="nvrtcGetPTX")
    finally:
        nvrtc.nvrtcDestroyProgram(prog)
    buf = bytes(buf)
    return (buf, log) if return_log else buf


def _compile_for(cc: Tuple[int, int]) -> Tuple[bytes, str]:
    """(image, kind) for a device of compute capability cc: cubin if NVRTC knows the
    architecture, else PTX for the newest one it knows below (JIT-compiled by the driver)."""
    want = cc[0] * 10 + cc[1]
    archs = nvrtc_supported_archs()
    if want in archs:
        return compile_source(f"sm_{want}", "cubin"), "cubin"
    lower = [a for a in archs if a <= want]
    if not lower:
        raise KernelUnavailableError(f"NVRTC supports {archs}; the GPU is sm_{want}")
    return compile_source(f"compute_{max(lower)}", "ptx"), "ptx"


# ----------------------------------------------------------------------------- backends
def _u64(p) -> np.uint64:
    return np.uint64(int(p))


class _CudaPythonBackend:
    name = "cuda-python"

    def __init__(self, device: int):
        try:
            try:
                from cuda.core import Device, LaunchConfig, ObjectCode, launch  # type: ignore
                import cuda.core as cc  # type: ignore
            except ImportError:
                from cuda.core.experimental import (  # type: ignore
                    Device, LaunchConfig, ObjectCode, launch)
                import cuda.core.experimental as cc  # type: ignore
            from cuda.bindings import driver  # type: ignore
        except Exception as exc:
            raise KernelUnavailableError(
                "backend 'cuda-python' needs the cuda-python package (cuda.core and "
                "cuda.bindings): pip install 'liftcam[gpu]'") from exc
        self._driver = driver
        self._LaunchConfig, self._launch, self._cc = LaunchConfig, launch, cc
        try:
            self.dev = Device(device)
            self.dev.set_current()          # the device's primary context
            cap = self.dev.compute_capability
        except Exception as exc:
            raise KernelUnavailableError(
                f"no usable CUDA device {device} (driver or GPU missing?): {exc}") from exc
        self.cc = (int(cap[0]), int(cap[1]))
        image, kind = _compile_for(self.cc)
        obj = ObjectCode.from_cubin(image) if kind == "cubin" else ObjectCode.from_ptx(image)
        self.kernels = {n: obj.get_kernel(n) for n in KERNEL_NAMES}

    def _check(self, res, what):
        err = res[0] if isinstance(res, tuple) else res
        if int(err) != 0:
            raise KernelLaunchError(f"{what} failed: {err}")
        return res[1] if isinstance(res, tuple) and len(res) > 1 else None

    def activate(self):
        self.dev.set_current()

    def deactivate(self):
        pass

    def stream(self, handle: int):
        if not handle:
            return self._cc.LEGACY_DEFAULT_STREAM
        return self._cc.Stream.from_handle(int(handle))

    def launch(self, kernel: str, grid, block, args, stream: int):
        cfg = self._LaunchConfig(grid=tuple(grid), block=tuple(block))
        self._launch(self.stream(stream), cfg, self.kernels[kernel], *args)

    def alloc(self, nbytes: int) -> int:
        return int(self._check(self._driver.cuMemAlloc(max(int(nbytes), 1)), "cuMemAlloc"))

    def free(self, ptr: int):
        self._check(self._driver.cuMemFree(int(ptr)), "cuMemFree")

    def htod(self, ptr: int, arr: np.ndarray):
        self._check(self._driver.cuMemcpyHtoD(int(ptr), arr.ctypes.data, arr.nbytes),
                    "cuMemcpyHtoD")

    def dtoh(self, arr: np.ndarray, ptr: int):
        self._check(self._driver.cuMemcpyDtoH(arr.ctypes.data, int(ptr), arr.nbytes),
                    "cuMemcpyDtoH")

    def synchronize(self, stream: int = 0):
        if stream:
            self._check(self._driver.cuStreamSynchronize(int(stream)), "cuStreamSynchronize")
        else:
            self._check(self._driver.cuCtxSynchronize(), "cuCtxSynchronize")


class _PyCudaBackend:
    name = "pycuda"

    def __init__(self, device: int):
        try:
            import pycuda.driver as drv  # type: ignore
        except Exception as exc:
            raise KernelUnavailableError(
                "backend 'pycuda' needs pycuda: pip install pycuda") from exc
        self.drv = drv
        try:
            drv.init()
            self.ctx = drv.Device(device).retain_primary_context()
            cap = drv.Device(device).compute_capability()
        except Exception as exc:
            raise KernelUnavailableError(
                f"no usable CUDA device {device} (driver or GPU missing?): {exc}") from exc
        self.cc = (int(cap[0]), int(cap[1]))
        self.ctx.push()
        try:
            try:
                image, _kind = _compile_for(self.cc)
            except KernelUnavailableError:
                from pycuda.compiler import compile as nvcc_compile  # type: ignore
                image = nvcc_compile(kernel_source(), no_extern_c=True,
                                     arch=f"sm_{self.cc[0]}{self.cc[1]}")
            self.module = drv.module_from_buffer(image)
            self.kernels = {n: self.module.get_function(n) for n in KERNEL_NAMES}
        finally:
            self.ctx.pop()

    def activate(self):
        self.ctx.push()

    def deactivate(self):
        self.drv.Context.pop()

    def launch(self, kernel: str, grid, block, args, stream: int):
        if stream:
            raise InputError("backend 'pycuda' launches on the default stream only "
                             "(stream=0); use backend='cuda-python' for other streams")
        self.kernels[kernel](*args, grid=tuple(int(g) for g in grid[:2]),
                             block=tuple(int(b) for b in block))

    def alloc(self, nbytes: int) -> int:
        a = self.drv.mem_alloc(max(int(nbytes), 1))
        ptr = int(a)
        self._live = getattr(self, "_live", {})
        self._live[ptr] = a
        return ptr

    def free(self, ptr: int):
        a = getattr(self, "_live", {}).pop(int(ptr), None)
        if a is not None:
            a.free()

    def htod(self, ptr: int, arr: np.ndarray):
        self.drv.memcpy_htod(int(ptr), arr)

    def dtoh(self, arr: np.ndarray, ptr: int):
        self.drv.memcpy_dtoh(arr, int(ptr))

    def synchronize(self, stream: int = 0):
        self.drv.Context.synchronize()


_BACKENDS = {"cuda-python": _CudaPythonBackend, "cuda": _CudaPythonBackend,
             "cuda.core": _CudaPythonBackend, "pycuda": _PyCudaBackend}


# ----------------------------------------------------------------------------- launcher
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
        if backend not in _BACKENDS:
            raise InputError(f"backend: unknown {backend!r}; one of {sorted(_BACKENDS)}")
        self.backend = backend
        self.device = int(device)
        self._b = _BACKENDS[backend](self.device)
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
        partial = ws + _mm_bytes(d.N)
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
    if backend not in _BACKENDS:
        raise InputError(f"backend: unknown {backend!r}; one of {sorted(_BACKENDS)}")
    key = ("cuda-python" if _BACKENDS[backend] is _CudaPythonBackend else backend, int(device))
    with _LAUNCHERS_LOCK:
        if key not in _LAUNCHERS:
            _LAUNCHERS[key] = TailLauncher(key[0], key[1])
        return _LAUNCHERS[key]


# ----------------------------------------------------------------------------- conveniences
def tail_numpy(A: np.ndarray, M: Optional[np.ndarray] = None, *, weights=None, size=None,
               backend: str = "cuda-python", device: int = 0, poison_outputs: bool = False):
    """Host arrays in and out (copies; for tests). Returns (alpha (N,K), low_res (N,h,w),
    maps (N,H,W)); with weights, alpha is the weights. poison_outputs fills the device
    outputs with NaN before launching."""
    d = validate_tail_arrays(A, M, weights, size)
    lau = get_launcher(backend, device)
    bufs = []
    try:
        dA = lau.to_device(A); bufs.append(dA)
        dW = lau.to_device(M if M is not None else weights); bufs.append(dW)
        outs = {"alpha": (d.N, d.K), "low": (d.N, d.h, d.w), "maps": (d.N, d.H, d.W)}
        dev = {}
        for k, s in outs.items():
            if k == "alpha" and M is None:
                continue
            dev[k] = lau.empty(s); bufs.append(dev[k])
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


def gpu_available() -> Tuple[bool, str]:
    """(True, '') when a CUDA device is usable by the default backend (cuda-python:
    cuda.core + cuda.bindings, NVRTC, driver, one device or more), else (False, reason)."""
    try:
        from cuda.bindings import driver  # type: ignore
    except Exception:
        return False, "cuda-python (cuda.bindings) is not installed"
    try:
        import cuda.core  # type: ignore  # noqa: F401
    except Exception:
        try:
            import cuda.core.experimental  # type: ignore  # noqa: F401
        except Exception:
            return False, "cuda-python's cuda.core is not installed (pip install cuda-core)"
    try:
        _nvrtc()
    except KernelUnavailableError as exc:
        return False, str(exc)
    try:
        err, = driver.cuInit(0)
        if int(err) != 0:
            return False, f"cuInit failed: {err}"
        err, n = driver.cuDeviceGetCount()
        if int(err) != 0 or n < 1:
            return False, f"no CUDA device ({err}, count={n})"
    except Exception as exc:  # libcuda missing
        return False, f"CUDA driver not available: {exc}"
    return True, ""

