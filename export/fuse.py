"""Fuse features + multipliers + the CAM tail into one self-contained ``explain.onnx``.

Inputs ``image`` (N,3,H,W) float32 and ``target`` (N,) int64 (−1: the predicted class);
outputs ``logits`` (N,C), ``weights`` (N,K), ``map`` (N,H,W) in [0,1] and ``low_res`` (N,h,w),
the ReLU of the weighted sum before upsampling (the Explainer's ``low_res``). Standard ONNX ops
only, so C++/C#/Java/mobile ONNX Runtime runs it with no liftcam and no custom op. The tail is
the one in :mod:`liftcam.engine.tail`: weights, ReLU of the weighted sum, bilinear upsampling with
half-pixel centres, per-image min-max (a constant map becomes zeros).
"""
from __future__ import annotations

import onnx
from onnx import TensorProto, helper

from liftcam.contract import (
    ACTIVATION,
    ALPHA,
    COEFFICIENTS,
    IMAGE,
    LOGITS,
    LOW_RES,
    MAP,
    MULTIPLIERS,
    TARGET,
)
from liftcam.export.graph import GraphBuilder, default_opset
from liftcam.export.split import _graph_input


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


def build_explain_model(features: onnx.ModelProto, multipliers: onnx.ModelProto,
                        method: str, layout: str = "NCHW",
                        alpha: onnx.ModelProto = None) -> onnx.ModelProto:
    """One graph: image, target -> logits, weights, map. ``method``: "liftcam" or "gradcam";
    ``layout``: the image's, "NCHW" or "NHWC" (the map is (N, H, W) either way). ``alpha``:
    LIFT-CAM's channel-partial-sums graph (DESIGN.md §5), used instead of ``multipliers``
    where the exporter built one: the coefficients come out of it directly."""
    if method not in ("liftcam", "gradcam"):
        raise ValueError(f"explain.onnx supports 'liftcam' and 'gradcam', not {method!r}")
    image_vi = _graph_input(features)
    dims = [d.dim_value for d in image_vi.type.tensor_type.shape.dim[1:]]
    H, W = (dims[1], dims[2]) if layout == "NCHW" else (dims[0], dims[1])
    K, h, w = (d.dim_value for d in features.graph.output[0].type.tensor_type.shape.dim[1:])
    f_nodes, f_inits = prefixed(features, "features/", {image_vi.name, ACTIVATION})
    use_alpha = alpha is not None and method == "liftcam"
    if use_alpha:
        m_nodes, m_inits = prefixed(alpha, "alpha/", {ACTIVATION, TARGET, LOGITS},
                                    rename={ALPHA: COEFFICIENTS})
    else:
        m_nodes, m_inits = prefixed(multipliers, "lift/",
                                    {ACTIVATION, TARGET, LOGITS, MULTIPLIERS})
    t = GraphBuilder(default_opset(features), name=f"liftcam_explain_{method}", prefix="tail/")
    t.add_input(IMAGE, TensorProto.FLOAT, ["N", *dims])
    t.add_input(TARGET, TensorProto.INT64, ["N"])
    if image_vi.name != IMAGE:
        t.add_node(helper.make_node("Identity", [IMAGE], [image_vi.name], name="features/input"))
    for node in f_nodes + m_nodes:
        t.add_node(node)
    for init in f_inits + m_inits:
        t.add_initializer(init)

    if use_alpha:             # the α graph's output is already COEFFICIENTS
        pass
    elif method == "liftcam":   # alpha_k = sum_ij A * M
        am = t.op("Mul", ACTIVATION, MULTIPLIERS)
        t.reduce("ReduceSum", am, [2, 3], 0, out_name=COEFFICIENTS)
    else:                     # Grad-CAM: w_k = mean_ij G
        s = t.reduce("ReduceSum", MULTIPLIERS, [2, 3], 0)
        t.op("Mul", s, t.scalar(1.0 / (h * w)), out_name=COEFFICIENTS)
    wa = t.op("Mul", t.unsqueeze(COEFFICIENTS, [2, 3]), ACTIVATION)
    low = t.op("Relu", t.reduce("ReduceSum", wa, [1], 1))                       # (N,1,h,w)
    t.op("Squeeze", low, t.ints([1]), out_name=LOW_RES)
    n1 = t.op("Slice", t.op("Shape", low), t.ints([0]), t.ints([2]))            # [N, 1]
    sizes = t.op("Concat", n1, t.ints([H, W]), axis=0)
    up = t.op("Resize", low, "", "", sizes, mode="linear",
              coordinate_transformation_mode="half_pixel")
    mn = t.reduce("ReduceMin", up, [2, 3], 1)
    rng = t.op("Sub", t.reduce("ReduceMax", up, [2, 3], 1), mn)
    # as engine.tail.finish: zeros where the range is not positive or the low-res map is
    # constant (its upsampled map is constant only up to rounding)
    flat = t.reduce("ReduceMax", low, [2, 3], 1)
    varies = t.op("Not", t.op("Equal", flat, t.reduce("ReduceMin", low, [2, 3], 1)))
    ok = t.op("And", t.op("Greater", rng, t.scalar(0.0)), varies)
    safe = t.op("Where", ok, rng, t.scalar(1.0))
    scaled = t.op("Div", t.op("Sub", up, mn), safe)
    norm = t.op("Where", ok, scaled, t.scalar(0.0))
    t.op("Squeeze", norm, t.ints([1]), out_name=MAP)

    t.add_output(LOGITS, TensorProto.FLOAT, ["N", None])
    t.add_output(COEFFICIENTS, TensorProto.FLOAT, ["N", K])
    t.add_output(MAP, TensorProto.FLOAT, ["N", H, W])
    t.add_output(LOW_RES, TensorProto.FLOAT, ["N", h, w])
    return t.make_model(ir_version=features.ir_version,
                        opset_imports=list(features.opset_import))
