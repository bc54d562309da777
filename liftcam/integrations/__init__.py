"""Integrations with serving and data systems; each needs its extra and imports it only when
called:

- :mod:`liftcam.integrations.ray`: explain image datasets with Ray Data
  (``pip install 'liftcam[ray]'``);
- :mod:`liftcam.integrations.triton`: write a Triton Inference Server model repository with
  the fused ``explain.onnx`` (``pip install 'liftcam[triton]'`` for the client and the tests).
"""
from liftcam.engine.errors import LiftcamError


class MissingExtra(LiftcamError, ImportError):
    """An integration was called without its optional dependencies installed."""


def require(module: str, extra: str, what: str):
    """Import ``module`` or raise :class:`MissingExtra` naming the pip extra to install."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise MissingExtra(f"{what} needs {exc.name or module}, which is not installed: "
                           f"pip install 'liftcam[{extra}]'") from None
