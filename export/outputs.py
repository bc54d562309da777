"""How to call a PyTorch model and where its logits are in what it returns.

Many classifiers do not return a bare tensor: transformers models return a ``ModelOutput``
(``.logits``), others a dict, a dataclass, a named tuple or a tuple (logits first, auxiliary
outputs after). :class:`ModelCall` calls the model once, finds the logits tensor and from then
on calls it the same way; the exporter wraps it so that the ONNX graph returns that tensor only.
The wrapper never renames anything: hooks stay on the model's own modules, so the layer names
users see are the ones ``model.named_modules()`` gives (``resnet.encoder.stages.3``).

``output=`` picks another field: a key or attribute name (``"logits"``, ``"aux_logits"``),
or an index into a tuple. Models whose ``forward`` takes the image by keyword (first parameter
``pixel_values``, or keyword-only) are called as ``model(pixel_values=x)``.
"""
from __future__ import annotations

import dataclasses
import inspect

from liftcam.engine.errors import ExportError

#: the field taken from a dict-like or dataclass result when ``output`` is None
DEFAULT_FIELD = "logits"
#: first-parameter names that mean "call me by keyword"
KEYWORD_INPUTS = ("pixel_values",)


def input_keyword(model):
    """The keyword the model takes its image by, or None to pass it positionally."""
    try:
        params = list(inspect.signature(model.forward).parameters.values())
    except (TypeError, ValueError):
        return None
    if not params:
        return None
    first = params[0]
    if first.kind == first.KEYWORD_ONLY or (
            first.kind == first.POSITIONAL_OR_KEYWORD and first.name in KEYWORD_INPUTS):
        return first.name
    return None


def _is_tensor(v) -> bool:
    import torch

    return isinstance(v, torch.Tensor)


def _fields(result) -> list:
    """(name, value) pairs of a dict-like or dataclass result."""
    if hasattr(result, "keys") and hasattr(result, "__getitem__"):
        return [(k, result[k]) for k in result.keys()]
    return [(f.name, getattr(result, f.name)) for f in dataclasses.fields(result)]


def _tensor_fields(pairs) -> list:
    return [str(k) for k, v in pairs if _is_tensor(v)]


def locate(result, output=None):
    """``(field, tensor)`` for the logits in ``result``; ``field`` is None for a bare tensor,
    a key/attribute name or a tuple index. Raises ExportError naming what is there."""
    what = type(result).__name__
    if _is_tensor(result):
        if output not in (None, 0):
            raise ExportError(f"output={output!r} given, but the model returns one tensor")
        return None, result
    structured = (hasattr(result, "keys") and hasattr(result, "__getitem__")) or (
        dataclasses.is_dataclass(result) and not isinstance(result, type))
    if structured:
        pairs = _fields(result)
        key = DEFAULT_FIELD if output is None else output
        found = [v for k, v in pairs if k == key]
        if not found or not _is_tensor(found[0]):
            raise ExportError(
                f"the model returned {what} without a tensor field {key!r}; its tensor fields: "
                f"{_tensor_fields(pairs)}. Pass output='<field>' to pick the logits")
        return key, found[0]
    if isinstance(result, (tuple, list)):
        names = list(getattr(result, "_fields", ()))
        if output is None:
            for i, v in enumerate(result):
                if _is_tensor(v):
                    return i, v
            raise ExportError(f"the model returned a {what} with no tensor in it")
        if isinstance(output, str):
            if output not in names:
                raise ExportError(f"the model returned {what}; it has no field {output!r} "
                                  f"(fields: {names or 'none, a plain tuple: pass an index'})")
            output = names.index(output)
        if not isinstance(output, int) or not -len(result) <= output < len(result):
            raise ExportError(f"output={output!r} is not an index into the {len(result)} "
                              f"outputs of the model ({what})")
        if not _is_tensor(result[output]):
            raise ExportError(f"output {output} of the model is a "
                              f"{type(result[output]).__name__}, not a tensor")
        return output % len(result), result[output]
    raise ExportError(f"the model returned {what}; expected a tensor of logits, a dict or "
                      "ModelOutput with 'logits', or a tuple (pass output= to pick a field)")


class ModelCall:
    """Calls ``model`` the way it takes its image and returns the logits tensor alone.

    The first call finds the field (:func:`locate`); later calls take the same field."""

    def __init__(self, model, output=None):
        self.model = model
        self.output = output
        self.keyword = input_keyword(model)
        self.field = None
        self.structure = None

    def raw(self, module, x):
        return module(**{self.keyword: x}) if self.keyword else module(x)

    def __call__(self, x, module=None):
        result = self.raw(self.model if module is None else module, x)
        if self.structure is None:
            self.structure = type(result).__name__
            self.field, _ = locate(result, self.output)
        if self.field is None:
            return result
        if isinstance(self.field, int) or hasattr(result, "keys"):
            return result[self.field]
        return getattr(result, self.field)

    def describe(self) -> dict:
        """What the manifest records next to ``stripped_final``."""
        return {"structure": self.structure, "field": self.field, "input_keyword": self.keyword}
