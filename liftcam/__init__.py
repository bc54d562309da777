"""liftcam: LIFT-CAM and the CAM family as ONNX graphs, explained with ONNX Runtime.

Run time (numpy + onnxruntime + Pillow): ``load_bundle``, ``Explainer``, ``Explanation``.
Build time (torch + onnx, imported only when called): ``export``, ``export_onnx``,
``candidate_layers``.

Note: ``liftcam.export`` is the *function*; the build-time subpackage is still importable as
``import liftcam.export.split`` / ``from liftcam.export import lift``.
"""
__version__ = "0.1.0"

from liftcam.engine.bundle import Bundle, load_bundle  # noqa: E402
from liftcam.engine.errors import (  # noqa: E402
    BundleError, ExportError, InputError, LiftcamError, UnsupportedOpError)
from liftcam.engine.explainer import Explainer, Explanation  # noqa: E402
from liftcam.export.api import candidate_layers, export, export_onnx  # noqa: E402

__all__ = ["__version__", "Bundle", "load_bundle", "Explainer", "Explanation", "export", "export_onnx", "candidate_layers",
           "LiftcamError", "InputError", "BundleError", "ExportError", "UnsupportedOpError"]
