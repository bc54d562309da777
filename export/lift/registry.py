"""The one table of the multiplier transform: which rule each ONNX op type gets, which op types
are refused (and why), and which ops the generated graphs may contain (``DEVICE_OPS``).

How to add a DeepLIFT/gradient rule for an op type ``Foo``:

1. write the rule in the ``rules_*.py`` file of its kind, one plain function
   ``foo(ctx: RuleContext, m_outs) -> list`` (see ``context.py``; an element-wise non-linearity
   is written as its derivative f'(x) and decorated with ``@rescaled`` in ``rules_activations``);
2. add its line ``"Foo": <module>.foo,`` to :data:`RULES` below (and any new op the rule emits
   to :data:`DEVICE_OPS`).

Nothing registers itself: the rule modules are imported here, and only the ops listed in
:data:`RULES` exist for the walker. A rule that supports an op only in some cases refuses the
others with ``ctx.fail(...)``; those cases are summed up in :data:`LIMITS`.
"""
from __future__ import annotations

from liftcam.contract import RULES as RULE_NAMES
from liftcam.engine.errors import ExportError
from liftcam.export.lift import rules_activations as act
from liftcam.export.lift import rules_linear as lin
from liftcam.export.lift import rules_norm as norm
from liftcam.export.lift import rules_pooling as pool
from liftcam.export.lift import rules_products as prod
from liftcam.export.lift import rules_shape as shape
from liftcam.export.lift.context import Rule

#: op type -> its rule (the same for both rules: each function branches on ``ctx.deeplift``)
RULES: dict[str, Rule] = {
    # element-wise non-linearities: Rescale rule / m * f'(x)
    "Relu": act.relu,
    "LeakyRelu": act.leaky_relu,
    "Elu": act.elu,
    "Sigmoid": act.sigmoid,
    "Tanh": act.tanh,
    "Softplus": act.softplus,
    "Clip": act.clip,
    "HardSigmoid": act.hard_sigmoid,
    "HardSwish": act.hard_swish,
    "Erf": act.erf,
    "Gelu": act.gelu,
    "PRelu": act.prelu,
    # linear ops: the multiplier moves back like the gradient
    "Conv": lin.conv,
    "Gemm": lin.gemm,
    "BatchNormalization": lin.batchnorm,
    "Add": lin.add_sub,
    "Sub": lin.add_sub,
    "Sum": lin.add_sub,
    "Neg": lin.neg,
    "Identity": lin.identity,
    "Dropout": lin.identity,
    "Cast": lin.cast,
    "GlobalAveragePool": lin.global_avg_pool,
    "ReduceMean": lin.reduce_linear,
    "ReduceSum": lin.reduce_linear,
    # normalisations over the sample's own statistics (decomposed; Shapley products)
    "LayerNormalization": norm.layer_norm,
    "InstanceNormalization": norm.instance_norm,
    "GroupNormalization": norm.group_norm,
    # 2-D pooling
    "MaxPool": pool.maxpool,
    "AveragePool": pool.avgpool,
    # products
    "Mul": prod.mul,
    "Div": prod.div,
    "MatMul": prod.matmul,
    # shape and data movement
    "Flatten": shape.reshape_back,
    "Reshape": shape.reshape_back,
    "Squeeze": shape.reshape_back,
    "Unsqueeze": shape.reshape_back,
    "Transpose": shape.transpose,
    "Expand": shape.expand,
    "Concat": shape.concat,
    "Split": shape.split,
    "Slice": shape.slice_,
    "Pad": shape.pad,
    "Gather": shape.gather,
    "Where": shape.where,
    "GatherND": shape.gather_nd,
}

#: op types refused outright, with the reason the error gives
REFUSED: dict[str, str] = {
    "Softmax": "a Softmax inside the head: explanations are of logits; cut the model before "
               "the softmax",
    "LogSoftmax": "a LogSoftmax inside the head: explanations are of logits; cut the model "
                  "before it",
    "GlobalMaxPool": "global max pooling has no rule; pool with MaxPool2d(kernel_size=(h, w)) "
                     "instead, which the MaxPool rule covers",
}

#: supported op types whose rule refuses some cases (``ctx.fail``), one line each
LIMITS: dict[str, str] = {
    "MaxPool": "only 2-D pooling of (N, C, H, W) (no 1-D/3-D), dilations 1, no indices output",
    "AveragePool": "only 2-D pooling of (N, C, H, W) (no 1-D/3-D), dilations 1",
    "Slice": "only step 1; not along the batch axis",
    "Conv": "weights and bias must be constants",
    "Gemm": "B must be a constant",
    "BatchNormalization": "inference mode only, with constant parameters",
    "Div": "deeplift: only division by a constant (gradient: any)",
    "MatMul": "no 1-D operands",
    "Concat": "not along the batch axis",
    "Split": "not along the batch axis",
    "Pad": "mode 'constant' only; not on the batch axis",
    "Gather": "one constant scalar index, not on the batch axis",
    "Where": "DeepLIFT: a condition that does not depend on the activation",
    "GatherND": "constant indices, batch_dims 0, not indexing the batch axis",
    "ReduceMean": "not over the batch axis",
    "ReduceSum": "not over the batch axis",
    "Clip": "constant bounds",
    "PRelu": "a constant slope",
    "LayerNormalization": "constant scale and bias; not over the batch axis; no mean/inv-std "
                          "outputs used downstream",
    "InstanceNormalization": "constant scale and bias",
    "GroupNormalization": "constant scale and bias",
}

#: ops that ONNX Runtime's CUDA execution provider implements (and the TensorRT parser takes),
#: covering every op the rules emit and the forward ops of the heads they support
DEVICE_OPS = frozenset("""
Abs Add And ArgMax AveragePool BatchNormalization Cast Clip Concat Constant ConstantOfShape
Conv ConvTranspose Div Dropout Elu Equal Erf Exp Expand Flatten Gather GatherND Gemm Gelu
GlobalAveragePool Greater GreaterOrEqual GroupNormalization HardSigmoid HardSwish Identity
InstanceNormalization LayerNormalization LeakyRelu Less LessOrEqual MatMul Max MaxPool Min Mul
Neg Not Or PRelu Pad Pow Range ReduceMax ReduceMean ReduceSum Relu Reshape ScatterND Shape
Sigmoid Slice Softplus Split Sqrt Squeeze Sub Sum Tanh Transpose Unsqueeze Where
""".split())


def check_rule(rule: str) -> None:
    if rule not in RULE_NAMES:
        raise ExportError(f"unknown multiplier rule {rule!r}; choose one of {list(RULE_NAMES)}")


def supported_ops(rule: str = "deeplift") -> list[str]:
    """The op types with a rule, sorted (the same for both rules)."""
    check_rule(rule)
    return sorted(RULES)
