"""The one ONNX graph builder of the export code (plain ``onnx.helper``): the multiplier
graphs (``lift/``), the explain graphs (``fuse.py``) and the α graph (``partial_sums.py``) all
emit their nodes, constants and opset-dependent Reduce* signatures through it.

    b = GraphBuilder(opset=17)
    x = b.add_input("x", onnx.TensorProto.FLOAT, ["N", 3])
    y = b.op("Relu", x)
    w = b.const(np.ones((3, 2), np.float32), "w")
    z = b.op("Gemm", y, w, transB=0)
    b.add_output(z, onnx.TensorProto.FLOAT, ["N", 2], name="z")
    model = b.make_model()

Names are unique within the builder: every name it hands out (tensor or node) is
checked against the names it already knows, including the ones of nodes and
initializers copied in with :meth:`add_node` / :meth:`add_initializer`.
"""
from __future__ import annotations

import re
from typing import Iterable, Optional, Sequence

import numpy as np
import onnx
from onnx import helper, numpy_helper

from liftcam.engine.errors import ExportError

#: the opset from which each reduction takes ``axes`` as an input instead of an attribute
REDUCE_AXES_INPUT_FROM = {
    "ReduceSum": 13,
    **{op: 18 for op in ("ReduceMean", "ReduceMax", "ReduceMin", "ReduceProd", "ReduceL1",
                         "ReduceL2", "ReduceLogSum", "ReduceLogSumExp", "ReduceSumSquare")},
}


def default_opset(model: onnx.ModelProto) -> int:
    """The version of the default (``ai.onnx``) domain that ``model`` imports."""
    for o in model.opset_import:
        if o.domain in ("", "ai.onnx"):
            return int(o.version)
    raise ExportError("the model has no default-domain opset import")


def reduce_axes_as_input(op_type: str, opset: int) -> bool:
    """Whether ``op_type`` takes its axes as an input (True) or an attribute at ``opset``:
    ReduceSum from opset 13, every other Reduce* from opset 18."""
    if op_type not in REDUCE_AXES_INPUT_FROM:
        raise ValueError(f"{op_type!r} is not a Reduce* op")
    return int(opset) >= REDUCE_AXES_INPUT_FROM[op_type]


class GraphBuilder:
    """Collects nodes, initializers, inputs and outputs; makes an ``onnx.ModelProto``."""

    def __init__(self, opset: int = 17, name: str = "graph", prefix: str = ""):
        self.opset = int(opset)
        self.name = name
        self.prefix = prefix
        self.nodes: list[onnx.NodeProto] = []
        self.initializers: list[onnx.TensorProto] = []
        self.inputs: list[onnx.ValueInfoProto] = []
        self.outputs: list[onnx.ValueInfoProto] = []
        self.extra_opsets: dict[str, int] = {}
        self._names: set[str] = set()
        self._counter = 0

    # ------------------------------------------------------------------ names
    def reserve(self, names: Iterable[str]) -> None:
        """Mark names as taken (names of a graph copied in by hand)."""
        self._names.update(n for n in names if n)

    def unique(self, hint: str = "t") -> str:
        hint = re.sub(r"[^A-Za-z0-9_./:\-]", "_", hint or "t")
        base = f"{self.prefix}{hint}"
        name = base
        while name in self._names:
            self._counter += 1
            name = f"{base}_{self._counter}"
        self._names.add(name)
        return name

    # ------------------------------------------------------------------ values
    def const(self, value, name_hint: str = "const", dtype=None) -> str:
        """Add ``value`` as an initializer; returns its (unique) name."""
        arr = np.asarray(value, dtype=dtype)
        name = self.unique(name_hint)
        self.initializers.append(numpy_helper.from_array(arr, name))
        return name

    def add_initializer(self, tensor: onnx.TensorProto) -> str:
        self._names.add(tensor.name)
        self.initializers.append(tensor)
        return tensor.name

    def add_input(self, name: str, elem_type: int, shape: Sequence) -> str:
        self._names.add(name)
        self.inputs.append(helper.make_tensor_value_info(name, elem_type, list(shape)))
        return name

    def add_output(self, value: str, elem_type: int, shape: Sequence,
                   name: Optional[str] = None) -> str:
        """Declare ``value`` a graph output (renamed to ``name`` with an Identity if given)."""
        if name is not None and name != value:
            value = self.op("Identity", value, out_name=name, name_hint=f"{name}_out")
        self.outputs.append(helper.make_tensor_value_info(value, elem_type, list(shape)))
        return value

    # ------------------------------------------------------------------ nodes
    def add_node(self, node: onnx.NodeProto) -> None:
        """Copy a ready-made node in (its names are reserved)."""
        self._names.update(n for n in node.output if n)
        if node.name:
            self._names.add(node.name)
        self.nodes.append(node)

    def op_multi(self, op_type: str, inputs: Sequence[Optional[str]], n_outputs: int,
                 name_hint: Optional[str] = None, domain: str = "", **attrs) -> list[str]:
        hint = name_hint or op_type
        outs = [self.unique(f"{hint}_out{i}" if n_outputs > 1 else f"{hint}_out")
                for i in range(n_outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, [i if i is not None else "" for i in inputs], outs,
                                name=self.unique(hint), domain=domain or None, **attrs)
        self.nodes.append(node)
        return outs

    def op(self, op_type: str, *inputs: Optional[str], name_hint: Optional[str] = None,
           domain: str = "", out_name: Optional[str] = None, **attrs) -> str:
        """Emit one node with one output; returns the output name (``out_name`` exactly, when
        given: a graph output or a name other nodes already refer to)."""
        if out_name is None:
            return self.op_multi(op_type, inputs, 1, name_hint=name_hint, domain=domain,
                                 **attrs)[0]
        self._names.add(out_name)
        attrs = {k: v for k, v in attrs.items() if v is not None}
        self.nodes.append(helper.make_node(
            op_type, [i if i is not None else "" for i in inputs], [out_name],
            name=self.unique(name_hint or out_name), domain=domain or None, **attrs))
        return out_name

    # ------------------------------------------------------- opset-aware helpers
    def ints(self, values, hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def scalar(self, value: float, hint: str = "c", dtype=np.float32) -> str:
        return self.const(np.asarray(value, dtype=dtype), hint)

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: int = 1,
               out_name: Optional[str] = None) -> str:
        """A Reduce* node over ``axes``, which go in as an input or an attribute as this
        opset's signature of ``op_type`` wants (see :func:`reduce_axes_as_input`)."""
        axes = [int(a) for a in axes]
        if reduce_axes_as_input(op_type, self.opset):
            return self.op(op_type, x, self.ints(axes, "axes"), keepdims=keepdims,
                           out_name=out_name)
        return self.op(op_type, x, axes=axes, keepdims=keepdims, out_name=out_name)

    def zeros_like(self, x: str) -> str:
        """A float32 tensor of zeros shaped like ``x``."""
        zero = helper.make_tensor("zero", onnx.TensorProto.FLOAT, [1], [0.0])
        return self.op("ConstantOfShape", self.op("Shape", x), value=zero)

    def unsqueeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Unsqueeze", x, self.ints(list(axes), "axes"))

    def squeeze(self, x: str, axes: Sequence[int]) -> str:
        return self.op("Squeeze", x, self.ints(list(axes), "axes"))

    def slice(self, x: str, starts, ends, axes, steps=None) -> str:
        ins = [x, self.ints(starts, "starts"), self.ints(ends, "ends"), self.ints(axes, "axes")]
        if steps is not None:
            ins.append(self.ints(steps, "steps"))
        return self.op("Slice", *ins)

    def pad(self, x: str, pads, value: Optional[float] = None) -> str:
        ins = [x, self.ints(pads, "pads")]
        if value is not None:
            ins.append(self.scalar(value, "pad_value"))
        return self.op("Pad", *ins, mode="constant")

    # ------------------------------------------------------------------ model
    def make_graph(self) -> onnx.GraphProto:
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs,
                                 self.initializers)

    def make_model(self, ir_version: Optional[int] = None, producer: str = "liftcam",
                   opset_imports: Optional[Sequence[onnx.OperatorSetIdProto]] = None
                   ) -> onnx.ModelProto:
        if opset_imports is None:
            opset_imports = [helper.make_opsetid("", self.opset)]
            opset_imports += [helper.make_opsetid(d, v) for d, v in self.extra_opsets.items()]
        model = helper.make_model(self.make_graph(), opset_imports=list(opset_imports),
                                  producer_name=producer)
        if ir_version is not None:
            model.ir_version = ir_version
        return model
