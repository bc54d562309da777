"""The float16 variant of ``explain.onnx`` (for GPUs and NPUs with float16 arithmetic).

``onnxruntime.transformers.float16.convert_float_to_float16`` with ``keep_io_types=True``:
``image`` stays float32 in and ``logits``/``weights``/``map`` float32 out, the weights and the
arithmetic in between are float16. ONNX Runtime's CPU provider has no float16 kernel for most
of these ops and runs them through inserted casts (correct, slower): the latency measured on
CPU says nothing about a float16 device, the fidelity numbers do. It ships as ``.onnx`` only
(see :mod:`.build`).
"""
from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import onnx


def to_fp16(src: Path, dst: Path) -> dict:
    """Write the float16 model; returns the ops left in float32 (casts at the borders)."""
    from onnxruntime.transformers.float16 import convert_float_to_float16

    logging.getLogger("onnxruntime.transformers").setLevel(logging.ERROR)
    model = convert_float_to_float16(onnx.load(str(src)), keep_io_types=True)
    onnx.save(model, str(dst))
    casts = Counter(n.op_type for n in model.graph.node if n.op_type == "Cast")
    return {"casts": casts.get("Cast", 0)}
