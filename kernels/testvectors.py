"""One set of test vectors for the CAM tail and the Rescale multiplier.

The numpy specification (``liftcam.engine.tail``) and the CUDA kernel (``kernels/liftcam.cu``)
are checked on the same cases from here: ``tests/test_tail.py`` against torch / OpenCV /
float64 loops on CPU, ``tests/test_kernels.py`` kernel-against-numpy on a GPU.

Deterministic: every case carries its seed. numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from liftcam.kernels.launcher import TailDims


@dataclass(frozen=True)
class TailCase(TailDims):
    seed: int

    @property
    def id(self) -> str:
        return f"N{self.N}-K{self.K}-{self.h}x{self.w}-to-{self.H}x{self.W}"


# Odd sizes, N=1, non-square, up- and downsampling, identity size, 1x1 sources, K=1.
TAIL_CASES: List[TailCase] = [
    TailCase(1, 1, 1, 1, 5, 3, 1),
    TailCase(1, 2048, 7, 7, 224, 224, 2),
    TailCase(2, 512, 14, 14, 224, 224, 3),
    TailCase(3, 17, 5, 9, 37, 23, 4),
    TailCase(1, 64, 13, 11, 13, 11, 5),        # same size
    TailCase(2, 33, 31, 29, 8, 7, 6),          # downsampling
    TailCase(4, 8, 6, 10, 3, 41, 7),           # down in y, up in x
    TailCase(5, 3, 1, 7, 9, 1, 8),             # 1-pixel rows / columns
    TailCase(1, 300, 28, 28, 100, 75, 9),
    TailCase(7, 96, 3, 3, 255, 257, 10),
]

# Small cases for float64 brute-force loops (cheap in pure Python).
SMALL_TAIL_CASES: List[TailCase] = [c for c in TAIL_CASES if c.H * c.W * c.N <= 1500]


def make_tail_inputs(case: TailCase) -> Dict[str, np.ndarray]:
    """A (post-ReLU-like, >= 0 with zeros), M (mixed signs), weights (N,K): float32."""
    rng = np.random.default_rng(case.seed)
    shape = (case.N, case.K, case.h, case.w)
    A = np.maximum(rng.standard_normal(shape), 0.0).astype(np.float32)
    M = (rng.standard_normal(shape) * 0.5 + 0.2).astype(np.float32)
    weights = (rng.standard_normal((case.N, case.K)) + 0.1).astype(np.float32)
    return {"A": A, "M": M, "weights": weights}


def make_constant_case(N: int = 2, K: int = 4, h: int = 5, w: int = 6):
    """A tail whose low-res map is constant zero (all-negative weights, A >= 0)."""
    rng = np.random.default_rng(1234)
    A = np.abs(rng.standard_normal((N, K, h, w))).astype(np.float32)
    M = -np.abs(rng.standard_normal((N, K, h, w))).astype(np.float32) - 0.1
    return {"A": A, "M": M, "weights": -np.ones((N, K), np.float32)}


# ----------------------------------------------------------------------------- Rescale
@dataclass(frozen=True)
class RescaleCase:
    activation: str
    alpha: float
    beta: float
    shape: tuple
    x0_mode: str          # "scalar" | "channel" | "sample" | "full"
    seed: int

    @property
    def id(self) -> str:
        return f"{self.activation}-{self.x0_mode}-{'x'.join(map(str, self.shape))}"


RESCALE_CASES: List[RescaleCase] = [
    RescaleCase("relu", 0.0, 0.0, (2, 3, 5, 7), "sample", 11),
    RescaleCase("relu", 0.0, 0.0, (1, 8, 4, 4), "scalar", 12),
    RescaleCase("leaky_relu", 0.01, 0.0, (3, 4, 3, 3), "channel", 13),
    RescaleCase("elu", 1.0, 0.0, (2, 5, 2, 3), "full", 14),
    RescaleCase("sigmoid", 0.0, 0.0, (2, 3, 4, 1), "sample", 15),
    RescaleCase("tanh", 0.0, 0.0, (1, 7, 3, 5), "channel", 16),
    RescaleCase("softplus", 0.0, 0.0, (2, 2, 9, 9), "full", 17),
    RescaleCase("clip", 0.0, 6.0, (2, 3, 4, 4), "sample", 18),        # ReLU6
    RescaleCase("hardsigmoid", 0.2, 0.5, (1, 4, 5, 5), "channel", 19),  # ONNX defaults
    RescaleCase("hardswish", 0.0, 0.0, (2, 6, 3, 3), "sample", 20),
    RescaleCase("relu", 0.0, 0.0, (1000003,), "full", 21),             # long 1-d
]


def x0_shape(shape: tuple, mode: str) -> tuple:
    """The shape of x0 for a broadcast mode (x is (N, C, *inner))."""
    if mode == "scalar":
        return (1,)
    if mode == "channel":
        return (shape[1],) if len(shape) > 1 else (1,)
    if mode == "sample":
        return tuple(shape[1:]) if len(shape) > 1 else tuple(shape)
    if mode == "full":
        return tuple(shape)
    raise ValueError(mode)


def broadcast_x0(x0: np.ndarray, shape: tuple, mode: str) -> np.ndarray:
    if mode == "scalar":
        return np.broadcast_to(x0.reshape(()), shape)
    if mode == "channel":
        if len(shape) == 1:
            return np.broadcast_to(x0.reshape(()), shape)
        return np.broadcast_to(x0.reshape((1, shape[1]) + (1,) * (len(shape) - 2)), shape)
    if mode == "sample":
        if len(shape) == 1:
            return x0.reshape(shape)
        return np.broadcast_to(x0.reshape((1,) + tuple(shape[1:])), shape)
    return x0.reshape(shape)


def make_rescale_inputs(case: RescaleCase) -> Dict[str, np.ndarray]:
    """m_out, x, x0 (float32); about 10% of x equal x0 exactly (the gradient fallback)."""
    rng = np.random.default_rng(case.seed)
    m_out = rng.standard_normal(case.shape).astype(np.float32)
    x0 = (rng.standard_normal(x0_shape(case.shape, case.x0_mode)) * 2).astype(np.float32)
    x = (rng.standard_normal(case.shape) * 3).astype(np.float32)
    x0b = broadcast_x0(x0, case.shape, case.x0_mode)
    same = rng.random(case.shape) < 0.1
    x = np.where(same, x0b, x).astype(np.float32)
    return {"m_out": m_out, "x": x, "x0": x0}


# ----------------------------------------------------------------------------- numpy Rescale
def _act(name: str, x: np.ndarray, a: float, b: float) -> np.ndarray:
    f32 = np.float32
    a, b = f32(a), f32(b)
    with np.errstate(over="ignore", invalid="ignore"):
        if name == "relu":
            return np.where(x > 0, x, f32(0))
        if name == "leaky_relu":
            return np.where(x > 0, x, a * x)
        if name == "elu":
            return np.where(x > 0, x, a * np.expm1(x))
        if name == "sigmoid":
            return f32(1) / (f32(1) + np.exp(-x))
        if name == "tanh":
            return np.tanh(x)
        if name == "softplus":
            return np.where(x > 20, x, np.log1p(np.exp(np.minimum(x, f32(20)))))
        if name in ("clip", "relu6"):
            return np.minimum(np.maximum(x, a), b)
        if name == "hardsigmoid":
            return np.minimum(np.maximum(a * x + b, f32(0)), f32(1))
        if name == "hardswish":
            return x * np.minimum(np.maximum(x / f32(6) + f32(0.5), f32(0)), f32(1))
    raise ValueError(name)


def _act_grad(name: str, x: np.ndarray, a: float, b: float) -> np.ndarray:
    f32 = np.float32
    a, b = f32(a), f32(b)
    one, zero = f32(1), f32(0)
    if name == "relu":
        return np.where(x > 0, one, zero)
    if name == "leaky_relu":
        return np.where(x > 0, one, a)
    if name == "elu":
        return np.where(x > 0, one, a * np.exp(np.minimum(x, f32(0))))
    if name == "sigmoid":
        s = _act("sigmoid", x, 0, 0)
        return s * (one - s)
    if name == "tanh":
        t = np.tanh(x)
        return one - t * t
    if name == "softplus":
        return np.where(x > 20, one, _act("sigmoid", x, 0, 0))
    if name in ("clip", "relu6"):
        return np.where((x > a) & (x < b), one, zero)
    if name == "hardsigmoid":
        y = a * x + b
        return np.where((y > 0) & (y < 1), a, zero)
    if name == "hardswish":
        return np.where(x < -3, zero, np.where(x <= 3, x / f32(3) + f32(0.5), one))
    raise ValueError(name)


def rescale_reference(m_out: np.ndarray, x: np.ndarray, x0: np.ndarray, activation: str,
                      a: float, b: float, x0_mode: str) -> np.ndarray:
    """numpy float32 Rescale rule, the specification of the kernel ``liftcam_rescale``:
    ``m * (f(x) - f(x0)) / (x - x0)``, or ``m * f'(x)`` where ``|x - x0| < 1e-10``."""
    x = np.asarray(x, np.float32)
    m_out = np.asarray(m_out, np.float32)
    x0b = broadcast_x0(np.asarray(x0, np.float32), x.shape, x0_mode).astype(np.float32)
    d = x - x0b
    small = np.abs(d) < np.float32(1e-10)
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = (_act(activation, x, a, b) - _act(activation, x0b, a, b)) / np.where(
            small, np.float32(1), d)
    out = np.where(small, m_out * _act_grad(activation, x, a, b), m_out * ratio)
    return out.astype(np.float32)
