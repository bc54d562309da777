"""A small ONNX graph builder shared by the export code (plain ``onnx.helper``).

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

    def add_output(self, value: str, elem_type: int, shape: Sequence, name: Optional[str] = None) -> str:
        """Declare ``value`` a graph output (renamed to ``name`` with an Identity if given)."""
        if name is not None and name != value:
            self._names.add(name)
            self.nodes.append(helper.make_node("Identity", [value], [name], name=self.unique(f"{name}_out")))
            value = name
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
        outs = [self.unique(f"{hint}_out{i}" if n_outputs > 1 else f"{hint}_out") for i in range(n_outputs)]
        attrs = {k: v for k, v in attrs.items() if v is not None}
        node = helper.make_node(op_type, [i if i is not None else "" for i in inputs], outs,
                                name=self.unique(hint), domain=domain or None, **attrs)
        self.nodes.append(node)
        return outs

    def op(self, op_type: str, *inputs: Optional[str], name_hint: Optional[str] = None,
           domain: str = "", **attrs) -> str:
        """Emit one node with one output; returns the output name."""
        return self.op_multi(op_type, inputs, 1, name_hint=name_hint, domain=domain, **attrs)[0]

    # ------------------------------------------------------- opset-aware helpers
    def ints(self, values, hint: str = "ints") -> str:
        return self.const(np.asarray(values, dtype=np.int64), hint)

    def scalar(self, value: float, hint: str = "c", dtype=np.float32) -> str:
        return self.const(np.asarray(value, dtype=dtype), hint)

    def reduce(self, op_type: str, x: str, axes: Sequence[int], keepdims: int = 1) -> str:
        """ReduceSum/ReduceMean/ReduceMax with axes as input or attribute, as the opset wants."""
        axes = [int(a) for a in axes]
        as_input = self.opset >= 18 or (op_type == "ReduceSum" and self.opset >= 13)
        if as_input:
            return self.op(op_type, x, self.ints(axes, "axes"), keepdims=keepdims)
        return self.op(op_type, x, axes=axes, keepdims=keepdims)

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
        return helper.make_graph(self.nodes, self.name, self.inputs, self.outputs, self.initializers)

    def make_model(self, ir_version: Optional[int] = None, producer: str = "liftcam",
                   opset_imports: Optional[Sequence[onnx.OperatorSetIdProto]] = None) -> onnx.ModelProto:
        if opset_imports is None:
            opset_imports = [helper.make_opsetid("", self.opset)]
            opset_imports += [helper.make_opsetid(d, v) for d, v in self.extra_opsets.items()]
        model = helper.make_model(self.make_graph(), opset_imports=list(opset_imports),
                                  producer_name=producer)
        if ir_version is not None:
            model.ir_version = ir_version
        return model
