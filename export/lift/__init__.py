"""ONNX -> ONNX transform: a head graph (activation -> logits) into a multipliers graph
(activation, target -> logits, multipliers) for the "deeplift" or "gradient" rule.

One rule per op type, registered by name (``registry.RULES``), grouped in ``rules_*.py``;
``walker.py`` copies the forward nodes and walks backwards from the logits.
"""
from liftcam.export.lift.walker import (  # noqa: F401
    DEVICE_OPS,
    build_multipliers_model,
    reference_values,
    supported_ops,
)
from liftcam.export.lift.registry import RULES, RULE_NAMES  # noqa: F401

__all__ = ["build_multipliers_model", "reference_values", "supported_ops", "DEVICE_OPS",
           "RULES", "RULE_NAMES"]
