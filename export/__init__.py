"""Build time: split a CNN into features/head ONNX graphs and generate the multiplier graphs.

Needs torch (for PyTorch models) and onnx; both are imported lazily inside the functions.
The public functions are ``liftcam.export_model``, ``liftcam.export_onnx`` and
``liftcam.candidate_layers`` (:mod:`liftcam.export.api`).

Calling this module, ``liftcam.export(model, ...)``, is the 0.1 spelling of
``liftcam.export_model``: it still works and warns (DeprecationWarning).
"""
import sys
import types
import warnings


class _CallableModule(types.ModuleType):
    def __call__(self, *args, **kwargs):
        warnings.warn("liftcam.export(...) is deprecated; call liftcam.export_model(...) (the "
                      "name liftcam.export is the build-time subpackage)", DeprecationWarning,
                      stacklevel=2)
        from liftcam.export.api import export_model

        return export_model(*args, **kwargs)


sys.modules[__name__].__class__ = _CallableModule
