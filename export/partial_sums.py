"""Channel-partial sums of the head's first dense layer (DESIGN.md §5): a graph that outputs the
LIFT-CAM coefficients α directly, reading the first dense layer's weights once.

    build_alpha_model(head, features)   # (activation, target) -> (logits, alpha (N, K))

When the head starts with ops that act per channel (MaxPool with A ≥ 0 and reference 0,
AveragePool, Flatten) and then a dense layer ``z = W·p + b`` (Gemm with transB=1 or MatMul with a
constant weight), DeepLIFT's per-channel contribution is conserved through the prefix, so

    α_k = Σ_ij A_kij M_kij = Σ_{i∈k} p_i m_p,i = Σ_j m_j Z_jk,   Z_jk = Σ_{i∈k} W_ji p_i

with ``m`` the multiplier at ``u = W·p`` (= at ``z``). The graph computes ``Z`` with a batched
MatMul (channels as the batch axis, the weights seen as (K, s, J) through a Transpose of the
shared initializer that ONNX Runtime folds at load), ``u = Σ_k Z``, runs the rest of the head
and its DeepLIFT multipliers from ``u`` (reference ``u⁰ = 0``: with ``A⁰ = 0`` the pooled input is
0), and returns ``α = Σ_j Z·m``. No backward through the big dense layer, no max-pool backward.

The weights (K, s, J) copy is made by ONNX Runtime when the session is created (the bundle still
stores them once). At batch 1 the batched MatMul costs about the plain Gemm and the second read
of the weights disappears; at larger batches the batched MatMul alone is slower than the plain
Gemm, but the whole α graph still beat forward + backward through the multipliers at batches
1-16 on VGG-16 and tied at 32 (benchmarks/paths.py, DESIGN.md §13).
"""
from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from liftcam.contract import ACTIVATION, ALPHA, LOGITS, MULTIPLIERS, TARGET
from liftcam.engine.errors import ExportError
from liftcam.export.fuse import prefixed
from liftcam.export.graph import GraphBuilder, default_opset

PER_CHANNEL = ("MaxPool", "AveragePool", "GlobalAveragePool", "Flatten", "Reshape", "Identity",
               "Dropout")


class NotApplicable(ExportError):
    """The head does not have the shape partial sums need (the caller falls back)."""


def _attrs(node):
    return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def _nonnegative_activation(features: onnx.ModelProto) -> bool:
    out = features.graph.output[0].name
    for node in features.graph.node:
        if out in node.output:
            if node.op_type == "Relu":
                return True
            if node.op_type == "Clip":
                inits = {t.name: t for t in features.graph.initializer}
                if len(node.input) > 1 and node.input[1] in inits:
                    return float(numpy_helper.to_array(inits[node.input[1]])) >= 0
            return False
    return False


def _split_head(head: onnx.ModelProto, features):
    """Find the per-channel prefix, the 4-D tensor P before flattening and the dense layer."""
    g = head.graph
    inits = {t.name: t for t in g.initializer}
    inp = [i.name for i in g.input if i.name not in inits]
    if len(inp) != 1:
        raise NotApplicable("the head must have one input")
    consumers = {}
    for node in g.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    cur, prefix, p4d = inp[0], [], None
    while True:
        nxt = consumers.get(cur, [])
        if len(nxt) != 1:
            raise NotApplicable(f"tensor {cur!r} feeds {len(nxt)} nodes; a chain is needed")
        node = nxt[0]
        if node.op_type in ("Gemm", "MatMul"):
            break
        if node.op_type not in PER_CHANNEL:
            raise NotApplicable(f"{node.op_type} between the activation and the first dense "
                                "layer does not act per channel")
        a = _attrs(node)
        if node.op_type == "MaxPool":
            if features is None or not _nonnegative_activation(features):
                raise NotApplicable("MaxPool needs a non-negative activation (a ReLU output)")
            if a.get("dilations", [1, 1]) != [1, 1]:
                raise NotApplicable("dilated MaxPool")
        if node.op_type in ("Flatten", "Reshape"):
            if p4d is not None:
                raise NotApplicable("more than one reshape before the dense layer")
            if node.op_type == "Flatten" and a.get("axis", 1) != 1:
                raise NotApplicable("Flatten with axis != 1")
            p4d = cur
        prefix.append(node)
        cur = node.output[0]
    dense = node
    if p4d is None:
        raise NotApplicable("no Flatten between the activation and the dense layer")
    if dense.input[0] != cur or dense.input[1] not in inits:
        raise NotApplicable("the dense layer's weight must be a constant second input")
    W = numpy_helper.to_array(inits[dense.input[1]])
    a = _attrs(dense)
    if dense.op_type == "Gemm":
        if a.get("transA", 0) or a.get("alpha", 1.0) != 1.0 or a.get("beta", 1.0) != 1.0:
            raise NotApplicable("Gemm with transA/alpha/beta")
        trans_b = bool(a.get("transB", 0))
        bias = dense.input[2] if len(dense.input) > 2 and dense.input[2] else None
    else:
        trans_b, bias = False, None
    return prefix, p4d, dense, W, trans_b, bias


def _head_after(head, prefix, dense, bias, u_name):
    """The rest of the head as nodes ``u -> logits`` (u = W·p, before the bias)."""
    g = head.graph
    inits = {t.name: t for t in g.initializer}
    first = helper.make_node("Add" if bias is not None else "Identity",
                             [u_name, bias] if bias is not None else [u_name],
                             [dense.output[0]], name="partial_sums/bias")
    skip = {id(n) for n in prefix} | {id(dense)}
    nodes = [first] + [n for n in g.node if id(n) not in skip]
    need, keep = {g.output[0].name}, []
    for node in reversed(nodes):          # keep only what the logits depend on
        if any(o in need for o in node.output):
            keep.append(node)
            need.update(node.input)
    keep.reverse()
    used = [inits[n] for n in dict.fromkeys(i for n in keep for i in n.input) if n in inits]
    return keep, used


def build_alpha_model(head: onnx.ModelProto, features: onnx.ModelProto = None,
                      activation_shape=None, multipliers: onnx.ModelProto = None,
                      rtol: float = 1e-5) -> onnx.ModelProto:
    """(activation (N,K,h,w), target (N,)) -> (logits (N,C), alpha (N,K)), LIFT-CAM's α.

    ``features``: the features graph, to check that the activation is non-negative where the
    head max-pools it. Raises :class:`NotApplicable` when the head is not of the required form.
    """
    from liftcam.export.lift import build_multipliers_model

    prefix, p4d, dense, W, trans_b, bias = _split_head(head, features)
    g = head.graph
    opset = default_opset(head)
    # shapes: run the prefix once on zeros (batch 1) to learn P's (K, h', w')
    in_vi = [i for i in g.input if i.name not in {t.name for t in g.initializer}][0]
    dims = [d.dim_value for d in in_vi.type.tensor_type.shape.dim[1:]]
    if activation_shape is not None:
        dims = list(activation_shape)
    if not all(dims):
        raise NotApplicable("the activation needs a static (K, h, w)")
    pre = helper.make_model(
        helper.make_graph(prefix, "prefix", [in_vi], [helper.make_tensor_value_info(
            p4d, TensorProto.FLOAT, None)], initializer=[t for t in g.initializer if any(
                t.name in n.input for n in prefix)]),
        opset_imports=[helper.make_opsetid("", opset)], ir_version=head.ir_version)
    (p0,) = _session(pre).run(None, {in_vi.name: np.zeros([1, *dims], np.float32)})
    if p0.ndim != 4:
        raise NotApplicable(f"the tensor before flattening has shape {p0.shape}, not 4-D")
    K, s = p0.shape[1], p0.shape[2] * p0.shape[3]
    if s == 1:
        # a global-pooling head (ResNet): M is cheap there (Expand of one vector) while Z would be
        # K x N x J (2048 x N x 1000); measured at batch 32: 100 ms vs 13 ms. Not worth it.
        raise NotApplicable("the dense layer sees one value per channel (global pooling): the "
                            "multipliers path is cheaper")
    J = W.shape[0] if trans_b else W.shape[1]
    if W.size != K * s * J:
        raise NotApplicable(f"dense weight {W.shape} does not match {K}x{s} inputs")

    # the rest of the head from u and its DeepLIFT multipliers graph
    u = "partial_sums/u"
    rest, rest_inits = _head_after(head, prefix, dense, bias, u)
    head2 = helper.make_model(
        helper.make_graph(rest, "head_after_dense",
                          [helper.make_tensor_value_info(u, TensorProto.FLOAT, ["N", J])],
                          [g.output[0]], initializer=rest_inits),
        opset_imports=list(head.opset_import), ir_version=head.ir_version)
    mult2 = build_multipliers_model(head2, "deeplift")   # (activation=u, target) -> logits, m_u

    b = GraphBuilder(default_opset(mult2), name="liftcam_alpha_partial_sums",
                     prefix="partial_sums/")
    b.reserve([u])
    b.add_input(ACTIVATION, TensorProto.FLOAT, ["N", *dims])
    b.add_input(TARGET, TensorProto.INT64, ["N"])
    # prefix (its names are the head's; input renamed to "activation")
    for node in prefix:
        n = onnx.NodeProto()
        n.CopyFrom(node)
        n.input[:] = [ACTIVATION if i == in_vi.name else i for i in n.input]
        b.add_node(n)
    # Z = (K, N, s) @ (K, s, J) -> (K, N, J)
    pk = b.op("Transpose", b.op("Reshape", p4d, b.ints([0, K, s], "shape_nks")), perm=[1, 0, 2])
    if trans_b:   # W (J, K*s) -> (J, K, s) -> (K, s, J)
        w3 = b.op("Reshape", dense.input[1], b.ints([J, K, s], "shape_jks"))
        wk = b.op("Transpose", w3, perm=[1, 2, 0])
    else:         # W (K*s, J) -> (K, s, J)
        wk = b.op("Reshape", dense.input[1], b.ints([K, s, J], "shape_ksj"))
    z = b.op("MatMul", pk, wk, name_hint="Z")
    b.reduce("ReduceSum", z, [0], keepdims=0, out_name=u)
    # the rest of the head and its multipliers, names prefixed, input "activation" -> u
    m = b.unique("m")
    rest_nodes, rest_inits = prefixed(mult2, "rest/", {TARGET, LOGITS},
                                      rename={ACTIVATION: u, MULTIPLIERS: m})
    for node in rest_nodes:
        b.add_node(node)
    # alpha (N, K) = Σ_j Z (K,N,J) * m (1,N,J)
    zm = b.op("Mul", z, b.unsqueeze(m, [0]))
    b.op("Transpose", b.reduce("ReduceSum", zm, [2], keepdims=0), perm=[1, 0], out_name=ALPHA)

    used = {i for n in b.nodes for i in n.input}
    for t in [t for t in g.initializer if t.name in used] + rest_inits:
        b.add_initializer(t)
    b.add_output(LOGITS, TensorProto.FLOAT, ["N", None])
    b.add_output(ALPHA, TensorProto.FLOAT, ["N", K])
    model = b.make_model(ir_version=head.ir_version, opset_imports=list(mult2.opset_import))
    model.doc_string = "liftcam LIFT-CAM alpha by channel-partial sums of the first dense layer"
    if multipliers is not None:
        err = verify(model, multipliers, dims)
        if not err <= rtol:
            raise NotApplicable(f"partial-sums alpha differs from sum(A*M) by {err:.3g} > {rtol}")
    return model


def _session(model):
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def verify(alpha_model, multipliers, dims, seed=0) -> float:
    """Max relative difference between the graph's α and ``Σ_ij A·M`` of ``multipliers``, on
    random ReLU-like activations (with exact zeros) at batch 1 and 3, predicted and given
    targets. Logits must agree too (they enter the max)."""
    sa, sm = _session(alpha_model), _session(multipliers)
    rng = np.random.default_rng(seed)
    worst = 0.0
    for n in (1, 3):
        A = np.maximum(rng.standard_normal((n, *dims)), 0).astype(np.float32)
        for t in (np.full(n, -1, np.int64), None):
            if t is None:
                C = sm.run([LOGITS], {ACTIVATION: A, TARGET: np.full(n, -1, np.int64)})[0]
                t = rng.integers(0, C.shape[1], n).astype(np.int64)
            lg, al = sa.run([LOGITS, ALPHA], {ACTIVATION: A, TARGET: t})
            lg2, M = sm.run([LOGITS, MULTIPLIERS], {ACTIVATION: A, TARGET: t})
            ref = (A.astype(np.float64) * M).sum(axis=(2, 3))
            scale = max(np.abs(ref).max(), 1e-30)
            worst = max(worst, float(np.abs(al - ref).max() / scale),
                        float(np.abs(lg - lg2).max() / max(np.abs(lg2).max(), 1e-30)))
    return worst
