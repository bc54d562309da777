"""``explain_raw.onnx``: decoded pixels in, the map at the image's own size out (DESIGN.md §8).

    pixels  uint8 [H, W, 3] or [N, H, W, 3], RGB, any H and W ≥ 2
    target  int64 [N] (−1: the predicted class)
    ->  logits  float32 [N, C]      weights  float32 [N, K]
        map     float32 [N, H, W]   in [0, 1], placed where the model's input came from
                                    (zeros outside a centre crop)
        overlay uint8   [N, H, W, 3] the jet heatmap blended over the image

Inside, in standard ONNX ops (opset 18): the bundle's own preprocessing (plain resize, or
resize of the shorter side + centre crop, with Pillow's filters: ``Resize`` with antialiasing
and rounding to 8 bits as Pillow does, then ``Slice``/``Pad`` for the crop, scale, mean/std,
RGB/BGR and NCHW), the fused ``explain.onnx``, and the placement of the map back on the
original image with the same bilinear rule as :func:`liftcam.engine.maps.place_map`
(interpolation matrices built in the graph). An app written in C++, C#, Java or for a phone
hands over the decoded image as it comes from its image library and needs no preprocessing.
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import TensorProto, helper, version_converter

from liftcam.contract import COEFFICIENTS, IMAGE, LOGITS, MAP, OVERLAY, PIXELS, TARGET
from liftcam.engine.errors import ExportError
from liftcam.engine.images import validate_preprocessing
from liftcam.engine.maps import colormap_jet
from liftcam.export.fuse import prefixed
from liftcam.export.graph import GraphBuilder, default_opset

OPSET = 18                  # Resize with antialias
MIN_SIDE = 2                # smaller images are refused (a 1-pixel side has nothing to explain)
#: Pillow filter -> ONNX Resize mode (Pillow's other filters have no ONNX equivalent)
RESIZE_MODES = {"nearest": "nearest", "bilinear": "linear", "bicubic": "cubic"}
CHECK_NODE = "check_pixels_are_uint8_HxWx3_or_NxHxWx3_with_H_W_at_least_2"


def _dims(b: GraphBuilder, pixels: str):
    """``x`` (N, H, W, 3) from pixels of rank 3 or 4, and (H, W) as int64 [2]; a bad shape
    fails in the node named :data:`CHECK_NODE` (ONNX has no assert; the error names it)."""
    last3 = b.slice(b.op("Shape", pixels), [-3], [np.iinfo(np.int64).max], [0])
    hw = b.slice(last3, [0], [2], [0])
    ok = b.op("And", b.op("Equal", b.slice(last3, [2], [3], [0]), b.ints([3])),
              b.op("GreaterOrEqual", b.reduce("ReduceMin", hw, [0], 1), b.ints([MIN_SIDE])))
    want = b.op("Concat", b.ints([-1]), hw, b.ints([3]), axis=0)
    target = b.op("Where", ok, want, b.ints([0, 0, 0, 0]))
    x = b.op("Reshape", pixels, target, allowzero=1, name_hint=CHECK_NODE)
    # (H, W) again from x, whose rank is known: shape inference then keeps [2]
    return x, b.slice(b.op("Shape", x), [1], [3], [0])


def _resize(b: GraphBuilder, x: str, hw: str, pre: dict):
    """(N, 3, rh, rw) float in 0..255 rounded to 8 bits like Pillow, and (rh, rw) int64 [2]."""
    if pre["resize"] is not None:
        rhw = b.ints(list(pre["resize"]))
    elif pre["resize_shorter"] is not None:
        short = b.op("Min", b.slice(hw, [0], [1], [0]), b.slice(hw, [1], [2], [0]))
        rhw = b.op("Div", b.op("Mul", hw, b.ints([pre["resize_shorter"]])), short)  # floor
    else:
        return x, hw
    n3 = b.slice(b.op("Shape", x), [0], [2], [0])
    mode = RESIZE_MODES[pre["resize_mode"]]
    extra = {} if mode == "nearest" else {"antialias": 1}
    if mode == "cubic":
        extra["cubic_coeff_a"] = -0.5                # Pillow's bicubic kernel
    if mode == "nearest":   # Pillow: src = floor((x + 0.5) * in / out)
        extra["nearest_mode"] = "round_prefer_ceil"
    y = b.op("Resize", x, "", "", b.op("Concat", n3, rhw, axis=0), mode=mode,
             coordinate_transformation_mode="half_pixel", **extra)
    if mode != "nearest":                            # Pillow resizes in 8 bits
        y = b.op("Clip", b.op("Round", y), b.scalar(0.0), b.scalar(255.0))
    return y, rhw


def _crop(b: GraphBuilder, x: str, rhw: str, crop):
    """torchvision's centre crop (zero padding where the image is smaller), and the crop's
    top-left corner (y0, x0) in resized coordinates as int64 [2] (negative when padded)."""
    if crop is None:
        return x, None
    c = b.ints(list(crop))
    short = b.op("Max", b.op("Sub", c, rhw), b.ints([0, 0]))          # how much is missing
    before = b.op("Div", short, b.ints([2, 2]))
    after = b.op("Sub", short, before)
    zero2 = b.ints([0, 0])
    pads = b.op("Concat", zero2, before, zero2, after, axis=0)
    padded = b.op("Pad", x, pads, b.scalar(0.0), mode="constant")
    size = b.op("Add", rhw, short)
    half = b.op("Div", b.op("Cast", b.op("Sub", size, c), to=TensorProto.FLOAT),
                b.scalar(2.0))
    top = b.op("Cast", b.op("Round", half), to=TensorProto.INT64)   # half to even, as round()
    out = b.op("Slice", padded, top, b.op("Add", top, c), b.ints([2, 3]))
    return out, b.op("Sub", top, before)


def _normalise(b: GraphBuilder, x: str, pre: dict) -> str:
    if pre["channel_order"] == "BGR":
        x = b.op("Gather", x, b.ints([2, 1, 0]), axis=1)
    mean = np.asarray(pre["mean"], np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(pre["std"], np.float32).reshape(1, 3, 1, 1)
    v = b.op("Div", x, b.scalar(pre["scale"]))
    return b.op("Div", b.op("Sub", v, b.const(mean, "mean")), b.const(std, "std"))


def _axis_matrix(b: GraphBuilder, n_out: str, a: str, bb: str, n_map: int) -> str:
    """(n_out, n_map) bilinear weights placing ``n_map`` samples over output pixels [a, bb)
    (floats): :func:`liftcam.engine.tail.interpolation_matrix` with a window, in the graph."""
    f = TensorProto.FLOAT
    u = b.op("Add", b.op("Cast", b.op("Range", b.ints(0), n_out, b.ints(1)), to=f),
             b.scalar(0.5))
    frac = b.op("Div", b.op("Sub", u, a), b.op("Sub", bb, a))
    inside = b.op("Cast", b.op("And", b.op("GreaterOrEqual", frac, b.scalar(0.0)),
                               b.op("LessOrEqual", frac, b.scalar(1.0))), to=f)
    src = b.op("Clip", b.op("Sub", b.op("Mul", frac, b.scalar(float(n_map))), b.scalar(0.5)),
               b.scalar(0.0), b.scalar(float(n_map - 1)))
    i0 = b.op("Floor", src)
    i1 = b.op("Min", b.op("Add", i0, b.scalar(1.0)), b.scalar(float(n_map - 1)))
    lam = b.unsqueeze(b.op("Sub", src, i0), [1])
    grid = b.const(np.arange(n_map, dtype=np.float32)[None, :], "map_index")
    w0 = b.op("Cast", b.op("Equal", b.unsqueeze(i0, [1]), grid), to=f)
    w1 = b.op("Cast", b.op("Equal", b.unsqueeze(i1, [1]), grid), to=f)
    w = b.op("Add", b.op("Mul", w0, b.op("Sub", b.scalar(1.0), lam)), b.op("Mul", w1, lam))
    return b.op("Mul", w, b.unsqueeze(inside, [1]))


def _place(b: GraphBuilder, cam: str, hw: str, rhw: str, corner: str, crop, map_hw) -> str:
    """The model-size map (N, h, w) on the original (N, H, W), as maps.place_map."""
    f = TensorProto.FLOAT
    hw_f, rhw_f = b.op("Cast", hw, to=f), b.op("Cast", rhw, to=f)
    if crop is None:
        a, bb = b.const(np.zeros(2, np.float32), "win_a"), hw_f
    else:
        scale = b.op("Div", hw_f, rhw_f)                               # resized -> original
        c0 = b.op("Cast", corner, to=f)
        a = b.op("Mul", c0, scale)
        bb = b.op("Mul", b.op("Add", c0, b.const(np.asarray(crop, np.float32), "crop")), scale)
    def pick(t, i):
        return b.squeeze(b.slice(t, [i], [i + 1], [0]), [0])

    Ry, Rx = (_axis_matrix(b, pick(hw, i), pick(a, i), pick(bb, i), map_hw[i]) for i in (0, 1))
    placed = b.op("MatMul", b.op("MatMul", Ry, cam), b.op("Transpose", Rx, perm=[1, 0]))
    return b.op("Clip", placed, b.scalar(0.0), b.scalar(1.0))


def _overlay(b: GraphBuilder, x: str, cam: str, alpha: float) -> str:
    """maps.overlay: jet(uint8(255·m)) blended with the image, / max, uint8(255·out)."""
    f = TensorProto.FLOAT
    lut = colormap_jet(np.arange(256, dtype=np.float32) / 255).astype(np.float32) / 255
    idx = b.op("Cast", b.op("Floor", b.op("Mul", cam, b.scalar(255.0))), to=TensorProto.INT64)
    heat = b.op("Gather", b.const(lut, "jet"), idx, axis=0)               # (N, H, W, 3)
    img = b.op("Div", b.op("Cast", x, to=f), b.scalar(255.0))
    out = b.op("Add", b.op("Mul", heat, b.scalar(float(alpha))),
               b.op("Mul", img, b.scalar(1.0 - float(alpha))))
    peak = b.reduce("ReduceMax", out, [1, 2, 3], 1)
    norm = b.op("Where", b.op("Greater", peak, b.scalar(0.0)),
                b.op("Div", out, b.op("Max", peak, b.scalar(1e-30))), out)
    return b.op("Cast", b.op("Floor", b.op("Mul", norm, b.scalar(255.0))),
                to=TensorProto.UINT8, out_name=OVERLAY)


def build_raw_model(explain: onnx.ModelProto, preprocessing: dict, input_shape,
                    alpha: float = 0.5, layout: str = "NCHW") -> onnx.ModelProto:
    """``explain_raw.onnx`` from a bundle's ``explain.onnx`` and its preprocessing.
    ``input_shape``: one image's shape in the model's ``layout`` ((C, H, W) or (H, W, C))."""
    pre = validate_preprocessing(preprocessing)
    if pre["resize_mode"] not in RESIZE_MODES:
        raise ExportError(f"preprocessing resize_mode {pre['resize_mode']!r} has no ONNX "
                          f"Resize equivalent; explain_raw.onnx supports {list(RESIZE_MODES)}")
    s = [int(d) for d in input_shape]
    C, H, W = (s[0], s[1], s[2]) if layout == "NCHW" else (s[2], s[0], s[1])
    if C != 3:
        raise ExportError(f"explain_raw.onnx needs a 3-channel model input, got C={C}")
    crop = pre["center_crop"]
    fixed = pre["resize"] if crop is None else crop
    if fixed is None or tuple(fixed) != (H, W):
        raise ExportError(f"the preprocessing makes {fixed} images but the model takes {H}x{W}; "
                          "explain_raw.onnx needs a resize or centre crop to the input size")
    if default_opset(explain) < OPSET:
        explain = version_converter.convert_version(explain, OPSET)
    b = GraphBuilder(OPSET, name="liftcam_explain_raw", prefix="raw/")
    b.inputs.append(helper.make_tensor_value_info(PIXELS, TensorProto.UINT8, None))
    b.add_input(TARGET, TensorProto.INT64, ["N"])
    x, hw = _dims(b, PIXELS)
    nchw = b.op("Transpose", b.op("Cast", x, to=TensorProto.FLOAT), perm=[0, 3, 1, 2])
    resized, rhw = _resize(b, nchw, hw, pre)
    cropped, corner = _crop(b, resized, rhw, crop)
    image = _normalise(b, cropped, pre)
    if layout == "NHWC":
        image = b.op("Transpose", image, perm=[0, 2, 3, 1])
    keep = {TARGET, LOGITS, COEFFICIENTS}
    nodes, inits = prefixed(explain, "explain/", keep, rename={IMAGE: image})
    for node in nodes:
        b.add_node(node)
    for init in inits:
        b.add_initializer(init)
    cam = _place(b, "explain/" + MAP, hw, rhw, corner, crop, (H, W))
    b.op("Identity", cam, out_name=MAP)
    _overlay(b, x, MAP, alpha)
    K = explain.graph.output[1].type.tensor_type.shape.dim[1].dim_value
    b.add_output(LOGITS, TensorProto.FLOAT, ["N", None])
    b.add_output(COEFFICIENTS, TensorProto.FLOAT, ["N", K])
    b.add_output(MAP, TensorProto.FLOAT, ["N", "H", "W"])
    b.add_output(OVERLAY, TensorProto.UINT8, ["N", "H", "W", 3])
    return b.make_model(ir_version=explain.ir_version)


def add_to_bundle(bundle_dir, alpha: float = 0.5) -> Path:
    """Add ``explain_raw.onnx`` to an existing bundle (``liftcam add-raw``); returns its path.
    Its weights are the bundle's own (``weights.bin``), stored once."""
    from liftcam.contract import EXPLAIN, EXPLAIN_RAW
    from liftcam.engine.bundle import load_bundle
    from liftcam.export.bundle_writer import add_graph

    bundle = load_bundle(bundle_dir)
    model = build_raw_model(onnx.load(str(bundle.graph(EXPLAIN))),
                            bundle.manifest["preprocessing"], bundle.input_shape, alpha=alpha,
                            layout=bundle.layout)
    return add_graph(bundle, EXPLAIN_RAW, model)
