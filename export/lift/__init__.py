"""ONNX -> ONNX transform: a head graph (activation -> logits) into a multipliers graph
(activation, target -> logits, multipliers) for the "deeplift" or "gradient" rule.

``registry.py`` is the one table (op type -> rule, refused ops, device ops); the rules live in
``rules_*.py`` (one function per op rule), their context in ``context.py``; ``walker.py`` copies
the forward nodes and walks backwards from the logits.
"""
from liftcam.export.lift.registry import (  # noqa: F401
    DEVICE_OPS,
    LIMITS,
    REFUSED,
    RULE_NAMES,
    RULES,
    supported_ops,
)
from liftcam.export.lift.walker import build_multipliers_model, reference_values  # noqa: F401

__all__ = ["build_multipliers_model", "reference_values", "supported_ops", "DEVICE_OPS",
           "RULES", "RULE_NAMES", "REFUSED", "LIMITS"]
