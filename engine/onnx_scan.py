"""A minimal protobuf wire-format reader: the external-data locations an ONNX file refers to.

The run-time engine must not need the ``onnx`` package, yet a bundle's ``.onnx`` files must be
checked for external-data paths that leave the bundle before ONNX Runtime opens them. Only the
few fields on the way to ``TensorProto.external_data`` are decoded (field numbers from onnx.proto):

ModelProto.graph = 7; ModelProto.functions = 25 (FunctionProto.node = 7);
GraphProto.node = 1, initializer = 5, sparse_initializer = 15 (values = 1, indices = 2);
NodeProto.attribute = 5; AttributeProto.t = 5, g = 6, tensors = 10, graphs = 11,
sparse_tensor = 22, sparse_tensors = 23 (SparseTensorProto values = 1, indices = 2);
TensorProto.external_data = 13 (StringStringEntryProto key = 1, value = 2).
"""
from __future__ import annotations


def _varint(buf: bytes, pos: int):
    result, shift = 0, 0
    while True:
        if pos >= len(buf):
            raise ValueError("truncated protobuf varint")
        b = buf[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7
        if shift > 63:
            raise ValueError("malformed protobuf varint")


def _fields(buf: bytes):
    """Yield (field number, wire type, value) of one message; value is bytes for wire type 2."""
    pos, end = 0, len(buf)
    while pos < end:
        key, pos = _varint(buf, pos)
        field, wire = key >> 3, key & 7
        if wire == 0:
            value, pos = _varint(buf, pos)
        elif wire == 1:
            value, pos = buf[pos:pos + 8], pos + 8
        elif wire == 2:
            length, pos = _varint(buf, pos)
            if pos + length > end:
                raise ValueError("truncated protobuf field")
            value, pos = buf[pos:pos + length], pos + length
        elif wire == 5:
            value, pos = buf[pos:pos + 4], pos + 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire}")
        if pos > end:
            raise ValueError("truncated protobuf message")
        yield field, wire, value


def _sub(buf: bytes, number: int):
    for field, wire, value in _fields(buf):
        if field == number and wire == 2:
            yield value


def _tensor(buf: bytes, out: list) -> None:
    for entry in _sub(buf, 13):
        kv = {f: v for f, w, v in _fields(entry) if w == 2}
        if kv.get(1, b"") == b"location":
            out.append(kv.get(2, b"").decode("utf-8", "replace"))


def _node(buf: bytes, out: list) -> None:
    for attr in _sub(buf, 5):
        for field, wire, value in _fields(attr):
            if wire != 2:
                continue
            if field in (5, 10):
                _tensor(value, out)
            elif field in (6, 11):
                _graph(value, out)
            elif field in (22, 23):     # sparse_tensor(s): values = 1, indices = 2
                for part in (*_sub(value, 1), *_sub(value, 2)):
                    _tensor(part, out)


def _graph(buf: bytes, out: list) -> None:
    for field, wire, value in _fields(buf):
        if wire != 2:
            continue
        if field == 1:
            _node(value, out)
        elif field == 5:
            _tensor(value, out)
        elif field == 15:
            for part in (*_sub(value, 1), *_sub(value, 2)):
                _tensor(part, out)


def external_data_locations(model_bytes: bytes) -> list:
    """Every ``location`` of external data in a serialized ONNX ModelProto, in file order."""
    out: list = []
    seen_graph = False
    for field, wire, value in _fields(model_bytes):
        if field == 7 and wire == 2:
            seen_graph = True
            _graph(value, out)
        elif field == 25 and wire == 2:
            for node in _sub(value, 7):
                _node(node, out)
    if not seen_graph:
        raise ValueError("no graph found")
    return out
