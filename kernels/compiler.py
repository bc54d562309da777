"""NVRTC compilation of ``kernels/liftcam.cu`` (no GPU and no driver needed).

NVRTC (``cuda.bindings.nvrtc``) compiles the source to a cubin for a device's ``sm_XY``, or to
PTX for the newest architecture NVRTC knows when the device is newer. The source is the same
file nvcc compiles (the host launchers at its end are hidden from NVRTC). Importing this module
needs numpy only; a missing cuda-python is a clear :class:`KernelUnavailableError` at the
first compile.
"""
from __future__ import annotations

import os
from typing import List, Sequence, Tuple

from liftcam.engine.errors import InputError, LiftcamError

__all__ = ["SOURCE_PATH", "KERNEL_NAMES", "KernelUnavailableError", "KernelLaunchError",
           "kernel_source", "load_nvrtc", "nvrtc_supported_archs", "compile_source",
           "compile_for_device"]

SOURCE_PATH = os.path.join(os.path.dirname(os.path.abspath(__file__)), "liftcam.cu")

#: the extern "C" __global__ kernels of liftcam.cu, in launch order
KERNEL_NAMES = ("liftcam_channel_partial", "liftcam_lowres", "liftcam_upsample_minmax",
                "liftcam_upsample_normalise")


class KernelUnavailableError(LiftcamError, RuntimeError):
    """No usable CUDA backend, driver or GPU for the liftcam kernels."""


class KernelLaunchError(LiftcamError, RuntimeError):
    """Compiling, loading or launching a liftcam kernel failed."""


def kernel_source() -> str:
    with open(SOURCE_PATH, "r", encoding="utf-8") as f:
        return f.read()


def load_nvrtc():
    """The NVRTC bindings of cuda-python (either module layout)."""
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
    nvrtc = load_nvrtc()
    return list(_nvrtc_check(nvrtc, nvrtc.nvrtcGetSupportedArchs(), what="nvrtcGetSupportedArchs"))


def compile_source(arch: str = "sm_90", target: str = "cubin",
                   extra_options: Sequence[str] = (), return_log: bool = False):
    """NVRTC-compile liftcam.cu. arch 'sm_XY' (cubin or ptx) or 'compute_XY' (ptx).
    No GPU and no driver needed. Returns bytes (and the compiler log if return_log)."""
    if target not in ("cubin", "ptx"):
        raise InputError(f"target: 'cubin' or 'ptx', got {target!r}")
    nvrtc = load_nvrtc()
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


def compile_for_device(cc: Tuple[int, int]) -> Tuple[bytes, str]:
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
