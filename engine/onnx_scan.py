"""A minimal protobuf wire-format reader for what the engine must know about an ONNX file before
ONNX Runtime opens it: every external-data location, and the declared inputs and outputs of the
main graph (names, element types, dimensions).

The run-time engine must not need the ``onnx`` package. The reader is iterative (an explicit
stack, never Python recursion), bounded (at most MAX_DEPTH nested messages) and copy-free (it
walks offsets into one ``memoryview``), so a hostile file costs time linear in its size and no
memory beyond it. Only the fields on the way to what it reports are decoded (field numbers
from onnx.proto):

ModelProto.graph = 7; ModelProto.functions = 25 (FunctionProto.node = 7);
GraphProto.node = 1, initializer = 5, input = 11, output = 12, sparse_initializer = 15
(values = 1, indices = 2); NodeProto.attribute = 5; AttributeProto.t = 5, g = 6, tensors = 10,
graphs = 11, sparse_tensor = 22, sparse_tensors = 23; TensorProto.name = 8,
external_data = 13 (StringStringEntryProto key = 1, value = 2); ValueInfoProto.name = 1,
type = 2; TypeProto.tensor_type = 1; TypeProto.Tensor.elem_type = 1, shape = 2;
TensorShapeProto.dim = 1; Dimension.dim_value = 1, dim_param = 2.
"""
from __future__ import annotations

from dataclasses import dataclass, field

#: the deepest message nesting accepted (a model, its graph, a node, an attribute, a subgraph,
#: ...: 4 levels per nested subgraph, so about 15 nested If/Loop bodies)
MAX_DEPTH = 64


@dataclass
class ModelInfo:
    """What :func:`scan_model` found. ``inputs``/``outputs``: name -> (elem_type, dims) of the
    main graph (initializers excluded), dims an int, a str (symbolic) or None (unknown); dims
    itself None when the shape is not declared."""

    locations: list = field(default_factory=list)
    inputs: dict = field(default_factory=dict)
    outputs: dict = field(default_factory=dict)


def _varint(buf, pos: int, end: int):
    result, shift = 0, 0
    while True:
        if pos >= end:
            raise ValueError("truncated protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed protobuf varint")


def _fields(buf, start: int, end: int):
    """Yield (field number, wire type, value) of the message at buf[start:end]; for wire type 2
    the value is the (start, end) of the bytes, for the others the number (or None)."""
    pos = start
    while pos < end:
        key, pos = _varint(buf, pos, end)
        number, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos, end)
        elif wire == 1:
            value, pos = None, pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end)
            if length > end - pos:
                raise ValueError("truncated protobuf field")
            value, pos = (pos, pos + length), pos + length
        elif wire == 5:
            value, pos = None, pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield number, wire, value


# message kind -> {field number: kind of the nested message}
_CHILDREN = {
    "model": {7: "graph", 25: "function"},
    "function": {7: "node"},
    "graph": {1: "node", 5: "tensor", 15: "sparse"},
    "node": {5: "attr"},
    "attr": {5: "tensor", 10: "tensor", 6: "graph", 11: "graph", 22: "sparse", 23: "sparse"},
    "sparse": {1: "tensor", 2: "tensor"},
    "tensor": {13: "entry"},
}


def _text(buf, span, what: str) -> str:
    try:
        return str(buf[span[0]:span[1]], "utf-8")      # strict: no replacement characters
    except UnicodeDecodeError:
        raise ValueError(f"{what} is not valid UTF-8: "
                         f"{bytes(buf[span[0]:span[1]][:64])!r}") from None


def _entry(buf, start, end, info: ModelInfo) -> None:
    kv = {n: v for n, w, v in _fields(buf, start, end) if w == 2}
    if 1 in kv and _text(buf, kv[1], "an external-data key") == "location":
        info.locations.append(_text(buf, kv.get(2, (0, 0)), "an external-data location"))


def _value_info(buf, start, end):
    """(name, (elem_type, dims)) of a ValueInfoProto."""
    name, elem, dims = "", 0, None
    for n, w, v in _fields(buf, start, end):
        if n == 1 and w == 2:
            name = _text(buf, v, "a graph input/output name")
        elif n == 2 and w == 2:
            for tn, tw, tv in _fields(buf, *v):
                if tn != 1 or tw != 2:
                    continue
                for en, ew, ev in _fields(buf, *tv):
                    if en == 1 and ew == 0:
                        elem = ev
                    elif en == 2 and ew == 2:
                        dims = [_dim(buf, dv) for dn, dw, dv in _fields(buf, *ev)
                                if dn == 1 and dw == 2]
    return name, (elem, dims)


def _dim(buf, span):
    out = None
    for n, w, v in _fields(buf, *span):
        if n == 1 and w == 0:
            out = v if v < 1 << 62 else None
        elif n == 2 and w == 2:
            out = _text(buf, v, "a dimension name")
    return out


def scan_model(model_bytes) -> ModelInfo:
    """Scan a serialized ONNX ModelProto (bytes, bytearray, mmap or memoryview).

    Raises ValueError for anything that is not a readable ModelProto with a graph, for nesting
    deeper than MAX_DEPTH and for external-data keys or locations that are not UTF-8."""
    buf = memoryview(model_bytes).cast("B") if not isinstance(model_bytes, memoryview) \
        else model_bytes.cast("B")
    info = ModelInfo()
    graphs = [v for n, w, v in _fields(buf, 0, len(buf)) if n == 7 and w == 2]
    if not graphs:
        raise ValueError("no graph found")
    main = graphs[-1]           # protobuf: the last occurrence of a singular field wins
    _main_graph(buf, *main, info)
    stack = [("model", 0, len(buf), 0)]
    while stack:
        kind, start, end, depth = stack.pop()
        if depth > MAX_DEPTH:
            raise ValueError(f"messages nested deeper than {MAX_DEPTH} levels")
        if kind == "entry":
            _entry(buf, start, end, info)
            continue
        children = _CHILDREN[kind]
        found = [(children[n], *v, depth + 1) for n, w, v in _fields(buf, start, end)
                 if w == 2 and n in children]
        stack.extend(reversed(found))       # depth first, in file order
    return info


def _main_graph(buf, start, end, info: ModelInfo) -> None:
    initializers = set()
    ios = []
    for n, w, v in _fields(buf, start, end):
        if w != 2:
            continue
        if n == 5:
            for tn, tw, tv in _fields(buf, *v):
                if tn == 8 and tw == 2:
                    initializers.add(_text(buf, tv, "an initializer name"))
        elif n in (11, 12):
            ios.append((n, _value_info(buf, *v)))
    for n, (name, typ) in ios:
        if n == 11 and name not in initializers:
            info.inputs[name] = typ
        elif n == 12:
            info.outputs[name] = typ


def external_data_locations(model_bytes) -> list:
    """Every ``location`` of external data in a serialized ONNX ModelProto, in file order."""
    return scan_model(model_bytes).locations
