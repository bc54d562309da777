"""Refusals, opsets, the device-op allowlist, weight sharing and reference values."""
import numpy as np
import onnx
import pytest
import torch
import torch.nn as nn
from lift_heads import (
    ACTIVATIONS,
    BNHead,
    Runner,
    ShapeOpsHead,
    assert_close,
    check_device_ops,
    conv_act_head,
    draw_activation,
    export_head,
    multipliers_model,
    pool_head,
    torch_grad,
)
from onnx import TensorProto, helper

from liftcam.engine.errors import ExportError, UnsupportedOpError
from liftcam.export.lift import (
    DEVICE_OPS,
    LIMITS,
    REFUSED,
    RULES,
    build_multipliers_model,
    reference_values,
    supported_ops,
)


def _hand_head(op_type, **attrs):
    """activation (N,4,3,3) -> Flatten -> <op> -> Gemm -> logits, built by hand."""
    nodes = [helper.make_node("Flatten", ["A"], ["f"], name="flat")]
    inits = [onnx.numpy_helper.from_array(np.ones((3, 36), np.float32), "W")]
    if op_type == "TopK":
        inits.append(onnx.numpy_helper.from_array(np.array([36], np.int64), "k"))
        nodes.append(helper.make_node("TopK", ["f", "k"], ["mid", "idx"], name="my_topk", axis=1))
    else:
        nodes.append(helper.make_node(op_type, ["f"], ["mid"], name=f"my_{op_type.lower()}",
                                      **attrs))
    nodes.append(helper.make_node("Gemm", ["mid", "W"], ["y"], name="fc", transB=1))
    g = helper.make_graph(nodes, "h",
                          [helper.make_tensor_value_info("A", TensorProto.FLOAT, ["N", 4, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    return helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])


@pytest.mark.parametrize("op,attrs", [("LpNormalization", {"axis": 1}), ("TopK", {})])
def test_unsupported_op_names_op_node_and_supported_list(op, attrs):
    head = _hand_head(op, **attrs)
    with pytest.raises(UnsupportedOpError) as e:
        build_multipliers_model(head, "deeplift")
    msg = str(e.value)
    assert op in msg and (f"my_{op.lower()}" in msg)
    for known in ("Conv", "Relu", "MaxPool", "Gemm"):
        assert known in msg


def test_refused_op_gives_its_reason():
    nodes = [helper.make_node("GlobalMaxPool", ["A"], ["p"], name="my_gmp"),
             helper.make_node("Flatten", ["p"], ["f"], name="flat"),
             helper.make_node("Gemm", ["f", "W"], ["y"], name="fc", transB=1)]
    inits = [onnx.numpy_helper.from_array(np.ones((3, 4), np.float32), "W")]
    g = helper.make_graph(nodes, "h", [helper.make_tensor_value_info("A", TensorProto.FLOAT,
                                                                      ["N", 4, 3, 3])],
                          [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])], inits)
    head = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    with pytest.raises(UnsupportedOpError) as e:
        build_multipliers_model(head, "gradient")
    assert "my_gmp" in str(e.value) and REFUSED["GlobalMaxPool"] in str(e.value)


def test_registry_is_one_consistent_table():
    assert not set(REFUSED) & set(RULES)
    assert set(LIMITS) <= set(RULES)
    assert all(callable(fn) for fn in RULES.values())


def test_supported_ops_lists_the_registry():
    ops = supported_ops("deeplift")
    assert ops == sorted(ops) and ops == supported_ops("gradient")
    for op in ["Conv", "Gemm", "MatMul", "BatchNormalization", "MaxPool", "AveragePool",
               "GlobalAveragePool", "Relu", "Sigmoid", "Tanh", "LeakyRelu", "Elu", "Softplus",
               "Clip", "HardSigmoid", "HardSwish", "Erf", "Gelu", "PRelu", "Mul", "Div", "Add",
               "Sub", "Neg", "Pad", "Flatten", "Reshape", "Transpose", "Squeeze", "Unsqueeze",
               "Concat", "Split", "Slice", "Dropout", "Identity", "Cast", "Expand", "ReduceMean",
               "ReduceSum"]:
        assert op in ops
    with pytest.raises(ExportError):
        supported_ops("lrp")


class DivHead(nn.Module):
    def forward(self, x):
        return torch.flatten(x[:, :3] / (2.0 + torch.sigmoid(x[:, 3:])), 1)[:, :5]


def test_refusals():
    A = draw_activation((1, 6, 5, 5), seed=1)
    soft = nn.Sequential(nn.Flatten(), nn.Linear(150, 4), nn.Softmax(dim=1), nn.Linear(4, 3)).eval()
    with pytest.raises(ExportError, match="Softmax"):
        build_multipliers_model(export_head(soft, A), "gradient")

    with pytest.raises(ExportError, match="division"):
        # x / (2 + sigmoid(x))
        build_multipliers_model(export_head(DivHead().eval(), A), "deeplift")
    dil = pool_head(nn.MaxPool2d(2, dilation=2), hw=6)
    with pytest.raises(ExportError, match="dilation"):
        build_multipliers_model(export_head(dil, draw_activation((1, 6, 6, 6), seed=2)), "gradient")
    with pytest.raises(ExportError, match="rule"):
        build_multipliers_model(export_head(dil, draw_activation((1, 6, 6, 6), seed=2)), "shap")


def test_div_by_activation_has_a_gradient():
    head = DivHead().eval()
    A = draw_activation((2, 6, 3, 3), seed=3, kind="normal")
    _, M = Runner(multipliers_model(export_head(head, A), "gradient"))(A.numpy(), [1, 4])
    assert_close(M, torch_grad(head, A, [1, 4]), rtol=1e-5)


@pytest.mark.parametrize("opset", [11, 13, 18, 20])
def test_opsets(opset):
    head = conv_act_head(nn.GELU()) if opset == 20 else ShapeOpsHead()
    A = draw_activation((2, 6, 6, 6) if opset != 20 else (2, 6, 5, 5), seed=4, kind="normal")
    onnx_head = export_head(head, A, opset=opset)
    m = multipliers_model(onnx_head, "gradient")
    got = [o.version for o in m.opset_import if o.domain in ("", "ai.onnx")][0]
    assert got == (17 if opset < 13 else opset)
    if opset == 20:
        assert "Gelu" in {n.op_type for n in m.graph.node}
    _, M = Runner(m)(A.numpy(), [0, 3])
    assert_close(M, torch_grad(head, A, [0, 3]), rtol=1e-5)


def test_every_generated_node_is_a_device_op():
    assert "MaxUnpool" not in DEVICE_OPS
    heads = [(conv_act_head(ACTIVATIONS[a]()), (6, 5, 5)) for a in sorted(ACTIVATIONS)]
    heads += [(pool_head(p, hw=7), (6, 7, 7)) for p in
              (nn.MaxPool2d(2), nn.MaxPool2d(3, 2, 1),
               nn.AvgPool2d(3, 2, 1, count_include_pad=False))]
    heads += [(ShapeOpsHead(), (6, 6, 6)), (BNHead(), (6, 6, 6))]
    for head, shape in heads:
        onnx_head = export_head(head, draw_activation((1, *shape), seed=5))
        for rule in ("deeplift", "gradient"):
            check_device_ops(build_multipliers_model(onnx_head, rule))


def test_weights_are_not_duplicated_and_names_are_free():
    head = nn.Sequential(nn.Conv2d(6, 16, 3), nn.ReLU(), nn.Flatten(), nn.Linear(16 * 9, 10)).eval()
    A = draw_activation((1, 6, 5, 5), seed=6)
    onnx_head = export_head(head, A)
    for rule in ("deeplift", "gradient"):
        m = multipliers_model(onnx_head, rule)
        size = {t.name: t.ByteSize() for t in m.graph.initializer}
        head_size = sum(t.ByteSize() for t in onnx_head.graph.initializer)
        assert sum(size.values()) < head_size + 2 * 16 * 9 * 4 + 4096  # + x0 constants only
        names = [n.name for n in m.graph.node]
        assert len(names) == len(set(names))
        outs = [o for n in m.graph.node for o in n.output]
        assert len(outs) == len(set(outs))


def test_arbitrary_io_names():
    head = nn.Sequential(nn.Flatten(), nn.Linear(150, 4)).eval()
    A = draw_activation((2, 6, 5, 5), seed=7)
    onnx_head = export_head(head, A)
    g = onnx_head.graph
    ren = {"activation": "logits", "logits": "multipliers"}  # deliberately confusing names
    for n in g.node:
        n.input[:] = [ren.get(i, i) for i in n.input]
        n.output[:] = [ren.get(o, o) for o in n.output]
    g.input[0].name, g.output[0].name = "logits", "multipliers"
    _, M = Runner(multipliers_model(onnx_head, "deeplift"))(A.numpy(), [2, 3])
    assert_close(M, torch_grad(head, A, [2, 3]), rtol=1e-5)


def test_reference_values():
    head = conv_act_head(nn.Sigmoid())
    onnx_head = export_head(head, draw_activation((3, 6, 5, 5), seed=8))
    ref = reference_values(onnx_head)
    for n in onnx_head.graph.node:
        for o in n.output:
            assert o in ref
    assert ref["activation"].shape == (1, 6, 5, 5) and not ref["activation"].any()
    with torch.no_grad():
        y0 = head(torch.zeros(1, 6, 5, 5)).numpy()
    assert_close(ref["logits"], y0, rtol=1e-5)
