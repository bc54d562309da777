"""Shape and data-movement ops: linear, the multiplier moves back like the gradient."""
from __future__ import annotations

import numpy as np

from liftcam.export.lift.context import RuleContext

INT_MAX = np.iinfo(np.int64).max


def reshape_back(ctx: RuleContext, m_outs):
    x = ctx.inputs[0]
    return [ctx.reshape_like(m_outs[0], x)] + [None] * (len(ctx.inputs) - 1)


def transpose(ctx: RuleContext, m_outs):
    rank = ctx.rank(ctx.inputs[0])
    perm = list(ctx.attr("perm", list(reversed(range(rank)))))
    inv = [0] * rank
    for i, p in enumerate(perm):
        inv[p] = i
    return [ctx.b.op("Transpose", m_outs[0], perm=inv)]


def expand(ctx: RuleContext, m_outs):
    return [ctx.unbroadcast(m_outs[0], ctx.inputs[0], ctx.outputs[0]), None]


def concat(ctx: RuleContext, m_outs):
    y = ctx.outputs[0]
    axis = int(ctx.attr("axis")) % ctx.rank(y)
    if axis == ctx.batch_axis(y):
        ctx.fail("Concat along the batch axis is not supported")
    sizes = [ctx.shapes1[i][axis] for i in ctx.inputs]
    parts = ctx.b.op_multi("Split", [m_outs[0], ctx.b.ints(sizes, "split")], len(sizes), axis=axis)
    return [p if ctx.is_active(i) else None for p, i in zip(parts, ctx.inputs)]


def split(ctx: RuleContext, m_outs):
    x = ctx.inputs[0]
    axis = int(ctx.attr("axis", 0)) % ctx.rank(x)
    if axis == ctx.batch_axis(x):
        ctx.fail("Split along the batch axis is not supported")
    parts = [m if m is not None else ctx.zeros_like(o) for m, o in zip(m_outs, ctx.outputs)]
    m = parts[0] if len(parts) == 1 else ctx.b.op("Concat", *parts, axis=axis)
    return [m] + [None] * (len(ctx.inputs) - 1)


def slice_(ctx: RuleContext, m_outs):
    x = ctx.inputs[0]
    shape = ctx.shapes1[x]
    rank = len(shape)
    ins = ctx.inputs + [""] * (5 - len(ctx.inputs))
    starts = [int(v) for v in np.ravel(ctx.value(ins[1]))]
    ends = [int(v) for v in np.ravel(ctx.value(ins[2]))]
    axes = ([int(v) % rank for v in np.ravel(ctx.value(ins[3]))] if ins[3]
            else list(range(len(starts))))
    steps = [int(v) for v in np.ravel(ctx.value(ins[4]))] if ins[4] else [1] * len(starts)
    pads = [0] * (2 * rank)
    for st, en, ax, sp in zip(starts, ends, axes, steps):
        if sp != 1:
            ctx.fail(f"Slice with step {sp} is not supported (only step 1)")
        d = shape[ax]
        st = min(max(st + d if st < 0 else st, 0), d)
        en = min(max(en + d if en < 0 else en, 0), d)
        en = max(en, st)
        if ax == ctx.batch_axis(x):
            if st == 0 and en >= d:
                continue
            ctx.fail("Slice along the batch axis is not supported")
        pads[ax] = st
        pads[rank + ax] = d - en
    m = m_outs[0] if not any(pads) else ctx.b.pad(m_outs[0], pads, 0.0)
    return [m] + [None] * (len(ctx.inputs) - 1)


def pad(ctx: RuleContext, m_outs):
    mode = ctx.attr("mode", b"constant")
    mode = mode.decode() if isinstance(mode, bytes) else mode
    if mode != "constant":
        ctx.fail(f"Pad mode {mode!r} is not supported (only 'constant')")
    x, y = ctx.inputs[0], ctx.outputs[0]
    rank = ctx.rank(x)
    raw = [int(v) for v in np.ravel(ctx.value(ctx.inputs[1]))]
    n = len(raw) // 2
    if len(ctx.inputs) > 3 and ctx.inputs[3]:
        axes = [int(a) % rank for a in np.ravel(ctx.value(ctx.inputs[3]))]
    else:
        axes = list(range(n))
    begin, end = [0] * rank, [0] * rank
    for k, ax in enumerate(axes):
        begin[ax], end[ax] = raw[k], raw[n + k]
    ba = ctx.batch_axis(x)
    if ba is not None and (begin[ba] or end[ba]):
        ctx.fail("padding the batch axis is not supported")
    shape_y = ctx.shapes1[y]
    s_axes = [a for a in range(rank) if begin[a] > 0 or end[a] > 0]
    m = m_outs[0]
    if s_axes:
        m = ctx.b.slice(m, [begin[a] if begin[a] > 0 else 0 for a in s_axes],
                        [shape_y[a] - end[a] if end[a] > 0 else shape_y[a] for a in s_axes], s_axes)
    if any(v < 0 for v in begin + end):
        m = ctx.b.pad(m, [max(-v, 0) for v in begin] + [max(-v, 0) for v in end], 0.0)
    return [m] + [None] * (len(ctx.inputs) - 1)


def gather(ctx: RuleContext, m_outs):
    x = ctx.inputs[0]
    idx = np.asarray(ctx.value(ctx.inputs[1]))
    rank = ctx.rank(x)
    axis = int(ctx.attr("axis", 0)) % rank
    if idx.ndim != 0 or axis == ctx.batch_axis(x):
        ctx.fail("Gather of an activation-dependent tensor is supported only with one constant "
                 "scalar index on a non-batch axis")
    d = ctx.shapes1[x][axis]
    i = int(idx) % d
    m = ctx.b.unsqueeze(m_outs[0], [axis])
    pads = [0] * (2 * rank)
    pads[axis], pads[rank + axis] = i, d - i - 1
    return [ctx.b.pad(m, pads, 0.0), None]


def where(ctx: RuleContext, m_outs):
    """``Where(c, x, y)``: each input gets the multiplier where it was selected. With a fixed
    condition the selection is linear in (x, y), for both rules. A condition computed from the
    activation (``A > t``) is fine for gradients (the selection is locally constant) but not
    for DeepLIFT, whose reference may fall on the other side of it."""
    c, x, y = ctx.inputs
    if ctx.deeplift and ctx.varies_with_activation(c):
        ctx.fail("Where with a condition that depends on the activation has no DeepLIFT rule; "
                 "make the condition a constant or use a gradient method")
    out, zero = ctx.outputs[0], ctx.b.scalar(0.0, "zero")
    res = [None]
    for inp, picked in ((x, (m_outs[0], zero)), (y, (zero, m_outs[0]))):
        if ctx.is_active(inp):
            res.append(ctx.unbroadcast(ctx.b.op("Where", c, *picked), inp, out))
        else:
            res.append(None)
    return res


def gather_nd(ctx: RuleContext, m_outs):
    """``GatherND(x, indices)`` with constant indices that leave the batch axis alone (as the
    dynamo exporter writes adaptive pooling to a size that does not divide the input): a
    fixed selection, so the multiplier is scattered back and summed where windows overlap."""
    x = ctx.inputs[0]
    idx = np.asarray(ctx.value(ctx.inputs[1]))
    q = idx.shape[-1]
    if int(ctx.attr("batch_dims", 0)) != 0:
        ctx.fail("GatherND with batch_dims > 0 is not supported")
    ba = ctx.batch_axis(x)
    if ba is not None and ba < q:
        ctx.fail("GatherND indexing the batch axis is not supported")
    flat = np.ravel_multi_index(tuple(np.moveaxis(idx.reshape(-1, q), -1, 0)),
                                ctx.shapes1[x][:q], mode="wrap")
    repeated = len(np.unique(flat)) < flat.size
    if repeated and ctx.b.opset < 16:
        ctx.fail(f"GatherND with repeated indices needs opset 16 (ScatterND's reduction); the "
                 f"model has opset {ctx.b.opset}")
    m = ctx.b.op("ScatterND", ctx.zeros_like(x), ctx.inputs[1], m_outs[0],
                 reduction="add" if repeated else None)
    return [m, None]
