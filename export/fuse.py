"""Fuse features + multipliers + the CAM tail into one self-contained ``explain.onnx``.

Inputs ``image`` (N,3,H,W) float32 and ``target`` (N,) int64 (−1: the predicted class);
outputs ``logits`` (N,C), ``weights`` (N,K) and ``map`` (N,H,W) in [0,1]. Standard ONNX ops only,
so C++/C#/Java/mobile ONNX Runtime runs it with no liftcam and no custom op. The tail is the one
in :mod:`liftcam.engine.tail`: weights, ReLU of the weighted sum, bilinear upsampling with
half-pixel centres, per-image min-max (a constant map becomes zeros).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from liftcam.export.split import ACTIVATION, LOGITS, _graph_input

IMAGE, TARGET, WEIGHTS, MAP = "image", "target", "weights", "map"


def prefixed(model: onnx.ModelProto, prefix: str, keep: set, rename=None):
    """Copies of the nodes and initializers of ``model`` with every tensor name prefixed,
    except those in ``keep`` (unchanged) and ``rename`` (old name -> new name)."""
    rename = rename or {}

    def name(n):
        if n in rename:
            return rename[n]
        return n if (not n or n in keep) else prefix + n

    nodes = []
    for node in model.graph.node:
        new = onnx.NodeProto()
        new.CopyFrom(node)
        new.name = prefix + node.name if node.name else ""
        new.input[:] = [name(n) for n in node.input]
        new.output[:] = [name(n) for n in node.output]
        nodes.append(new)
    inits = []
    for t in model.graph.initializer:
        new = onnx.TensorProto()
        new.CopyFrom(t)
        new.name = name(t.name)
        inits.append(new)
    return nodes, inits


class _Tail:
    """Emits the tail's nodes, respecting the opset's Reduce* signatures."""

    def __init__(self, opset: int):
        self.opset, self.nodes, self.inits, self.n = opset, [], [], 0

    def const(self, value, dtype=np.int64):
        self.n += 1
        name = f"tail/c{self.n}"
        self.inits.append(numpy_helper.from_array(np.asarray(value, dtype=dtype), name))
        return name

    def op(self, op_type, *inputs, out=None, **attrs):
        self.n += 1
        out = out or f"tail/{op_type}{self.n}"
        self.nodes.append(helper.make_node(op_type, list(inputs), [out], name=out, **attrs))
        return out

    def reduce(self, op_type, x, axes, keepdims, out=None):
        # ReduceSum takes axes as an input from opset 13, the other reductions from opset 18.
        if op_type == "ReduceSum" or self.opset >= 18:
            return self.op(op_type, x, self.const(axes), out=out, keepdims=keepdims)
        return self.op(op_type, x, out=out, axes=list(axes), keepdims=keepdims)


def build_explain_model(features: onnx.ModelProto, multipliers: onnx.ModelProto,
                        method: str) -> onnx.ModelProto:
    """One graph: image, target -> logits, weights, map. ``method``: "liftcam" or "gradcam"."""
    if method not in ("liftcam", "gradcam"):
        raise ValueError(f"explain.onnx supports 'liftcam' and 'gradcam', not {method!r}")
    image_vi = _graph_input(features)
    C, H, W = (d.dim_value for d in image_vi.type.tensor_type.shape.dim[1:])
    K, h, w = (d.dim_value for d in features.graph.output[0].type.tensor_type.shape.dim[1:])
    opset = max(o.version for o in features.opset_import if o.domain in ("", "ai.onnx"))
    f_nodes, f_inits = prefixed(features, "features/", {image_vi.name, ACTIVATION})
    m_nodes, m_inits = prefixed(multipliers, "lift/", {ACTIVATION, TARGET, LOGITS, "multipliers"})
    if image_vi.name != IMAGE:
        f_nodes.insert(0, helper.make_node("Identity", [IMAGE], [image_vi.name],
                                           name="features/input"))

    t = _Tail(opset)
    if method == "liftcam":   # alpha_k = sum_ij A * M
        t.reduce("ReduceSum", t.op("Mul", ACTIVATION, "multipliers"), [2, 3], 0, out=WEIGHTS)
    else:                     # Grad-CAM: w_k = mean_ij G
        s = t.reduce("ReduceSum", "multipliers", [2, 3], 0)
        t.op("Mul", s, t.const(1.0 / (h * w), np.float32), out=WEIGHTS)
    wa = t.op("Mul", t.op("Unsqueeze", WEIGHTS, t.const([2, 3])), ACTIVATION)
    low = t.op("Relu", t.reduce("ReduceSum", wa, [1], 1))                       # (N,1,h,w)
    n1 = t.op("Slice", t.op("Shape", low), t.const([0]), t.const([2]))          # [N, 1]
    sizes = t.op("Concat", n1, t.const([H, W]), axis=0)
    up = t.op("Resize", low, "", "", sizes, mode="linear",
              coordinate_transformation_mode="half_pixel")
    mn = t.reduce("ReduceMin", up, [2, 3], 1)
    rng = t.op("Sub", t.reduce("ReduceMax", up, [2, 3], 1), mn)
    # as engine.tail.finish: zeros where the range is not positive or the low-res map is
    # constant (its upsampled map is constant only up to rounding)
    flat = t.reduce("ReduceMax", low, [2, 3], 1)
    varies = t.op("Not", t.op("Equal", flat, t.reduce("ReduceMin", low, [2, 3], 1)))
    ok = t.op("And", t.op("Greater", rng, t.const(0.0, np.float32)), varies)
    safe = t.op("Where", ok, rng, t.const(1.0, np.float32))
    scaled = t.op("Div", t.op("Sub", up, mn), safe)
    norm = t.op("Where", ok, scaled, t.const(0.0, np.float32))
    t.op("Squeeze", norm, t.const([1]), out=MAP)

    graph = helper.make_graph(
        f_nodes + m_nodes + t.nodes, f"liftcam_explain_{method}",
        [helper.make_tensor_value_info(IMAGE, TensorProto.FLOAT, ["N", C, H, W]),
         helper.make_tensor_value_info(TARGET, TensorProto.INT64, ["N"])],
        [helper.make_tensor_value_info(LOGITS, TensorProto.FLOAT, ["N", None]),
         helper.make_tensor_value_info(WEIGHTS, TensorProto.FLOAT, ["N", K]),
         helper.make_tensor_value_info(MAP, TensorProto.FLOAT, ["N", H, W])],
        initializer=f_inits + m_inits + t.inits)
    model = helper.make_model(graph, opset_imports=list(features.opset_import),
                              producer_name="liftcam", ir_version=features.ir_version)
    return model
