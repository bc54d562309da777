"""Element-wise non-linearities: Rescale rule (deeplift) or m*f'(x) (gradient).

Each function here is written as f'(x), built from the forward input ``x`` and output ``y`` with
the derivative conventions of PyTorch's autograd at kinks (ReLU'(0) = 0, hardtanh' = 0 at the
bounds, ...); ``@rescaled`` turns it into the op's rule (``registry.RULES`` lists it).
"""
from __future__ import annotations

import math

from liftcam.export.lift.context import RuleContext


def rescaled(derivative):
    """The rule of an element-wise op whose derivative f'(x) ``derivative(ctx, x, y)`` builds."""
    def rule(ctx: RuleContext, m_outs):
        x, y = ctx.inputs[0], ctx.outputs[0]
        m = ctx.rescale(m_outs[0], x, y, derivative(ctx, x, y))
        return [m] + [None] * (len(ctx.inputs) - 1)
    rule.__name__ = rule.__qualname__ = derivative.__name__
    rule.__doc__ = derivative.__doc__
    return rule


def _f(ctx, v):
    return ctx.b.scalar(float(v))


def _mask(ctx, cond):
    return ctx.b.op("Cast", cond, to=1)


@rescaled
def relu(ctx, x, y):
    return _mask(ctx, ctx.b.op("Greater", x, _f(ctx, 0.0)))


@rescaled
def leaky_relu(ctx, x, y):
    alpha = float(ctx.attr("alpha", 0.01))
    return ctx.b.op("Where", ctx.b.op("Greater", x, _f(ctx, 0.0)), _f(ctx, 1.0), _f(ctx, alpha))


@rescaled
def elu(ctx, x, y):
    alpha = float(ctx.attr("alpha", 1.0))
    neg = ctx.b.op("Mul", ctx.b.op("Exp", x), _f(ctx, alpha))
    return ctx.b.op("Where", ctx.b.op("Greater", x, _f(ctx, 0.0)), _f(ctx, 1.0), neg)


@rescaled
def sigmoid(ctx, x, y):
    return ctx.b.op("Mul", y, ctx.b.op("Sub", _f(ctx, 1.0), y))


@rescaled
def tanh(ctx, x, y):
    return ctx.b.op("Sub", _f(ctx, 1.0), ctx.b.op("Mul", y, y))


@rescaled
def softplus(ctx, x, y):
    return ctx.b.op("Sigmoid", x)


@rescaled
def clip(ctx, x, y):
    b = ctx.b
    ins = ctx.inputs
    lo = ins[1] if len(ins) > 1 and ins[1] else None
    hi = ins[2] if len(ins) > 2 and ins[2] else None
    for t in (lo, hi):
        if t and ctx.is_active(t):
            ctx.fail("Clip bounds must be constants")
    cond = None
    if lo:
        cond = b.op("Greater", x, lo)
    if hi:
        c2 = b.op("Less", x, hi)
        cond = c2 if cond is None else b.op("And", cond, c2)
    if cond is None:
        return _f(ctx, 1.0)
    return _mask(ctx, cond)


@rescaled
def hard_sigmoid(ctx, x, y):
    b = ctx.b
    alpha, beta = float(ctx.attr("alpha", 0.2)), float(ctx.attr("beta", 0.5))
    t = b.op("Add", b.op("Mul", x, _f(ctx, alpha)), _f(ctx, beta))
    inside = b.op("And", b.op("Greater", t, _f(ctx, 0.0)), b.op("Less", t, _f(ctx, 1.0)))
    return b.op("Mul", _mask(ctx, inside), _f(ctx, alpha))


@rescaled
def hard_swish(ctx, x, y):
    # torch: x < -3 -> 0; x <= 3 -> x/3 + 1/2; else 1
    b = ctx.b
    mid = b.op("Add", b.op("Mul", x, _f(ctx, 1.0 / 3.0)), _f(ctx, 0.5))
    upper = b.op("Where", b.op("LessOrEqual", x, _f(ctx, 3.0)), mid, _f(ctx, 1.0))
    return b.op("Where", b.op("Less", x, _f(ctx, -3.0)), _f(ctx, 0.0), upper)


@rescaled
def erf(ctx, x, y):
    b = ctx.b
    e = b.op("Exp", b.op("Neg", b.op("Mul", x, x)))
    return b.op("Mul", e, _f(ctx, 2.0 / math.sqrt(math.pi)))


@rescaled
def gelu(ctx, x, y):
    b = ctx.b
    approx = ctx.attr("approximate", b"none")
    approx = approx.decode() if isinstance(approx, bytes) else approx
    if approx == "tanh":
        # y = 0.5 x (1 + tanh(u)), u = k (x + 0.044715 x^3), k = sqrt(2/pi)
        k = math.sqrt(2.0 / math.pi)
        x2 = b.op("Mul", x, x)
        cubic = b.op("Mul", b.op("Mul", x2, x), _f(ctx, 0.044715))
        u = b.op("Mul", b.op("Add", x, cubic), _f(ctx, k))
        t = b.op("Tanh", u)
        du = b.op("Add", _f(ctx, 1.0), b.op("Mul", x2, _f(ctx, 3 * 0.044715)))
        du = b.op("Mul", du, _f(ctx, k))
        sech2 = b.op("Sub", _f(ctx, 1.0), b.op("Mul", t, t))
        left = b.op("Mul", b.op("Add", _f(ctx, 1.0), t), _f(ctx, 0.5))
        right = b.op("Mul", b.op("Mul", b.op("Mul", x, sech2), du), _f(ctx, 0.5))
        return b.op("Add", left, right)
    # Phi(x) + x phi(x)
    cdf = b.op("Mul", b.op("Add", b.op("Erf", b.op("Mul", x, _f(ctx, 1.0 / math.sqrt(2.0)))),
                           _f(ctx, 1.0)), _f(ctx, 0.5))
    pdf = b.op("Mul", b.op("Exp", b.op("Mul", b.op("Mul", x, x), _f(ctx, -0.5))),
               _f(ctx, 1.0 / math.sqrt(2.0 * math.pi)))
    return b.op("Add", cdf, b.op("Mul", x, pdf))


@rescaled
def prelu(ctx, x, y):
    slope = ctx.inputs[1]
    if ctx.is_active(slope):
        ctx.fail("PRelu slope must be a constant")
    return ctx.b.op("Where", ctx.b.op("Greater", x, _f(ctx, 0.0)), _f(ctx, 1.0), slope)
