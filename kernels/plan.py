"""The tail's sizes: argument checks and the launch plan of ``kernels/liftcam.cu``.

Pure Python and numpy (no GPU needed): the checks run before anything touches CUDA, and the
plan is the one the host launchers in ``liftcam.cu`` make (:func:`plan_tail`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

import numpy as np

from liftcam.engine.errors import InputError

__all__ = ["TailDims", "Launch", "chunk_channels", "num_chunks", "mm_bytes", "workspace_bytes",
           "plan_tail", "validate_tail_dims", "validate_tail_arrays", "validate_ortvalues"]

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


def mm_bytes(N: int) -> int:
    return (N * 4 * 4 + 255) & ~255


def workspace_bytes(N: int, K: int, h: int, w: int) -> int:
    """Device workspace of the tail: mm (4N uint32, 256-aligned) + partial (N*C*h*w float32)."""
    return mm_bytes(N) + N * num_chunks(N, K) * h * w * 4


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


# ----------------------------------------------------------------------------- argument checks
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
