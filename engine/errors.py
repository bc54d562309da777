"""The exceptions liftcam raises. Every message says what was wrong and what to do."""


def one_line(text) -> str:
    """``text`` (a message or an exception) on one line, whitespace runs collapsed."""
    return " ".join(str(text).split())


def describe(exc: BaseException) -> str:
    """An exception's message on one line, or its type's name when it has none."""
    return one_line(exc) or type(exc).__name__


class LiftcamError(Exception):
    """Base class of every error liftcam raises on purpose."""


class InputError(LiftcamError, ValueError):
    """A call got input it cannot use (shape, dtype, NaN, target out of range, ...)."""


class ImageTooLargeError(InputError):
    """An image has more pixels than allowed (``max_pixels``) or trips Pillow's
    decompression-bomb guard; refused from its header, before decoding."""


class BundleError(LiftcamError):
    """A bundle directory is missing, malformed, corrupt or tampered with."""


class ExportError(LiftcamError):
    """A model could not be split or transformed into liftcam graphs."""


class UnsupportedOpError(ExportError):
    """The head holds an ONNX op that has no multiplier rule."""


class LayerError(ExportError):
    """The target layer does not exist, is not a 4-D activation, or cannot be cut.

    ``message`` says what is wrong; the text ends with how to list the choices from Python.
    The command line replaces that hint with its own (``liftcam layers MODEL``)."""

    PYTHON_HINT = "liftcam.candidate_layers(model) lists the layers it can cut at"

    def __init__(self, message: str):
        self.message = message
        super().__init__(f"{message}; {self.PYTHON_HINT}")
