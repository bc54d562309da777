"""Normalisations over the sample's own statistics: LayerNormalization, InstanceNormalization,
GroupNormalization (PyTorch's GroupNorm at opset < 18 exports as Reshape -> InstanceNorm ->
Reshape -> Mul -> Add, which the InstanceNormalization rule covers).

All three are ``y = xhat * scale + bias`` with ``xhat = (x - mean(x)) * r``,
``r = 1 / sqrt(var(x) + eps)``, the statistics over a set of axes of a *view* of x (GroupNorm:
x reshaped to (N, G, -1)). The rule is that decomposition run backwards through the existing
primitive rules:

- centring ``d = x - mean(x)`` and the means are linear: the multiplier moves back like the
  gradient (``m_x = m_d - mean(m_d)``);
- the square ``d * d`` and the product ``d * r`` have two varying operands: deeplift takes the
  Shapley split of ``rules_products`` (``m_d = m (d + d0)`` for the square,
  ``m_d = m (r + r0) / 2`` and ``m_r = sum(m (d + d0) / 2)`` for the product);
- ``r = (v + eps) ** -0.5`` is element-wise: the Rescale rule ``(r - r0) / (v - v0)``, with the
  derivative ``-r**3 / 2`` where ``|v - v0| < eps``.

Every step sums exactly to its own difference from the reference, so completeness holds.
When the reference is constant over the normalised axes (the zero reference) ``d0 = 0`` and
the product takes its exact d-first split ``m_d = m r`` instead, free of ``r0 = 1/sqrt(eps)``.
With ``d0 = d``, ``r0 = r`` the same formulas are the gradient (the ``gradient`` rule).
"""
from __future__ import annotations

import numpy as np

from liftcam.export.lift.context import EPS, RuleContext


def _constant_params(ctx: RuleContext, names) -> None:
    for t in names:
        if t and ctx.is_active(t):
            ctx.fail("the scale and bias of a normalisation must be constants")


def _stats_np(x0: np.ndarray, axes, eps: float):
    x0 = np.asarray(x0, np.float64)
    d0 = x0 - x0.mean(axis=tuple(axes), keepdims=True)
    v0 = (d0 * d0).mean(axis=tuple(axes), keepdims=True)
    return d0, v0 + eps, 1.0 / np.sqrt(v0 + eps)


def _backward(ctx: RuleContext, m_xhat: str, xv: str, x0v: np.ndarray, axes, eps: float) -> str:
    """The multiplier of the view ``xv`` given the multiplier ``m_xhat`` of the normalised view
    (both shaped like ``xv``); ``x0v``: the reference value of the view (batch 1)."""
    b = ctx.b
    mean = b.reduce("ReduceMean", xv, axes, keepdims=1)
    d = b.op("Sub", xv, mean)
    s = b.op("Add", b.reduce("ReduceMean", b.op("Mul", d, d), axes, keepdims=1),
             b.scalar(eps, "norm_eps"))
    r = b.op("Div", b.scalar(1.0, "one"), b.op("Sqrt", s))
    if ctx.deeplift and not np.any(_stats_np(x0v, axes, eps)[0]):
        # a reference constant over the axes (the zero reference): d0 = 0, so
        # d r - d0 r0 = (d - d0) r exactly (the product's d-first ordering). The Shapley split
        # would weigh r0 = 1 / sqrt(eps) (1e6 for eps 1e-12) into terms that cancel only in
        # exact arithmetic (float32 completeness error 1e-2 on transformers' ConvNeXt)
        m_d = b.op("Mul", m_xhat, r)
        return b.op("Sub", m_d, b.reduce("ReduceMean", m_d, axes, keepdims=1))
    half = b.scalar(0.5, "half")
    deriv = b.op("Mul", b.op("Mul", b.op("Mul", r, r), r), b.scalar(-0.5, "minus_half"))
    if ctx.deeplift:
        d0, s0, r0 = (b.const(v.astype(np.float32), f"norm_{k}_ref")
                      for k, v in zip("dsr", _stats_np(x0v, axes, eps)))
        d_sum = b.op("Add", d, d0)                           # d + d0
        d_half = b.op("Mul", d_sum, half)                    # (d + d0) / 2
        r_half = b.op("Mul", b.op("Add", r, r0), half)       # (r + r0) / 2
        ds = b.op("Sub", s, s0)
        small = b.op("Less", b.op("Abs", ds), b.scalar(EPS, "eps"))
        safe = b.op("Where", small, b.scalar(1.0, "one"), ds)
        mult_s = b.op("Where", small, deriv, b.op("Div", b.op("Sub", r, r0), safe))
    else:
        d_sum, d_half, r_half, mult_s = b.op("Add", d, d), d, r, deriv
    m_r = b.reduce("ReduceSum", b.op("Mul", m_xhat, d_half), axes, keepdims=1)
    m_v = b.op("Mul", m_r, mult_s)
    n = int(np.prod([x0v.shape[k] for k in axes]))
    m_q = b.op("Mul", m_v, b.scalar(1.0 / n, "inv_n"))      # v = mean(q), q = d * d
    m_d = b.op("Add", b.op("Mul", m_xhat, r_half), b.op("Mul", m_q, d_sum))
    return b.op("Sub", m_d, b.reduce("ReduceMean", m_d, axes, keepdims=1))


def layer_norm(ctx: RuleContext, m_outs):
    x, scale = ctx.inputs[:2]
    bias = ctx.inputs[2] if len(ctx.inputs) > 2 else ""
    _constant_params(ctx, [scale, bias])
    if len([o for o in ctx.outputs if o]) > 1 and any(m is not None for m in m_outs[1:]):
        ctx.fail("the mean / inverse std outputs of LayerNormalization cannot carry multipliers")
    if not ctx.is_active(x):
        return [None] * len(ctx.inputs)
    rank = ctx.rank(x)
    axis = int(ctx.attr("axis", -1)) % rank
    if axis == ctx.batch_axis(x) or axis == 0:
        ctx.fail("LayerNormalization over the batch axis is not supported")
    axes = list(range(axis, rank))
    eps = float(ctx.attr("epsilon", 1e-5))
    m_xhat = ctx.b.op("Mul", m_outs[0], scale)
    return [_backward(ctx, m_xhat, x, ctx.ref[x], axes, eps)] + [None] * (len(ctx.inputs) - 1)


def instance_norm(ctx: RuleContext, m_outs):
    x, scale, bias = ctx.inputs[:3]
    _constant_params(ctx, [scale, bias])
    if not ctx.is_active(x):
        return [None, None, None]
    rank = ctx.rank(x)
    if rank < 3:
        ctx.fail("InstanceNormalization needs an (N, C, ...) input")
    eps = float(ctx.attr("epsilon", 1e-5))
    f = np.asarray(ctx.value(scale), np.float32).reshape([-1] + [1] * (rank - 2))
    m_xhat = ctx.b.op("Mul", m_outs[0], ctx.b.const(f, "in_scale"))
    return [_backward(ctx, m_xhat, x, ctx.ref[x], list(range(2, rank)), eps), None, None]


def group_norm(ctx: RuleContext, m_outs):
    x, scale, bias = ctx.inputs[:3]
    _constant_params(ctx, [scale, bias])
    if not ctx.is_active(x):
        return [None, None, None]
    b = ctx.b
    shape = ctx.shapes1[x]
    if len(shape) < 3:
        ctx.fail("GroupNormalization needs an (N, C, ...) input")
    c, g = int(shape[1]), int(ctx.attr("num_groups"))
    eps = float(ctx.attr("epsilon", 1e-5))
    sc = np.asarray(ctx.value(scale), np.float32).reshape(-1)
    if sc.size == g and g != c:                 # opset 18: one scale per group
        sc = np.repeat(sc, c // g)
    m_xhat = b.op("Mul", m_outs[0], b.const(sc.reshape([-1] + [1] * (len(shape) - 2)), "gn"))
    view = b.ints([0, g, -1], "gn_view")
    xv = b.op("Reshape", x, view)
    m_v = b.op("Reshape", m_xhat, view)
    x0v = np.asarray(ctx.ref[x]).reshape(shape[0], g, -1)
    m_x = _backward(ctx, m_v, xv, x0v, [2], eps)
    return [ctx.reshape_like(m_x, x), None, None]
