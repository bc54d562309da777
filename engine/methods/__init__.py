"""The CAM methods: one function per module over a small base (:mod:`.base`), and one record
per method in :mod:`.registry` (formulas: DESIGN.md §1, as pytorch-grad-cam computes them)."""
from liftcam.engine.methods.base import Batch
from liftcam.engine.methods.registry import (
                                             METHODS,
                                             Method,
                                             available,
                                             check_applicable,
                                             get,
                                             head_is_linear,
)

__all__ = ["Batch", "METHODS", "Method", "available", "check_applicable", "get",
           "head_is_linear"]
