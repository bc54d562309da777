"""The one table of CAM methods: a small frozen record per method.

Everything else derives from it: ``Explainer.explain``'s validation (known method, known
options, linear-head check), progress totals, the command line's choices and ``all``, and the
demo's columns. To add a method: write its function in a new module of this package and add
its record to :data:`METHODS` below; nothing else.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Optional

from liftcam.contract import EXPLAIN, EXPLAIN_GRADCAM
from liftcam.engine.methods import pairshap as _pairshap
from liftcam.engine.methods import shap as _shap
from liftcam.engine.methods.ablationcam import ablationcam
from liftcam.engine.methods.cam import cam
from liftcam.engine.methods.gradcam import gradcam
from liftcam.engine.methods.gradcampp import gradcam_pp
from liftcam.engine.methods.hirescam import hirescam
from liftcam.engine.methods.layercam import layercam
from liftcam.engine.methods.liftcam import liftcam
from liftcam.engine.methods.scorecam import scorecam
from liftcam.engine.methods.xgradcam import xgradcam


@dataclass(frozen=True)
class Method:
    """What liftcam knows about one CAM method.

    ``fn(batch, **options) -> (weights, saliency, extra)``; ``options``: the keyword options
    it takes (passed through ``Explainer.explain``); ``linear_head_only``: refuse bundles whose
    head is not GAP + one dense layer; ``per_channel``: ``"head"`` or ``"model"`` when it
    evaluates that graph once per channel per image (slow on wide layers); ``evaluations``:
    ``(N, K, **options) -> int``, the number of those evaluations (for progress and estimates).
    ``fused``: the bundle graph role that computes the method in one graph (image in, map
    out), which the explainer may run instead (DESIGN.md §13).
    """

    name: str
    fn: Callable
    summary: str
    options: tuple = ()
    linear_head_only: bool = False
    per_channel: Optional[str] = None
    evaluations: Optional[Callable] = None
    fused: Optional[str] = None

    def count(self, N: int, K: int, **options) -> int:
        """Head/model evaluations for N images at K channels (0 for single-pass methods)."""
        if self.evaluations is not None:
            return self.evaluations(N, K, **options)
        return N * K if self.per_channel else 0


METHODS = {m.name: m for m in (
    Method("liftcam", liftcam, "DeepLIFT coefficients α_k = Σ A·M (reference A = 0)",
           fused=EXPLAIN),
    Method("gradcam", gradcam, "mean gradient per channel", fused=EXPLAIN_GRADCAM),
    Method("gradcam++", gradcam_pp, "second-order gradient weights"),
    Method("xgradcam", xgradcam, "activation-weighted mean gradient"),
    Method("layercam", layercam, "Σ_k ReLU(G)·A, element-wise"),
    Method("hirescam", hirescam, "Σ_k G·A, element-wise"),
    Method("ablationcam", ablationcam, "drop of y_c when channel k is zeroed",
           per_channel="head"),
    Method("pairshap", _pairshap.pairshap,
           "channel SHAP from first + last marginals (exact for pairwise games), 2K evals",
           per_channel="head", evaluations=_pairshap.evaluations),
    Method("scorecam", scorecam, "softmax of y_c on channel-masked images",
           per_channel="model"),
    Method("cam", cam, "dense-layer weights W_ck (linear heads only)", linear_head_only=True),
    Method("shap", _shap.shap, "channel Shapley values (exact K ≤ 16, else sampled)",
           options=("n_samples", "seed"), per_channel="head", evaluations=_shap.evaluations),
)}


def get(name: str) -> Method:
    """The record of ``name``, or an error that lists the choices (with a close match)."""
    from liftcam.engine.errors import InputError

    if name not in METHODS:
        import difflib

        close = difflib.get_close_matches(str(name), METHODS, n=1)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise InputError(f"unknown method {name!r}{hint}; choose from {', '.join(METHODS)}")
    return METHODS[name]


def head_is_linear(bundle) -> bool:
    """Whether the bundle's head is GAP + one dense layer (recorded by the exporter)."""
    return bool(bundle.manifest.get("head", {}).get("linear"))


def available(bundle) -> list:
    """The methods that can explain ``bundle``, in table order (``all`` on the command line)."""
    linear = head_is_linear(bundle)
    return [name for name, m in METHODS.items() if linear or not m.linear_head_only]


def check_applicable(method: Method, bundle) -> None:
    """Refuse a linear-head-only method on a bundle whose head is not linear."""
    from liftcam.engine.errors import InputError

    if method.linear_head_only and not head_is_linear(bundle):
        raise InputError(
            f"method {method.name!r} needs a linear head (global average pooling then one dense "
            "layer), and this bundle's head is not linear; use 'gradcam' (which equals CAM on "
            "linear heads) or 'liftcam'")
