"""The input of an ONNX classifier from any exporter: its per-image shape and its layout.

Files from torch are NCHW with static sizes. Files from tf2onnx (Keras) are channels-last
([N, H, W, 3], with a Transpose to NCHW right after the input), and files from paddle2onnx
often declare symbolic spatial sizes ([N, 3, '?', '?']). The layout is detected from the
graph (a Transpose(0, 3, 1, 2) or a Conv right after the input) and from the dims, or given;
when neither tells, the exporter refuses and asks for ``layout=`` instead of guessing.
"""
from __future__ import annotations

import onnx

from liftcam.contract import LAYOUTS
from liftcam.engine.errors import ExportError

CHANNEL_COUNTS = (1, 3, 4)      # what a channel axis of an image model looks like


def _input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    from liftcam.export.split import _graph_input

    return _graph_input(model)


def declared_dims(model: onnx.ModelProto) -> list:
    """The input's per-image dims as declared: ints, or None where symbolic/unknown."""
    dims = _input(model).type.tensor_type.shape.dim
    return [d.dim_value if d.HasField("dim_value") and d.dim_value > 0 else None
            for d in dims[1:]]


def _from_graph(model: onnx.ModelProto):
    """"NHWC" when the input goes straight into a Transpose(0,3,1,2), "NCHW" when it goes
    straight into a Conv (ONNX Conv is channels-first), else None."""
    name = _input(model).name
    for node in model.graph.node:
        if name not in node.input:
            continue
        if node.op_type == "Transpose":
            perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
            if perm == [0, 3, 1, 2]:
                return "NHWC"
        if node.op_type == "Conv" and node.input[0] == name:
            return "NCHW"
    return None


def _from_dims(dims):
    first, last = dims[0] in CHANNEL_COUNTS, dims[-1] in CHANNEL_COUNTS
    if first and not last:
        return "NCHW"
    if last and not first:
        return "NHWC"
    return None


def input_layout(model: onnx.ModelProto, layout=None, input_shape=None) -> str:
    """The input's layout: ``layout`` when given (checked), else detected; refuses to guess."""
    if layout is not None:
        if layout not in LAYOUTS:
            raise ExportError(f"layout must be one of {list(LAYOUTS)}, got {layout!r}")
        return layout
    dims = declared_dims(model)
    if len(dims) != 3:
        raise ExportError(f"the model's input has {len(dims) + 1} dims; liftcam explains image "
                          "classifiers with a 4-D input (N, C, H, W) or (N, H, W, C)")
    found = _from_graph(model)
    if found is None and input_shape is not None:
        found = _from_dims(list(input_shape))
    if found is None and None not in dims:
        found = _from_dims(dims)
    if found is None:
        raise ExportError(f"cannot tell whether the input {_input(model).name!r} "
                          f"{['N', *(d if d else '?' for d in dims)]} is channels-first or "
                          "channels-last; pass layout='NCHW' or layout='NHWC' (--layout)")
    return found


def input_shape_of(model: onnx.ModelProto, input_shape=None, layout="NCHW") -> tuple:
    """The per-image input shape in the model's own layout: ``input_shape`` (checked against
    the declared static dims) or the declared one; symbolic sizes need ``input_shape``."""
    dims = declared_dims(model)
    order = "(C, H, W)" if layout == "NCHW" else "(H, W, C)"
    if input_shape is not None:
        shape = tuple(int(d) for d in input_shape)
        if len(shape) != 3 or min(shape) <= 0:
            raise ExportError(f"input_shape must be {order} with positive ints, got "
                              f"{tuple(input_shape)}")
        clash = [(i, d, s) for i, (d, s) in enumerate(zip(dims, shape)) if d and d != s]
        if clash:
            raise ExportError(f"input_shape {shape} contradicts the model's declared input "
                              f"{['N', *dims]} (layout {layout}, {order})")
        return shape
    if None in dims:
        raise ExportError(f"the model declares its input as {['N', *(d or '?' for d in dims)]} "
                          f"(symbolic sizes); pass input_shape={order} in its layout, e.g. "
                          f"{(3, 224, 224) if layout == 'NCHW' else (224, 224, 3)}")
    return tuple(dims)


def fix_input_dims(model: onnx.ModelProto, input_shape) -> None:
    """Write the per-image sizes into the model's input (in place; the batch axis is left)."""
    dims = _input(model).type.tensor_type.shape.dim
    for d, v in zip(dims[1:], input_shape):
        d.ClearField("dim_param")
        d.dim_value = int(v)


def image_hw(input_shape, layout: str) -> tuple:
    """(H, W) of a per-image shape in ``layout``."""
    return (input_shape[1], input_shape[2]) if layout == "NCHW" else \
        (input_shape[0], input_shape[1])
