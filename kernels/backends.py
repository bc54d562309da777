"""The CUDA backends the launcher runs on, and :func:`gpu_available`.

Importing this module needs numpy only: cuda-python / pycuda, the CUDA driver and a GPU are
looked for when a backend is created, and their absence is a clear
:class:`~liftcam.kernels.compiler.KernelUnavailableError`.

Backends (``backend=``):

- ``"cuda-python"`` (default; aliases ``"cuda"``, ``"cuda.core"``): NVIDIA cuda-python,
  ``cuda.core`` (``Device(i).set_current()`` = the device's *primary* context, the one the
  CUDA runtime -- and so ONNX Runtime's CUDA EP -- uses) and ``cuda.bindings`` (NVRTC and
  driver memory calls).
- ``"pycuda"``: ``pycuda.driver.Device(i).retain_primary_context()`` (never
  ``pycuda.autoinit``), pushed around every call. Launches go to the legacy default stream
  only. Compiles with NVRTC when cuda.bindings is there, else with ``pycuda.compiler`` (nvcc).

A backend compiles liftcam.cu for its device and offers launch, alloc / free, copies and
synchronize on raw device pointers (plain Python ints).
"""
from __future__ import annotations

from typing import Tuple

import numpy as np

from liftcam.engine.errors import InputError
from liftcam.kernels.compiler import (
    KERNEL_NAMES,
    KernelLaunchError,
    KernelUnavailableError,
    compile_for_device,
    kernel_source,
    load_nvrtc,
)

__all__ = ["BACKENDS", "resolve_backend", "gpu_available"]


class _CudaPythonBackend:
    name = "cuda-python"

    def __init__(self, device: int):
        try:
            try:
                import cuda.core as cc  # type: ignore
                from cuda.core import Device, LaunchConfig, ObjectCode, launch  # type: ignore
            except ImportError:
                import cuda.core.experimental as cc  # type: ignore
                from cuda.core.experimental import Device, LaunchConfig, ObjectCode, launch  # type: ignore
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
        image, kind = compile_for_device(self.cc)
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
                image, _kind = compile_for_device(self.cc)
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


BACKENDS = {"cuda-python": _CudaPythonBackend, "cuda": _CudaPythonBackend,
            "cuda.core": _CudaPythonBackend, "pycuda": _PyCudaBackend}


def resolve_backend(backend: str) -> str:
    """The canonical name of a backend (the aliases of cuda-python give "cuda-python")."""
    if backend not in BACKENDS:
        raise InputError(f"backend: unknown {backend!r}; one of {sorted(BACKENDS)}")
    return "cuda-python" if BACKENDS[backend] is _CudaPythonBackend else backend


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
        load_nvrtc()
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
