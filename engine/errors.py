"""The exceptions liftcam raises. Every message says what was wrong and what to do."""


class LiftcamError(Exception):
    """Base class of every error liftcam raises on purpose."""


class InputError(LiftcamError, ValueError):
    """A call got input it cannot use (shape, dtype, NaN, target out of range, ...)."""


class BundleError(LiftcamError):
    """A bundle directory is missing, malformed, corrupt or tampered with."""


class ExportError(LiftcamError):
    """A model could not be split or transformed into liftcam graphs."""


class UnsupportedOpError(ExportError):
    """The head holds an ONNX op that has no multiplier rule."""
