"""liftcam: LIFT-CAM and the CAM family as ONNX graphs, explained with ONNX Runtime.

Run time (numpy + onnxruntime + Pillow): ``load_bundle``, ``Explainer``, ``Explanation``,
``explain_files`` (image files in, overlays/maps/results.jsonl out), ``METHODS``.
Build time (torch + onnx, imported only when called): ``export_model``, ``export_onnx``,
``candidate_layers``.

Names are resolved lazily (nothing heavy is imported by ``import liftcam``), and no public name
shadows a subpackage: ``liftcam.export`` is the build-time subpackage, ``liftcam.cli`` the
command line, ``liftcam.metrics`` the faithfulness metrics. (Until 0.1 the function was called
``liftcam.export``; calling the subpackage still works, with a DeprecationWarning.)
"""
__version__ = "0.2.1"

_LAZY = {
    "Bundle": "liftcam.engine.bundle",
    "load_bundle": "liftcam.engine.bundle",
    "Explainer": "liftcam.engine.explainer",
    "Explanation": "liftcam.engine.explainer",
    "explain_files": "liftcam.engine.pipeline",
    "RunSummary": "liftcam.engine.pipeline",
    "METHODS": "liftcam.engine.methods",
    "LiftcamError": "liftcam.engine.errors",
    "InputError": "liftcam.engine.errors",
    "BundleError": "liftcam.engine.errors",
    "ExportError": "liftcam.engine.errors",
    "LayerError": "liftcam.engine.errors",
    "UnsupportedOpError": "liftcam.engine.errors",
    "export_model": "liftcam.export.api",
    "export_onnx": "liftcam.export.api",
    "candidate_layers": "liftcam.export.api",
}

__all__ = ["__version__", *_LAZY]


_SUBPACKAGES = ("cli", "contract", "engine", "export", "integrations", "kernels", "metrics")


def __getattr__(name):
    import importlib

    if name in _SUBPACKAGES:
        return importlib.import_module(f"liftcam.{name}")
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'liftcam' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY))
