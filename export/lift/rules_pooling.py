"""2-D pooling: MaxPool (Captum's DeepLIFT max-pool rule, or the gradient) and AveragePool.

No MaxUnpool (CPU-only in ONNX Runtime): the window element chosen for each output is found with
one strided Slice per kernel offset (d_i, d_j) of the -inf padded input, a first-maximum mask
(ties broken like torch: the first maximum in row-major window order), and values are scattered
back with exact data movement (Unsqueeze/Pad/Reshape/Transpose, then Add), so the backward pass
involves no convolution arithmetic (no TF32 rounding on GPUs).
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from onnx import helper

from liftcam.export.lift.context import EPS, RuleContext


@dataclass
class _Geom:
    k: tuple    # kernel (kh, kw)
    s: tuple    # strides
    pb: tuple   # pads begin (top, left)
    pe: tuple   # pads end (bottom, right)
    hw: tuple   # input (H, W)
    ohw: tuple  # output (Ho, Wo)
    c: int      # channels

    @property
    def offsets(self):
        return [(i, j) for i in range(self.k[0]) for j in range(self.k[1])]


def _geom(ctx: RuleContext) -> _Geom:
    x, y = ctx.inputs[0], ctx.outputs[0]
    if ctx.rank(x) != 4:
        ctx.fail("only 2-D pooling on (N, C, H, W) tensors is supported")
    k = tuple(int(v) for v in ctx.attr("kernel_shape"))
    s = tuple(int(v) for v in ctx.attr("strides", [1, 1]))
    dil = tuple(int(v) for v in ctx.attr("dilations", [1, 1]))
    if any(d != 1 for d in dil):
        ctx.fail(f"pooling with dilations {list(dil)} is not supported (only 1)")
    auto = ctx.attr("auto_pad", b"NOTSET")
    auto = auto.decode() if isinstance(auto, bytes) else auto
    hw, ohw = tuple(ctx.shapes1[x][2:]), tuple(ctx.shapes1[y][2:])
    if auto in ("NOTSET", ""):
        p = [int(v) for v in ctx.attr("pads", [0, 0, 0, 0])]
        pb, pe = tuple(p[:2]), tuple(p[2:])
    elif auto == "VALID":
        pb, pe = (0, 0), (0, 0)
    else:
        pb, pe = [], []
        for i in range(2):
            tot = max(0, (ohw[i] - 1) * s[i] + k[i] - hw[i])
            lo = tot // 2 if auto == "SAME_UPPER" else tot - tot // 2
            pb.append(lo)
            pe.append(tot - lo)
        pb, pe = tuple(pb), tuple(pe)
    # offsets at or beyond pad + H never reach the input: a kernel larger than the padded input
    # (transformers' EfficientNet pools globally with AvgPool2d(hidden_dim, ceil_mode=True))
    # shrinks to it, and with one output position the stride no longer matters
    k = tuple(min(k[i], hw[i] + pb[i]) for i in range(2))
    s = tuple(k[i] if ohw[i] == 1 else s[i] for i in range(2))
    return _Geom(k, s, pb, pe, hw, ohw, int(ctx.shapes1[x][1]))


def _candidates(ctx: RuleContext, x: str, g: _Geom) -> list:
    """One (N, C, Ho, Wo) tensor per kernel offset: the window element at that offset."""
    b = ctx.b
    need = [max(0, (g.ohw[i] - 1) * g.s[i] + g.k[i] - g.hw[i] - g.pb[i]) for i in range(2)]
    xp = x
    if any(g.pb) or any(need):
        xp = b.pad(x, [0, 0, g.pb[0], g.pb[1], 0, 0, need[0], need[1]], float("-inf"))
    out = []
    for di, dj in g.offsets:
        ends = [di + (g.ohw[0] - 1) * g.s[0] + 1, dj + (g.ohw[1] - 1) * g.s[1] + 1]
        out.append(b.slice(xp, [di, dj], ends, [2, 3], list(g.s)))
    return out


def _first_max_masks(ctx: RuleContext, x: str, y: str, g: _Geom) -> list:
    """Float masks, one per offset: 1 where that offset holds the first maximum of the window."""
    b = ctx.b
    masks, taken = [], None
    for cand in _candidates(ctx, x, g):
        eq = b.op("Equal", cand, y)
        first = eq if taken is None else b.op("And", eq, b.op("Not", taken))
        taken = eq if taken is None else b.op("Or", taken, eq)
        masks.append(b.op("Cast", first, to=onnx.TensorProto.FLOAT))
    return masks


def _place(ctx: RuleContext, vals: list, g: _Geom) -> str:
    """Scatter-add ``vals[d]`` (N, C, Ho, Wo) onto the input grid at offset d of each window."""
    b = ctx.b
    (kh, kw), (sh, sw), (ho, wo), (h, w) = g.k, g.s, g.ohw, g.hw
    if g.s == g.k and not any(g.pb):
        # non-overlapping windows: interleave (N,C,Ho,Wo,kh,kw) -> (N,C,Ho*kh,Wo*kw)
        st = b.op("Concat", *[b.unsqueeze(v, [4]) for v in vals], axis=4) if len(vals) > 1 \
            else b.unsqueeze(vals[0], [4])
        st = b.op("Reshape", st, b.ints([0, 0, ho, wo, kh, kw], "shape"))
        st = b.op("Transpose", st, perm=[0, 1, 2, 4, 3, 5])
        full = b.op("Reshape", st, b.ints([0, 0, ho * kh, wo * kw], "shape"))
        top = (ho * kh, wo * kw)
    else:
        acc = None
        for (di, dj), v in zip(g.offsets, vals):
            if g.s != (1, 1):
                v = b.unsqueeze(v, [3, 5])
                v = b.pad(v, [0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1], 0.0)
                v = b.op("Reshape", v, b.ints([0, 0, ho * sh, wo * sw], "shape"))
            v = b.pad(v, [0, 0, di, dj, 0, 0, kh - 1 - di, kw - 1 - dj], 0.0)
            acc = v if acc is None else b.op("Add", acc, v)
        full = acc
        top = (ho * sh + kh - 1, wo * sw + kw - 1)
    # crop/extend from padded-input coordinates to the input grid
    if g.pb != (0, 0) or top[0] > g.pb[0] + h or top[1] > g.pb[1] + w:
        full = b.slice(full, [g.pb[0], g.pb[1]], [g.pb[0] + h, g.pb[1] + w], [2, 3])
        top = (min(top[0] - g.pb[0], h), min(top[1] - g.pb[1], w))
    if top[0] < h or top[1] < w:
        full = b.pad(full, [0, 0, 0, 0, 0, 0, h - top[0], w - top[1]], 0.0)
    return full


def maxpool(ctx: RuleContext, m_outs):
    if len(ctx.outputs) > 1 and ctx.outputs[1] and m_outs[1:] and m_outs[1] is not None:
        ctx.fail("MaxPool indices output cannot carry multipliers")
    b = ctx.b
    x, y = ctx.inputs[0], ctx.outputs[0]
    g = _geom(ctx)
    m = m_outs[0]
    mx = _first_max_masks(ctx, x, y, g)
    grad = _place(ctx, [b.op("Mul", m, mk) for mk in mx], g)
    if not ctx.deeplift:
        return [grad]
    # Captum: delta_out split into max(y, y0) - y0 (through argmax of x) and y - max(y, y0)
    # (through argmax of x0), un-pooled, summed, divided by delta_in; gradient where
    # |delta_in| < eps
    x0, y0 = ctx.x0(x), ctx.x0(y)
    m0 = _first_max_masks(ctx, x0, y0, g)
    ymax = b.op("Max", y, y0)
    v1 = b.op("Mul", m, b.op("Sub", ymax, y0))
    v2 = b.op("Mul", m, b.op("Sub", y, ymax))
    num = _place(ctx, [b.op("Add", b.op("Mul", v1, a), b.op("Mul", v2, c))
                       for a, c in zip(mx, m0)], g)
    dx = b.op("Sub", x, x0)
    small = b.op("Less", b.op("Abs", dx), b.scalar(EPS, "eps"))
    safe = b.op("Where", small, b.scalar(1.0, "one"), dx)
    return [b.op("Where", small, grad, b.op("Div", num, safe))]


def _avgpool_factor(ctx: RuleContext, g: _Geom) -> np.ndarray:
    """1/divisor per output position, with ONNX Runtime's own AveragePool semantics: run the
    node on ones and divide by the number of real (non-pad) elements in each window."""
    import onnxruntime as ort
    node = helper.make_node("AveragePool", ["x"], ["y"], **{
        a.name: helper.get_attribute_value(a) for a in ctx.node.attribute})
    graph = helper.make_graph([node], "avg", [helper.make_tensor_value_info("x", 1, [1, 1, *g.hw])],
                              [helper.make_tensor_value_info("y", 1, None)])
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", ctx.b.opset)])
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    avg = sess.run(None, {"x": np.ones((1, 1, *g.hw), np.float32)})[0][0, 0].astype(np.float64)
    counts = []
    for i in range(2):
        c = []
        for o in range(g.ohw[i]):
            lo = o * g.s[i] - g.pb[i]
            c.append(max(0, min(lo + g.k[i], g.hw[i]) - max(lo, 0)))
        counts.append(np.array(c, np.float64))
    cnt = counts[0][:, None] * counts[1][None, :]
    f = np.where(cnt > 0, avg / np.maximum(cnt, 1), 0.0)
    return f.astype(np.float32).reshape(1, 1, *g.ohw)


def avgpool(ctx: RuleContext, m_outs):
    g = _geom(ctx)
    ms = ctx.b.op("Mul", m_outs[0], ctx.b.const(_avgpool_factor(ctx, g), "avgpool_factor"))
    return [_place(ctx, [ms] * len(g.offsets), g)]
