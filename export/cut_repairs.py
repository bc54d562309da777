"""What makes a cut possible where the plain graph analysis of ``split.py`` says no.

- **Shape reads across the cut** (DESIGN.md §2): a tensor from before the cut that the head
  needs only through ``Shape`` (efficientnet_pytorch's ``bs = inputs.size(0)`` ...
  ``x.view(bs, -1)``) is no skip connection. :func:`shape_only` tells such tensors apart and
  :func:`rederive_shape_reads` gives the head its own copy of their computation, with each
  ``Shape(X)`` rebuilt from the activation: ``concat(shape(activation)[:1], X's static dims)``
  (the batch axis is axis 0 of every tensor; verification at two batch sizes checks that).
- **Shapes that ONNX shape inference leaves unknown** (TF-style "same" padding with computed
  pads): :func:`measured_shapes` runs the model once in ONNX Runtime with every float tensor
  as an extra output and reads their shapes.
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import helper, numpy_helper

SHAPE_OPS = {"Shape", "Size"}


def shape_only(graph: onnx.GraphProto, name: str, image: str, prod=None, memo=None) -> bool:
    """True when ``name`` depends on the image only through Shape nodes (or not at all).

    Iterative (an explicit stack): the walk back to the image can be thousands of nodes deep
    (transformers' BiT, weight-standardised convolutions), beyond Python's recursion limit."""
    prod = prod if prod is not None else {o: n for n in graph.node for o in n.output if o}
    memo = memo if memo is not None else {}
    stack = [name]
    while stack:
        t = stack[-1]
        if t in memo:
            stack.pop()
            continue
        node = prod.get(t)
        if node is None:
            memo[t] = t != image        # an initializer or a constant graph input
        elif node.op_type in SHAPE_OPS:
            memo[t] = node.op_type == "Shape"
        else:
            todo = [i for i in node.input if i and i not in memo]
            if todo:
                stack.extend(todo)
                continue
            memo[t] = all(memo[i] for i in node.input if i)
        stack.pop()
    return memo[name]


def classify_crossing(graph: onnx.GraphProto, image: str, head_nodes, feat_tensors: set,
                      tensor: str):
    """Split what the head needs from before the cut into ``(crossing, reads)``: genuine skip
    connections, and shape reads (a Shape of a pre-cut tensor, or a pre-cut tensor computed
    from shapes only) that :func:`rederive_shape_reads` can rebuild from the activation."""
    prod = {o: n for n in graph.node for o in n.output if o}
    memo: dict = {}
    crossing, reads = [], []
    for node in head_nodes:
        for name in node.input:
            if name not in feat_tensors or name == tensor:
                continue
            if node.op_type == "Shape":
                read = node.output[0]
            elif shape_only(graph, name, image, prod, memo):
                read = name
            else:
                if name not in crossing:
                    crossing.append(name)
                continue
            if read not in reads:
                reads.append(read)
    return crossing, reads


def _topo_sort(graph: onnx.GraphProto) -> None:
    """Reorder the nodes topologically (stable: the original order where it already is)."""
    nodes = list(graph.node)
    prod = {o: k for k, n in enumerate(nodes) for o in n.output if o}
    deps = [{prod[i] for i in n.input if i in prod} for n in nodes]
    done, order = set(), []
    for k in range(len(nodes)):
        stack = [k]
        while stack:
            j = stack[-1]
            if j in done:
                stack.pop()
                continue
            todo = [d for d in deps[j] if d not in done]
            if todo:
                stack.extend(todo)
            else:
                done.add(j)
                order.append(j)
                stack.pop()
    del graph.node[:]
    graph.node.extend(nodes[k] for k in order)


def rederive_shape_reads(model: onnx.ModelProto, tensor: str, reads: list,
                         shapes: dict) -> None:
    """Give the head its own computation of each tensor in ``reads`` (shape-only tensors from
    before the cut), rebuilt from ``tensor`` (the activation); in place.

    ``shapes``: per-image static shapes (batch 1) of the float tensors, with the image's.
    """
    graph = model.graph
    prod = {o: n for n in graph.node for o in n.output if o}
    suffix = "__liftcam_head"
    act_shape = None
    new_nodes, cloned = [], {}

    def clone(name):
        if name in cloned:
            return cloned[name]
        node = prod.get(name)
        if node is None:                    # initializer / constant: shared as it is
            cloned[name] = name
            return name
        if node.op_type == "Shape":
            nonlocal act_shape
            dims = shapes.get(node.input[0])
            if dims is None or None in dims[1:]:
                raise KeyError(node.input[0])
            if act_shape is None:
                act_shape = tensor + "__liftcam_shape"
                whole = act_shape + "_all"
                new_nodes.append(helper.make_node("Shape", [tensor], [whole], name=whole))
                new_nodes.append(helper.make_node(
                    "Slice", [whole, _int_init(graph, [0], act_shape + "_s"),
                              _int_init(graph, [1], act_shape + "_e")], [act_shape],
                    name=act_shape))
            rest = numpy_helper.from_array(np.asarray(dims[1:], np.int64),
                                           node.output[0] + suffix + "_dims")
            graph.initializer.append(rest)
            full = node.output[0] + suffix + "_full"
            new_nodes.append(helper.make_node("Concat", [act_shape, rest.name], [full], axis=0,
                                              name=full))
            out = node.output[0] + suffix
            attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
            start, end = attrs.get("start", 0), attrs.get("end", None)
            rank = len(dims)
            end = rank if end is None else end
            new_nodes.append(helper.make_node(
                "Slice", [full, _int_init(graph, [start], out + "_s"),
                          _int_init(graph, [end if end >= 0 else end + rank], out + "_e")],
                [out], name=out))
            cloned[name] = out
            return out
        ins = [clone(i) if i else "" for i in node.input]
        outs = [o + suffix if o else "" for o in node.output]
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        del copy.input[:]
        copy.input.extend(ins)
        del copy.output[:]
        copy.output.extend(outs)
        copy.name = (node.name or node.output[0]) + suffix
        new_nodes.append(copy)
        for o, c in zip(node.output, outs):
            cloned[o] = c
        return cloned[name]

    rename = {r: clone(r) for r in reads}
    from liftcam.export.split import _needed_nodes

    feat = set(_needed_nodes(graph, [tensor]))
    for k, node in enumerate(graph.node):
        if k in feat:
            continue
        for i, name in enumerate(node.input):
            if name in rename:
                node.input[i] = rename[name]
    graph.node.extend(new_nodes)
    _topo_sort(graph)


def _int_init(graph, values, name) -> str:
    graph.initializer.append(numpy_helper.from_array(np.asarray(values, np.int64), name))
    return name


def measured_shapes(model: onnx.ModelProto, input_shape, image: str) -> dict:
    """Per-image shapes (batch 1) of every float node output, by running the model once."""
    import onnxruntime as ort

    m = onnx.ModelProto()
    m.CopyFrom(model)
    outs = {o.name for o in m.graph.output}
    for node in m.graph.node:
        for o in node.output:
            if o and o not in outs:
                vi = onnx.ValueInfoProto()
                vi.name = o
                m.graph.output.append(vi)
                outs.add(o)
    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    sess = ort.InferenceSession(m.SerializeToString(), so, providers=["CPUExecutionProvider"])
    x = np.zeros((1, *input_shape), np.float32)
    names = [o.name for o in sess.get_outputs()]
    shapes = {}
    for name, v in zip(names, sess.run(names, {image: x})):
        v = np.asarray(v)
        if v.dtype == np.float32:
            shapes[name] = tuple(int(d) for d in v.shape)
    return shapes
