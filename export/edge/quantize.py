"""INT8 variants of ``explain.onnx`` with onnxruntime.quantization.

Static QDQ quantisation (int8 weights and activations, per-tensor scales, MinMax calibration)
over the preprocessed calibration images, explaining the class float32 predicts; dynamic
quantisation (int8 weights, activations quantised at run time) when no images are given.

Two candidates per bundle: ``all`` quantises every Conv/MatMul/Gemm, the head's forward and
DeepLIFT backward (nodes ``lift/...``, or ``alpha/...`` where explain.onnx takes LIFT-CAM's
coefficients from the channel-partial-sums graph) included; ``features`` keeps everything
outside the features part (that sub-graph and the CAM ``tail/...``) in float.
:mod:`liftcam.export.edge.build` measures both and picks (see :data:`KEEP_FLOAT_MARGIN`).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np
import onnx
from onnxruntime.quantization import (
    CalibrationDataReader,
    QuantFormat,
    QuantType,
    quantize_dynamic,
    quantize_static,
)

from liftcam.contract import IMAGE, TARGET
from liftcam.engine.errors import ExportError

FEATURES_PREFIX = "features/"
#: node-name prefixes of the head and its DeepLIFT/gradient sub-graph in explain.onnx
HEAD_PREFIXES = ("lift", "alpha")
CANDIDATES = ("all", "features")
#: compute ops whose weights int8 stores
COMPUTE = ("Conv", "ConvTranspose", "MatMul", "Gemm")
INTEGER_OPS = ("ConvInteger", "MatMulInteger", "QLinearConv", "QLinearMatMul", "QGemm")


def part(node_name: str) -> str:
    """``features``, ``lift`` (the head and its multipliers or α graph) or ``tail`` (the CAM
    tail)."""
    prefix = node_name.split("/", 1)[0] if "/" in node_name else "other"
    return "lift" if prefix in HEAD_PREFIXES else prefix


def float_nodes(model: onnx.ModelProto) -> list:
    """Names of the nodes the ``features`` candidate keeps in float (all but features/)."""
    names = [n.name for n in model.graph.node if not n.name.startswith(FEATURES_PREFIX)]
    if not any(part(n.name) == "lift" for n in model.graph.node):
        raise ExportError("explain.onnx has no 'lift/' or 'alpha/' nodes: not a liftcam fused "
                          "graph?")
    return names


class _Reader(CalibrationDataReader):
    """onnxruntime.quantization.CalibrationDataReader over preprocessed images, batch 1."""

    def __init__(self, x: np.ndarray, targets: np.ndarray):
        self._feeds = [{IMAGE: x[i:i + 1], TARGET: np.array([int(targets[i])], np.int64)}
                       for i in range(len(x))]
        self._it = iter(self._feeds)

    def get_next(self):
        return next(self._it, None)

    def rewind(self):
        self._it = iter(self._feeds)


def quantize(src: Path, dst: Path, candidate: str, x=None, targets=None) -> dict:
    """Write the int8 ``candidate`` of the float model ``src`` to ``dst``; static QDQ when
    images ``x`` (with float32's ``targets``) are given, else dynamic. Returns what was done:
    mode and the number of quantised compute ops per part (counted in the written graph)."""
    if candidate not in CANDIDATES:
        raise ValueError(f"candidate must be one of {CANDIDATES}, got {candidate!r}")
    exclude = []
    if candidate == "features":
        exclude = float_nodes(onnx.load(str(src), load_external_data=False))
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)          # the quantiser's pre-processing advice, on root
    try:
        mode = _run_quantizer(src, dst, exclude, x, targets)
    finally:
        root.setLevel(level)
    return {"mode": mode, "quantized_ops": quantized_ops(onnx.load(str(dst)))}


def _run_quantizer(src, dst, exclude, x, targets) -> str:
    if x is not None:
        quantize_static(str(src), str(dst), _Reader(x, targets), quant_format=QuantFormat.QDQ,
                        activation_type=QuantType.QInt8, weight_type=QuantType.QInt8,
                        per_channel=False, nodes_to_exclude=exclude)
        return "static QDQ"
    # the dynamic quantiser turns Gemm into MatMul named <name>_MatMul before excluding
    exclude = exclude + [n + "_MatMul" for n in exclude]
    quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8, nodes_to_exclude=exclude)
    return "dynamic"


def quantized_ops(model: onnx.ModelProto) -> dict:
    """Compute ops running on int8 weights, per part: integer ops, and float compute ops fed
    by a DequantizeLinear of an initializer (QDQ)."""
    inits = {t.name for t in model.graph.initializer}
    dq_of_weight = {n.output[0] for n in model.graph.node
                    if n.op_type == "DequantizeLinear" and n.input[0] in inits}
    count = Counter()
    for n in model.graph.node:
        if n.op_type in INTEGER_OPS or (n.op_type in COMPUTE and len(n.input) > 1
                                        and n.input[1] in dq_of_weight):
            count[part(n.name)] += 1
    return dict(sorted(count.items()))
