"""GraphBuilder.reduce: axes as an input or an attribute, as each opset's signature wants."""
import numpy as np
import onnx
import onnxruntime as ort
import pytest

from liftcam.export.graph import GraphBuilder, reduce_axes_as_input

NUMPY = {"ReduceSum": np.sum, "ReduceMean": np.mean, "ReduceMax": np.max, "ReduceMin": np.min}


@pytest.mark.parametrize("opset", [11, 12, 13, 17, 18, 20])
@pytest.mark.parametrize("op", sorted(NUMPY))
def test_reduce_is_valid_at_every_opset(op, opset):
    b = GraphBuilder(opset)
    b.add_input("x", onnx.TensorProto.FLOAT, [2, 3, 4])
    b.add_output(b.reduce(op, "x", [1, 2], keepdims=0), onnx.TensorProto.FLOAT, [2], name="y")
    model = b.make_model(ir_version=8)
    onnx.checker.check_model(model, full_check=True)
    node = [n for n in model.graph.node if n.op_type == op][0]
    assert (len(node.input) == 2) == (opset >= (13 if op == "ReduceSum" else 18))
    assert (len(node.input) == 2) == reduce_axes_as_input(op, opset)
    x = np.random.default_rng(0).random((2, 3, 4), dtype=np.float32)
    sess = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    np.testing.assert_allclose(sess.run(None, {"x": x})[0], NUMPY[op](x, axis=(1, 2)),
                               rtol=1e-6)


def test_reduce_refuses_other_ops():
    with pytest.raises(ValueError):
        reduce_axes_as_input("ArgMax", 17)
