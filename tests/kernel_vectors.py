"""One set of test vectors for the CAM tail.

The numpy specification (``liftcam.engine.tail``) and the CUDA kernel (``kernels/liftcam.cu``)
are checked on the same cases from here: ``tests/test_tail.py`` against torch / OpenCV /
float64 loops on CPU, ``tests/test_kernels.py`` kernel-against-numpy on a GPU.

Deterministic: every case carries its seed. numpy only.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

import numpy as np

from liftcam.kernels.plan import TailDims


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
