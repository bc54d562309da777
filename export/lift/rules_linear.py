"""Linear ops: the multiplier propagates exactly like the gradient (both rules)."""
from __future__ import annotations

import numpy as np
import onnx

from liftcam.export.lift.context import RuleContext


def _spatial_pads(ctx: RuleContext, x: str, y: str, kernel, strides, dilations):
    """Explicit begin/end pads of a Conv/pool node (auto_pad resolved with static shapes)."""
    n = len(kernel)
    auto = ctx.attr("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    if auto in ("NOTSET", ""):
        pads = list(ctx.attr("pads", [0] * (2 * n)))
        return pads[:n], pads[n:]
    if auto == "VALID":
        return [0] * n, [0] * n
    begin, end = [], []
    xs, ys = ctx.shapes1[x][2:], ctx.shapes1[y][2:]
    for i in range(n):
        tot = max(0, (ys[i] - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - xs[i])
        lo = tot // 2 if auto == "SAME_UPPER" else tot - tot // 2
        begin.append(lo)
        end.append(tot - lo)
    return begin, end


def conv(ctx: RuleContext, m_outs):
    x, w = ctx.inputs[0], ctx.inputs[1]
    y = ctx.outputs[0]
    if ctx.is_active(w) or (len(ctx.inputs) > 2 and ctx.is_active(ctx.inputs[2])):
        ctx.fail("Conv weights/bias that depend on the activation are not supported")
    kernel = list(ctx.shapes1[w][2:])
    n = len(kernel)
    strides = list(ctx.attr("strides", [1] * n))
    dilations = list(ctx.attr("dilations", [1] * n))
    group = int(ctx.attr("group", 1))
    pb, pe = _spatial_pads(ctx, x, y, kernel, strides, dilations)
    xs, ys = ctx.shapes1[x][2:], ctx.shapes1[y][2:]
    out_pad = []
    for i in range(n):
        full = strides[i] * (ys[i] - 1) + (kernel[i] - 1) * dilations[i] + 1 - pb[i] - pe[i]
        d = xs[i] - full
        if d < 0:  # cannot happen for a valid Conv; crop with a larger end pad
            pe[i] -= d
            d = 0
        out_pad.append(d)
    m = ctx.b.op("ConvTranspose", m_outs[0], w, strides=strides, dilations=dilations, group=group,
                 pads=pb + pe, output_padding=out_pad if any(out_pad) else None,
                 kernel_shape=kernel)
    return [m, None, None]


def gemm(ctx: RuleContext, m_outs):
    a, bw = ctx.inputs[0], ctx.inputs[1]
    m = m_outs[0]
    alpha = float(ctx.attr("alpha", 1.0))
    ta, tb = int(ctx.attr("transA", 0)), int(ctx.attr("transB", 0))
    if ctx.is_active(bw):
        ctx.fail("Gemm with an activation-dependent B is not supported")
    if not ctx.is_active(a):
        return [None, None, None]
    if ta == 0:  # dA = alpha * m @ B'^T
        ma = ctx.b.op("Gemm", m, bw, alpha=alpha, transB=1 - tb)
    else:        # dA = alpha * B' @ m^T
        ma = ctx.b.op("Gemm", bw, m, alpha=alpha, transA=tb, transB=1)
    return [ma, None, None]


def batchnorm(ctx: RuleContext, m_outs):
    if int(ctx.attr("training_mode", 0)):
        ctx.fail("BatchNormalization in training mode is not supported (export the model in "
                 "eval mode)")
    x, scale, _, _, var = ctx.inputs[:5]
    for t in ctx.inputs[1:5]:
        if ctx.is_active(t):
            ctx.fail("BatchNormalization parameters must be constants")
    eps = float(ctx.attr("epsilon", 1e-5))
    var = np.asarray(ctx.value(var), np.float64)
    f = np.asarray(ctx.value(scale), np.float64) / np.sqrt(var + eps)
    f = f.astype(np.float32).reshape([-1] + [1] * (ctx.rank(x) - 2))
    return [ctx.b.op("Mul", m_outs[0], ctx.b.const(f, "bn_factor"))]


def add_sub(ctx: RuleContext, m_outs):
    y = ctx.outputs[0]
    res = []
    for k, inp in enumerate(ctx.inputs):
        if not ctx.is_active(inp):
            res.append(None)
            continue
        m = ctx.unbroadcast(m_outs[0], inp, y)
        if ctx.node.op_type == "Sub" and k == 1:
            m = ctx.b.op("Neg", m)
        res.append(m)
    return res


def neg(ctx: RuleContext, m_outs):
    return [ctx.b.op("Neg", m_outs[0])]


def identity(ctx: RuleContext, m_outs):
    return [m_outs[0]] + [None] * (len(ctx.inputs) - 1)


def cast(ctx: RuleContext, m_outs):
    x = ctx.inputs[0]
    dt = np.asarray(ctx.ref[x]).dtype
    if dt != np.float32:
        return [ctx.b.op("Cast", m_outs[0], to=onnx.helper.np_dtype_to_tensor_dtype(dt))]
    return [m_outs[0]]


def global_avg_pool(ctx: RuleContext, m_outs):
    x = ctx.inputs[0]
    count = int(np.prod(ctx.shapes1[x][2:]))
    m = ctx.b.op("Mul", m_outs[0], ctx.b.scalar(1.0 / count, "gap_scale"))
    return [ctx.b.op("Expand", m, ctx.b.op("Shape", x))]


def _reduce_axes(ctx: RuleContext, x: str):
    rank = ctx.rank(x)
    if len(ctx.inputs) > 1 and ctx.inputs[1]:
        axes = [int(a) for a in np.asarray(ctx.value(ctx.inputs[1])).ravel()]
    else:
        axes = ctx.attr("axes", None)
        axes = None if axes is None else [int(a) for a in axes]
    if not axes:
        if int(ctx.attr("noop_with_empty_axes", 0)):
            return []
        axes = list(range(rank))
    return sorted(a % rank for a in axes)


def reduce_linear(ctx: RuleContext, m_outs):
    x = ctx.inputs[0]
    axes = _reduce_axes(ctx, x)
    m = m_outs[0]
    if not axes:
        return [m, None]
    if ctx.batch_axis(x) in axes:
        ctx.fail("reducing over the batch axis is not supported")
    if not int(ctx.attr("keepdims", 1)):
        m = ctx.b.unsqueeze(m, axes)
    if ctx.node.op_type == "ReduceMean":
        count = int(np.prod([ctx.shapes1[x][a] for a in axes]))
        m = ctx.b.op("Mul", m, ctx.b.scalar(1.0 / count, "mean_scale"))
    return [ctx.b.op("Expand", m, ctx.b.op("Shape", x)), None]
