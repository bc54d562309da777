"""Cut an ONNX classifier at one tensor into a *features* graph and a *head* graph.

Everything here works on ``onnx.ModelProto`` (build time; needs the ``onnx`` package):

- :func:`strip_final_softmax` -- a model that ends in Softmax/LogSoftmax gets the logits before it.
- :func:`activation_shapes` -- static shapes of every float tensor for one input shape.
- :func:`crossing_tensors` -- the tensors from before a cut that the head would still need
  (a skip connection crossing the cut); an empty list means the cut is clean.
- :func:`candidates` -- the 4-D tensors a user may cut at, best first, and :func:`default_cut`.
- :func:`split` -- the two graphs, with the cut tensor named ``activation`` and the output
  ``logits`` (names from :mod:`liftcam.contract`).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import onnx
from onnx import helper, shape_inference

from liftcam.contract import ACTIVATION, LOGITS  # noqa: F401  (importable from here too)
from liftcam.engine.errors import ExportError

# Ops whose output is a pooled (down-sampled or collapsed) version of their input: the default
# target layer is the last activation *before* these, as in the LIFT-CAM and Grad-CAM papers.
POOLING_OPS = {"MaxPool", "AveragePool", "GlobalAveragePool", "GlobalMaxPool", "LpPool",
               "GlobalLpPool", "ReduceMean", "ReduceMax"}
SOFTMAX_OPS = {"Softmax", "LogSoftmax"}


@dataclass
class Candidate:
    """One tensor the model can be cut at."""

    tensor: str                     # ONNX tensor name
    shape: tuple                    # (K, h, w): the per-image shape
    op: str                         # op type of the node that produces it
    index: int                      # position of its producer in topological order
    cuttable: bool                  # False when a skip connection crosses the cut
    crossing: list = field(default_factory=list)
    names: list = field(default_factory=list)   # module names (PyTorch) that output this tensor

    @property
    def name(self) -> str:
        return self.names[0] if self.names else self.tensor

    def as_dict(self) -> dict:
        return {"name": self.name, "tensor": self.tensor, "shape": list(self.shape),
                "op": self.op, "cuttable": self.cuttable, "crossing": list(self.crossing),
                "aliases": list(self.names[1:])}


def _graph_input(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    inits = {t.name for t in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        raise ExportError(
            f"the model has {len(inputs)} inputs ({[i.name for i in inputs]}); liftcam explains "
            "image classifiers with exactly one input (N,3,H,W)")
    return inputs[0]


def _graph_output(model: onnx.ModelProto) -> onnx.ValueInfoProto:
    if len(model.graph.output) != 1:
        raise ExportError(
            f"the model has {len(model.graph.output)} outputs "
            f"({[o.name for o in model.graph.output]}); liftcam needs exactly one (the logits); "
            "remove the others before exporting")
    return model.graph.output[0]


def producers(graph: onnx.GraphProto) -> dict:
    return {out: node for node in graph.node for out in node.output if out}


#: ops that can follow the final Softmax without changing what it means: no-ops on (N, C)
#: probabilities (paddle2onnx ends in Softmax -> Identity; others add a Cast or a Reshape)
TRAILING_NO_OPS = {"Identity", "Cast", "Reshape", "Flatten", "Squeeze", "Unsqueeze"}


def _no_op_after_softmax(node: onnx.NodeProto) -> bool:
    if node.op_type == "Cast":
        to = next((a.i for a in node.attribute if a.name == "to"), None)
        return to == onnx.TensorProto.FLOAT
    return node.op_type in TRAILING_NO_OPS


def strip_final_softmax(model: onnx.ModelProto):
    """If the output comes from Softmax/LogSoftmax (seen through trailing no-ops: Identity,
    Cast to float, Reshape/Flatten/Squeeze/Unsqueeze of (N, C) probabilities), make the logits
    before it the output.

    Returns ``(model, stripped_op_type or None)``; the model is modified in place.
    """
    out = _graph_output(model)
    prod = producers(model.graph)
    node = prod.get(out.name)
    hops = []
    while node is not None and _no_op_after_softmax(node):
        hops.append(node)
        node = prod.get(node.input[0])
    if node is None or node.op_type not in SOFTMAX_OPS:
        return model, None
    logits = node.input[0]
    keep = [n for n in model.graph.node if n is not node and all(n is not h for h in hops)]
    del model.graph.node[:]
    model.graph.node.extend(keep)
    _rename_tensor(model.graph, logits, out.name)
    out.type.tensor_type.ClearField("shape")
    return model, node.op_type


def _rename_tensor(graph: onnx.GraphProto, old: str, new: str) -> None:
    if old == new:
        return
    for node in graph.node:
        for i, name in enumerate(node.input):
            if name == old:
                node.input[i] = new
        for i, name in enumerate(node.output):
            if name == old:
                node.output[i] = new
    for vi in list(graph.value_info) + list(graph.output) + list(graph.input):
        if vi.name == old:
            vi.name = new


def activation_shapes(model: onnx.ModelProto, input_shape) -> dict:
    """Static per-image shapes of every float tensor, for an input of ``(1, *input_shape)``."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    inp = _graph_input(m)
    dims = inp.type.tensor_type.shape.dim
    if len(dims) != 1 + len(input_shape):
        raise ExportError(
            f"input {inp.name!r} has rank {len(dims)} but input_shape {tuple(input_shape)} "
            f"has {len(input_shape)} dims without the batch; pass input_shape=(C, H, W)")
    for d, v in zip(dims, (1, *input_shape)):
        d.ClearField("dim_param")
        d.dim_value = int(v)
    del m.graph.value_info[:]
    try:
        inferred = shape_inference.infer_shapes(m, data_prop=True)
    except Exception as exc:  # onnx raises several types here
        raise ExportError(f"ONNX shape inference failed on the model: {exc}") from exc
    shapes, known = {}, set()
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        tt = vi.type.tensor_type
        if not tt.HasField("shape"):
            continue
        dims = [d.dim_value if d.HasField("dim_value") else None for d in tt.shape.dim]
        if None not in dims:
            known.add(vi.name)
        if tt.elem_type == onnx.TensorProto.FLOAT:
            shapes[vi.name] = tuple(dims)
    if any(o and o not in known for node in m.graph.node for o in node.output):
        # inference gave up somewhere (computed pads of TF "same" padding, ...): measure
        from liftcam.export.cut_repairs import measured_shapes

        try:
            measured = measured_shapes(m, input_shape, inp.name)
        except Exception:   # the model does not run: keep what inference found
            measured = {}
        shapes.update(measured)
    return shapes


def _needed_nodes(graph: onnx.GraphProto, outputs, stop=()) -> list:
    """Indices of the nodes needed to compute ``outputs``, not expanding the tensors in ``stop``."""
    prod = {out: i for i, node in enumerate(graph.node) for out in node.output if out}
    seen, stack = set(), [o for o in outputs if o not in stop]
    visited_t = set(stack)
    while stack:
        t = stack.pop()
        i = prod.get(t)
        if i is None or i in seen:
            continue
        seen.add(i)
        for name in graph.node[i].input:
            if name and name not in stop and name not in visited_t:
                visited_t.add(name)
                stack.append(name)
    return sorted(seen)


def _crossing_and_reads(model: onnx.ModelProto, tensor: str):
    from liftcam.export.cut_repairs import classify_crossing

    graph = model.graph
    image = _graph_input(model).name
    out = _graph_output(model).name
    feat = set(_needed_nodes(graph, [tensor]))
    head = set(_needed_nodes(graph, [out], stop={tensor}))
    feat_tensors = {o for i in feat for o in graph.node[i].output} | {image}
    return classify_crossing(graph, image, [graph.node[i] for i in sorted(head - feat)],
                             feat_tensors, tensor)


def crossing_tensors(model: onnx.ModelProto, tensor: str) -> list:
    """Tensors computed before ``tensor`` (or the image itself) that the head would need.

    Shape reads (the head needs a pre-cut tensor only through ``Shape``: batch-size reads,
    static dims) do not count: :func:`split` re-derives them from the activation."""
    return _crossing_and_reads(model, tensor)[0]


def candidates(model: onnx.ModelProto, input_shape, names_by_tensor=None) -> list:
    """All 4-D float tensors on the way to the output, best first.

    Best first means: cuttable before not cuttable; among cuttable ones, the non-pooled
    activations with a spatial extent > 1 from the deepest to the shallowest, then the rest.
    ``names_by_tensor`` maps tensor names to module names (PyTorch) for display.
    """
    names_by_tensor = names_by_tensor or {}
    shapes = activation_shapes(model, input_shape)
    graph = model.graph
    out = _graph_output(model).name
    on_path = set(_needed_nodes(graph, [out]))
    result = []
    for i, node in enumerate(graph.node):
        if i not in on_path:
            continue
        for t in node.output:
            shape = shapes.get(t)
            if not t or shape is None or len(shape) != 4 or None in shape[1:]:
                continue
            crossing = crossing_tensors(model, t)
            result.append(Candidate(tensor=t, shape=tuple(shape[1:]), op=node.op_type, index=i,
                                    cuttable=not crossing, crossing=crossing,
                                    names=list(names_by_tensor.get(t, []))))

    def rank(c: Candidate):
        preferred = c.op not in POOLING_OPS and c.shape[1] * c.shape[2] > 1
        return (not c.cuttable, not preferred, -c.index)

    result.sort(key=rank)
    return result


def default_cut(cands: list, named_only: bool = False) -> Candidate:
    """The default target layer: the last un-pooled 4-D activation before pooling/flattening.

    It must sit in the last stage (the deepest candidate's resolution or coarser): when every
    candidate there is refused, the error names them and why, rather than falling back to a
    shallow layer. ``named_only``: consider only tensors that a module outputs (PyTorch models).
    """
    pool = [c for c in cands if (c.names or not named_only) and c.op not in POOLING_OPS
            and c.shape[1] * c.shape[2] > 1]
    if not pool:
        raise ExportError(
            "found no 4-D activation with a spatial extent > 1 that the model can be cut at; "
            "pass the target layer/tensor explicitly (see liftcam.candidate_layers)")
    last = max(pool, key=lambda c: c.index)
    area = last.shape[1] * last.shape[2]
    in_last = [c for c in pool if c.shape[1] * c.shape[2] <= area]
    for c in cands:
        if c.cuttable and any(c is p for p in in_last):
            return c
    refused = sorted(in_last, key=lambda c: -c.index)
    shown = "; ".join(f"{c.name} needs {c.crossing[:2]}" for c in refused[:4])
    more = f" (and {len(refused) - 4} more)" if len(refused) > 4 else ""
    raise ExportError(
        f"cannot cut the model in its last stage ({last.shape[1]}x{last.shape[2]}): every "
        f"layer there is refused because a skip connection crosses the cut: {shown}{more}. "
        "Pass a shallower target layer explicitly (see liftcam.candidate_layers)")


def _subgraph(model: onnx.ModelProto, node_ids, inputs, outputs, name: str) -> onnx.ModelProto:
    graph = model.graph
    nodes = [graph.node[i] for i in node_ids]
    used = {n for node in nodes for n in node.input if n}
    inits = [t for t in graph.initializer if t.name in used]
    g = helper.make_graph(nodes, name, inputs, outputs, initializer=inits)
    m = helper.make_model(g, opset_imports=list(model.opset_import),
                          producer_name="liftcam", ir_version=model.ir_version)
    for f in model.functions:
        m.functions.append(f)
    return m


def split(model: onnx.ModelProto, tensor: str, activation_shape) -> tuple:
    """Return ``(features, head)`` models cut at ``tensor``.

    ``features``: the original input -> ``activation`` (N,K,h,w);
    ``head``: ``activation`` -> ``logits`` (N,C). The batch axis is symbolic (``N``).
    """
    graph = model.graph
    image = _graph_input(model)
    out = _graph_output(model)
    if tensor not in producers(graph):
        raise ExportError(f"tensor {tensor!r} is not produced by any node of the model")
    crossing, reads = _crossing_and_reads(model, tensor)
    if reads and not crossing:   # DESIGN.md §2: shape reads re-derived from the activation
        from liftcam.export.cut_repairs import rederive_shape_reads

        m = onnx.ModelProto()
        m.CopyFrom(model)
        in_shape = [d.dim_value for d in image.type.tensor_type.shape.dim[1:]]
        shapes = dict(activation_shapes(m, in_shape))
        shapes[image.name] = (1, *in_shape)
        try:
            rederive_shape_reads(m, tensor, reads, shapes)
        except KeyError as exc:
            crossing = [str(exc.args[0])]
        else:
            model, graph = m, m.graph
            image, out = _graph_input(model), _graph_output(model)
    if crossing:
        raise ExportError(
            f"cannot cut at {tensor!r}: a skip connection crosses the cut; the head would need "
            f"these tensors from before it: {crossing}. Choose a layer at a block boundary "
            "(see liftcam.candidate_layers)")
    K, h, w = activation_shape
    act_vi = helper.make_tensor_value_info(ACTIVATION, onnx.TensorProto.FLOAT, ["N", K, h, w])
    logits_vi = helper.make_tensor_value_info(LOGITS, onnx.TensorProto.FLOAT, ["N", None])

    feat_ids = _needed_nodes(graph, [tensor])
    features = _subgraph(model, feat_ids, [image], [act_vi], "liftcam_features")
    _rename_tensor(features.graph, tensor, ACTIVATION)
    features.graph.output[0].CopyFrom(act_vi)

    head_ids = _needed_nodes(graph, [out.name], stop={tensor})
    if not head_ids:
        raise ExportError(f"the cut at {tensor!r} leaves an empty head: the tensor is the output")
    head = _subgraph(model, head_ids, [act_vi], [logits_vi], "liftcam_head")
    _rename_tensor(head.graph, tensor, ACTIVATION)
    _rename_tensor(head.graph, out.name, LOGITS)
    head.graph.input[0].CopyFrom(act_vi)
    head.graph.output[0].CopyFrom(logits_vi)
    return features, head


def make_batch_dynamic(model: onnx.ModelProto) -> None:
    """Give the input and output a symbolic batch axis ``N`` (in place)."""
    for vi in [_graph_input(model), _graph_output(model)]:
        dims = vi.type.tensor_type.shape.dim
        if dims:
            dims[0].ClearField("dim_value")
            dims[0].dim_param = "N"
    del model.graph.value_info[:]


def run_onnx(model: onnx.ModelProto, feeds: dict) -> list:
    """Run a model with onnxruntime on the CPU (build-time helper)."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.log_severity_level = 3
    sess = ort.InferenceSession(model.SerializeToString(), opts, providers=["CPUExecutionProvider"])
    return sess.run(None, feeds)


def relative_error(a: np.ndarray, b: np.ndarray) -> float:
    """max |a − b| / max |b| (the scale of the reference), guarded against an all-zero b."""
    a = np.asarray(a, np.float64)
    b = np.asarray(b, np.float64)
    if a.shape != b.shape:
        return float("inf")
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(b)), 1e-12))
