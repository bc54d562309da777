"""Head graph -> multipliers graph: copy the forward nodes, then walk backwards from the logits.

    build_multipliers_model(head, "deeplift")
    # inputs activation, target; outputs logits, multipliers

Which op gets which rule, and which ops are refused, is ``registry.py``'s table.
"""
from __future__ import annotations

from collections import defaultdict

import numpy as np
import onnx
from onnx import helper

from liftcam.contract import ACTIVATION, LOGITS, MULTIPLIERS, TARGET
from liftcam.engine.errors import ExportError, UnsupportedOpError
from liftcam.export.graph import GraphBuilder, default_opset
from liftcam.export.lift.context import RuleContext
from liftcam.export.lift.registry import REFUSED, RULES, check_rule

MIN_OPSET, CONVERT_OPSET = 13, 17


def _prepare(head: onnx.ModelProto) -> onnx.ModelProto:
    """Check the head's interface and opset; return a copy with input/output renamed."""
    model = onnx.ModelProto()
    model.CopyFrom(head)
    g = model.graph
    init_names = {i.name for i in g.initializer}
    real_inputs = [i for i in g.input if i.name not in init_names]
    if len(real_inputs) != 1 or len(g.output) != 1:
        raise ExportError(
            f"a head must have exactly one input (the activation) and one output (the logits); "
            f"got inputs {[i.name for i in real_inputs]} and outputs {[o.name for o in g.output]}")
    if real_inputs[0].type.tensor_type.elem_type != onnx.TensorProto.FLOAT:
        raise ExportError("the head's input must be float32")
    if default_opset(model) < MIN_OPSET:
        try:
            model = onnx.version_converter.convert_version(model, CONVERT_OPSET)
        except Exception as e:  # pragma: no cover - depends on the converter
            raise ExportError(f"cannot convert the head from opset {default_opset(head)} to "
                              f"{CONVERT_OPSET}: {e}") from e
        g = model.graph
    in_name, out_name = real_inputs[0].name, g.output[0].name
    # rename: input -> activation, output -> logits, anything else using a reserved name -> fresh
    taken = {n for node in g.node for n in list(node.input) + list(node.output)} | init_names
    rename = {in_name: ACTIVATION, out_name: LOGITS}
    for r in (ACTIVATION, TARGET, LOGITS, MULTIPLIERS):
        if r in taken and r not in (in_name, out_name):
            k = 0
            while f"{r}_head{k}" in taken:
                k += 1
            rename[r] = f"{r}_head{k}"
    if in_name == out_name:
        raise ExportError("the head's input and output are the same tensor")

    def rn(n):
        return rename.get(n, n)
    for node in g.node:
        graph_attrs = (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
        if any(a.type in graph_attrs for a in node.attribute):
            raise UnsupportedOpError(f"{node.op_type} node {node.name!r} has a subgraph; control "
                                     f"flow is not supported in a head")
        for i, n in enumerate(node.input):
            node.input[i] = rn(n)
        for i, n in enumerate(node.output):
            node.output[i] = rn(n)
    for t in g.initializer:
        t.name = rn(t.name)
    for v in list(g.input) + list(g.output) + list(g.value_info):
        v.name = rn(v.name)
    return model


def _run_all(model: onnx.ModelProto, feed: dict) -> dict:
    """Run ``model`` with onnxruntime and return every node output (and the inputs)."""
    import onnxruntime as ort
    g = model.graph
    n_out = len(g.output)
    outs = {o.name for o in g.output}
    try:  # expose every node output for one serialisation, then restore the graph
        for node in g.node:
            for o in node.output:
                if o and o not in outs:
                    vi = onnx.ValueInfoProto()
                    vi.name = o
                    g.output.append(vi)
                    outs.add(o)
        data = model.SerializeToString()
    finally:
        while len(g.output) > n_out:
            g.output.pop()
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    names = [o.name for o in sess.get_outputs()]
    vals = dict(zip(names, sess.run(names, feed)))
    vals.update(feed)
    return vals


class _Values(dict):
    """Node outputs computed by onnxruntime; initializers converted to numpy on first use."""

    def __init__(self, computed: dict, model: onnx.ModelProto):
        super().__init__(computed)
        self._inits = {t.name: t for t in model.graph.initializer}

    def __missing__(self, key):
        if key in self._inits:
            v = onnx.numpy_helper.to_array(self._inits[key])
            self[key] = v
            return v
        raise KeyError(key)

    def shapes(self) -> dict:
        out = {k: tuple(t.dims) for k, t in self._inits.items()}
        out.update({k: tuple(np.shape(v)) for k, v in dict.items(self)})
        return out


def _input_shape(model: onnx.ModelProto, batch: int) -> list[int]:
    inits = {t.name for t in model.graph.initializer}
    inp = [i for i in model.graph.input if i.name not in inits][0]
    dims = inp.type.tensor_type.shape.dim
    shape = []
    for k, d in enumerate(dims):
        if k == 0:
            shape.append(batch)
        elif d.HasField("dim_value"):
            shape.append(int(d.dim_value))
        else:
            raise ExportError(f"the head's input {inp.name!r} has a symbolic dimension {k} "
                              f"({d.dim_param!r}); only the batch axis (0) may be dynamic")
    return shape


def reference_values(head: onnx.ModelProto) -> dict:
    """Every tensor of the head at batch 1 on the all-zero activation A0 = 0 (names as in
    ``head``)."""
    inp = [i for i in head.graph.input if i.name not in {t.name for t in head.graph.initializer}][0]
    feed = {inp.name: np.zeros(_input_shape(head, 1), np.float32)}
    return _run_all(head, feed)


def _active_set(model: onnx.ModelProto, vals: dict) -> set:
    active = {ACTIVATION}
    for node in model.graph.node:
        if any(i in active for i in node.input):
            for o in node.output:
                if o and o in vals and np.asarray(dict.get(vals, o)).dtype.kind == "f":
                    active.add(o)
    return active


def _varying_set(model: onnx.ModelProto) -> set:
    """Tensors of any dtype whose values depend on the activation's values. ``Shape`` and
    ``Size`` read only its shape, so the shape arithmetic exporters emit stays constant."""
    varies = {ACTIVATION}
    for node in model.graph.node:
        if node.op_type not in ("Shape", "Size") and any(i in varies for i in node.input):
            varies.update(o for o in node.output if o)
    return varies


def _check_op(node: onnx.NodeProto) -> None:
    """Refuse a node on the backward path that the registry refuses or has no rule for."""
    if node.op_type in REFUSED:
        raise UnsupportedOpError(f"{node.op_type} node {node.name!r}: {REFUSED[node.op_type]}")
    if node.op_type not in RULES or node.domain not in ("", "ai.onnx"):
        raise UnsupportedOpError(
            f"op {node.op_type!r} (node {node.name!r}) has no multiplier rule; supported op "
            f"types: {', '.join(sorted(RULES))}")


def build_multipliers_model(head: onnx.ModelProto, rule: str) -> onnx.ModelProto:
    """The multipliers graph of ``head``:
    (activation (N,K,h,w), target (N,)) -> (logits, multipliers).

    ``rule`` is "deeplift" (DeepLIFT multipliers against A0 = 0, Captum's rules) or "gradient"
    (d logit_target / d activation). ``target < 0`` means the predicted class.
    """
    check_rule(rule)
    model = _prepare(head)
    g = model.graph
    opset = default_opset(model)
    shape1 = _input_shape(model, 1)
    ref = _Values(_run_all(model, {ACTIVATION: np.zeros(shape1, np.float32)}), model)
    zeros2 = np.zeros(_input_shape(model, 2), np.float32)
    vals2 = _Values(_run_all(model, {ACTIVATION: zeros2}), model)
    shapes1, shapes2 = ref.shapes(), vals2.shapes()
    del vals2
    active, varies = _active_set(model, ref), _varying_set(model)
    out_shape = shapes1[LOGITS]
    if len(out_shape) != 2:
        raise ExportError(f"the head's output must be logits of shape (N, C); got shape "
                          f"{out_shape} at batch 1")
    n_classes = int(out_shape[1])

    b = GraphBuilder(opset=opset, name=f"{g.name or 'head'}_multipliers_{rule}")
    for node in g.node:
        b.reserve(list(node.input) + list(node.output) + [node.name])
    b.reserve(t.name for t in g.initializer)
    b.reserve([ACTIVATION, TARGET, LOGITS, MULTIPLIERS])
    b.extra_opsets = {o.domain: o.version for o in model.opset_import
                      if o.domain not in ("", "ai.onnx")}
    b.add_input(ACTIVATION, onnx.TensorProto.FLOAT, ["N"] + list(shape1[1:]))
    b.add_input(TARGET, onnx.TensorProto.INT64, ["N"])
    for t in g.initializer:
        b.add_initializer(t)
    for node in g.node:
        b.add_node(node)

    # which tensors lie on an active path to the logits
    relevant = {LOGITS}
    for node in reversed(g.node):
        if any(o in relevant for o in node.output):
            relevant.update(i for i in node.input if i in active)
    todo = [n for n in reversed(g.node) if any(o in relevant for o in n.output)
            and any(i in active and i in relevant for i in n.input)]
    for node in todo:
        _check_op(node)

    # seed: one-hot of the target (the predicted class where target < 0)
    argmax = b.op("ArgMax", LOGITS, axis=1, keepdims=0)
    negative = b.op("Less", TARGET, b.const(np.array(0, np.int64), "zero_i64"))
    tgt = b.op("Where", negative, argmax, TARGET)
    classes = b.const(np.arange(n_classes, dtype=np.int64), "classes")
    onehot = b.op("Equal", b.unsqueeze(tgt, [1]), classes)
    seed = b.op("Cast", onehot, to=onnx.TensorProto.FLOAT, name_hint="seed")

    contribs: dict[str, list] = defaultdict(list)
    contribs[LOGITS].append(seed)
    x0_cache: dict = {}

    def total(name):
        parts = contribs.get(name)
        if not parts:
            return None
        acc = parts[0]
        for p in parts[1:]:
            acc = b.op("Add", acc, p, name_hint=f"sum_{name}")
        return acc

    for node in todo:
        m_outs = [total(o) if o else None for o in node.output]
        if all(m is None for m in m_outs):
            continue
        ctx = RuleContext(b=b, node=node, rule=rule, ref=ref, shapes1=shapes1, shapes2=shapes2,
                          active=active, varies=varies, _x0_cache=x0_cache)
        m_ins = RULES[node.op_type](ctx, m_outs)
        if len(m_ins) < len(node.input):
            m_ins = list(m_ins) + [None] * (len(node.input) - len(m_ins))
        for inp, m in zip(node.input, m_ins):
            if m is not None and inp in active and inp in relevant:
                contribs[inp].append(m)

    mult = total(ACTIVATION)
    if mult is None:
        mult = b.zeros_like(ACTIVATION)
    b.add_output(LOGITS, onnx.TensorProto.FLOAT, ["N", n_classes])
    b.add_output(mult, onnx.TensorProto.FLOAT, ["N"] + list(shape1[1:]), name=MULTIPLIERS)
    out = b.make_model(ir_version=model.ir_version,
                       opset_imports=[helper.make_opsetid("", opset)] +
                       [helper.make_opsetid(d, v) for d, v in b.extra_opsets.items()])
    out.producer_name = "liftcam"
    out.doc_string = f"liftcam multipliers graph, rule={rule}"
    return out
