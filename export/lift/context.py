"""The context every multiplier rule gets (the rules themselves are listed in ``registry.py``).

A rule is ``fn(ctx: RuleContext, m_outs: list[str | None]) -> list[str | None]``: given the
names of the multipliers of the node's outputs (``None`` for an output nobody downstream
uses), it emits backward nodes with ``ctx.b`` and returns one multiplier name per node
input (``None`` for inputs that carry none: weights, shapes, constants).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
import onnx
from onnx import helper

from liftcam.engine.errors import ExportError
from liftcam.export.graph import GraphBuilder

EPS = 1e-10  # Captum's DeepLift eps: below it, the Rescale rule falls back to the gradient

Rule = Callable[["RuleContext", list], list]


@dataclass
class RuleContext:
    """What a rule may look at: the node, forward values at the reference, static shapes."""

    b: GraphBuilder
    node: onnx.NodeProto
    rule: str                       # "deeplift" | "gradient"
    ref: dict                       # tensor name -> value at A = 0, batch 1 (x0 for deeplift)
    shapes1: dict                   # tensor name -> shape at batch 1
    shapes2: dict                   # tensor name -> shape at batch 2
    active: set                     # tensors that carry multipliers (depend on the activation)
    varies: set                     # any dtype whose values depend on the activation's (⊇ active)
    _x0_cache: dict = field(default_factory=dict)

    # ---------------------------------------------------------------- node
    @property
    def inputs(self) -> list[str]:
        return list(self.node.input)

    @property
    def outputs(self) -> list[str]:
        return list(self.node.output)

    @property
    def deeplift(self) -> bool:
        return self.rule == "deeplift"

    def attr(self, name: str, default=None):
        for a in self.node.attribute:
            if a.name == name:
                return helper.get_attribute_value(a)
        return default

    def where(self) -> str:
        return f"{self.node.op_type} node {self.node.name!r}"

    def fail(self, why: str):
        raise ExportError(f"{self.where()}: {why}")

    # --------------------------------------------------------------- values
    def is_active(self, name: str) -> bool:
        return bool(name) and name in self.active

    def varies_with_activation(self, name: str) -> bool:
        """Whether the values (not only the shape) of ``name`` depend on the activation; unlike
        :meth:`is_active` this covers boolean and integer tensors (a mask ``A > t``, an index
        ``ArgMax(A)``)."""
        return bool(name) and name in self.varies

    def value(self, name: str) -> np.ndarray:
        """Export-time value of a tensor that does not depend on the activation."""
        if not name:
            return None
        if self.varies_with_activation(name):
            self.fail(f"input {name!r} must be a constant (it depends on the activation)")
        return self.ref[name]

    def x0(self, name: str) -> str:
        """Name of the reference value x0 of a tensor (a batch-1 constant for active tensors)."""
        if name not in self.active:
            return name
        if name not in self._x0_cache:
            self._x0_cache[name] = self.b.const(np.ascontiguousarray(self.ref[name]), f"{name}_ref")
        return self._x0_cache[name]

    def batch_axis(self, name: str) -> Optional[int]:
        s1, s2 = self.shapes1[name], self.shapes2[name]
        diff = [i for i, (a, c) in enumerate(zip(s1, s2)) if a != c]
        return diff[0] if diff else None

    def rank(self, name: str) -> int:
        return len(self.shapes1[name])

    # -------------------------------------------------------------- helpers
    def unbroadcast(self, m: str, inp: str, out: str) -> str:
        """Sum ``m`` (shaped like ``out``) over the axes ``inp`` was broadcast along."""
        return self.unbroadcast_shape(m, self.shapes2[out], self.shapes2[inp])

    def unbroadcast_shape(self, m: str, m_shape, target_shape) -> str:
        """Sum ``m`` (static batch-2 shape ``m_shape``) down to ``target_shape`` (numpy
        broadcasting)."""
        s_in, s_out = tuple(target_shape), tuple(m_shape)
        if s_in == s_out:
            return m
        r = len(s_out) - len(s_in)
        axes = list(range(r)) + [r + i for i, d in enumerate(s_in) if d == 1 and s_out[r + i] != 1]
        if axes:
            m = self.b.reduce("ReduceSum", m, axes, keepdims=1)
        if r > 0:
            m = self.b.squeeze(m, list(range(r)))
        return m

    def zeros_like(self, name: str) -> str:
        return self.b.zeros_like(name)

    def reshape_like(self, m: str, name: str) -> str:
        return self.b.op("Reshape", m, self.b.op("Shape", name))

    def rescale(self, m: str, x: str, y: str, deriv: str) -> str:
        """deeplift: Rescale rule m*(y-y0)/(x-x0), gradient fallback where |x-x0|<eps.
        gradient: m*f'(x). ``deriv`` is the name of f'(x)."""
        b = self.b
        if not self.deeplift:
            return b.op("Mul", m, deriv)
        dx = b.op("Sub", x, self.x0(x))
        dy = b.op("Sub", y, self.x0(y))
        small = b.op("Less", b.op("Abs", dx), b.scalar(EPS, "eps"))
        safe = b.op("Where", small, b.scalar(1.0, "one"), dx)
        mult = b.op("Where", small, deriv, b.op("Div", dy, safe))
        return b.op("Mul", m, mult)
