"""Products: Mul, Div, MatMul.

By a constant these are linear. Of two activation-dependent tensors (squeeze-excite gates,
SiLU = x*sigmoid(x)) deeplift uses the Shapley split of the bilinear form,
``m_a = m (b + b0)/2, m_b = m (a + a0)/2`` (exact: a*b - a0*b0 = (a-a0)(b+b0)/2 + (a+a0)(b-b0)/2,
so completeness holds); gradient uses the product rule.
"""
from __future__ import annotations

from liftcam.export.lift.context import RuleContext


def _partner(ctx: RuleContext, other: str) -> str:
    """The factor the multiplier of one operand is scaled by: the other operand, averaged with its
    reference for deeplift when it depends on the activation."""
    if ctx.deeplift and ctx.is_active(other):
        s = ctx.b.op("Add", other, ctx.x0(other))
        return ctx.b.op("Mul", s, ctx.b.scalar(0.5, "half"))
    return other


def mul(ctx: RuleContext, m_outs):
    a, c = ctx.inputs
    y = ctx.outputs[0]
    res = []
    for inp, other in ((a, c), (c, a)):
        if not ctx.is_active(inp):
            res.append(None)
            continue
        m = ctx.b.op("Mul", m_outs[0], _partner(ctx, other))
        res.append(ctx.unbroadcast(m, inp, y))
    return res


def div(ctx: RuleContext, m_outs):
    a, c = ctx.inputs
    y = ctx.outputs[0]
    ma = mc = None
    if ctx.is_active(c):
        if ctx.deeplift:
            ctx.fail("division by an activation-dependent tensor has no DeepLIFT rule here "
                     "(only division by a constant)")
        # d(a/c)/dc = -a/c^2 = -y/c
        t = ctx.b.op("Div", ctx.b.op("Mul", m_outs[0], y), c)
        mc = ctx.unbroadcast(ctx.b.op("Neg", t), c, y)
    if ctx.is_active(a):
        ma = ctx.unbroadcast(ctx.b.op("Div", m_outs[0], c), a, y)
    return [ma, mc]


def _swap_last(ctx: RuleContext, t: str, rank: int) -> str:
    perm = list(range(rank))
    perm[-1], perm[-2] = perm[-2], perm[-1]
    return ctx.b.op("Transpose", t, perm=perm)


def matmul(ctx: RuleContext, m_outs):
    a, c = ctx.inputs
    y = ctx.outputs[0]
    m = m_outs[0]
    ra, rc, ry = ctx.rank(a), ctx.rank(c), ctx.rank(y)
    if ra < 2 or rc < 2:
        ctx.fail("MatMul with a 1-D operand is not supported")
    ma = mc = None
    sy, sa, sc = ctx.shapes2[y], ctx.shapes2[a], ctx.shapes2[c]
    if ctx.is_active(a):
        if not ctx.is_active(c) and rc == 2 and ry == 2:
            ma = ctx.b.op("Gemm", m, c, transB=1)  # same initializer, no transposed copy
        else:
            ma = ctx.b.op("MatMul", m, _swap_last(ctx, _partner(ctx, c), rc))
        ma = ctx.unbroadcast_shape(ma, tuple(sy[:-2]) + tuple(sa[-2:]), sa)
    if ctx.is_active(c):
        mc = ctx.b.op("MatMul", _swap_last(ctx, _partner(ctx, a), ra), m)
        mc = ctx.unbroadcast_shape(mc, tuple(sy[:-2]) + tuple(sc[-2:]), sc)
    return [ma, mc]
