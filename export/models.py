"""Build the PyTorch model that ``liftcam export``/``liftcam layers`` name on the command
line: a torchvision architecture (``--arch``), a factory function (``--factory module:fn``),
optionally with a state_dict (``--weights``). Build time: needs torch (and torchvision).
"""
from __future__ import annotations

import difflib
import os
import sys
from pathlib import Path

from liftcam.engine.errors import ExportError
from liftcam.engine.errors import one_line as _one_line


def need_build_extras(what: str, exc: ImportError) -> ExportError:
    return ExportError(f"{what} needs the build-time extras ({exc.name or exc}: not "
                       "installed); install them with: pip install 'liftcam[export]'")


def torchvision_model(arch: str, num_classes):
    try:
        import torchvision
    except ImportError as exc:
        raise need_build_extras(f"--arch {arch}", exc) from None
    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise ExportError(f"unknown torchvision classification architecture {arch!r}.{hint} "
                          f"({len(names)} available, e.g. resnet50, vgg16, densenet121, "
                          "mobilenet_v3_large)")
    kwargs = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if arch.startswith("inception") or arch.startswith("googlenet"):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    try:
        return torchvision.models.get_model(arch, **kwargs)
    except Exception as exc:
        raise ExportError(f"could not build {arch}: {_one_line(exc)}") from None


def factory_model(spec: str, num_classes):
    import importlib

    if ":" not in spec:
        raise ExportError(f"--factory must be module:function, got {spec!r}")
    mod_name, fn_name = spec.split(":", 1)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise ExportError(f"--factory: cannot import module {mod_name!r}: {_one_line(exc)}") \
            from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise ExportError(f"--factory: {mod_name} has no function {fn_name!r}")
    try:
        model = fn(**({"num_classes": num_classes} if num_classes is not None else {}))
    except Exception as exc:
        raise ExportError(f"--factory: {spec}() failed: {type(exc).__name__}: {_one_line(exc)}") \
            from None
    import torch

    if not isinstance(model, torch.nn.Module):
        raise ExportError(f"--factory: {spec}() returned a {type(model).__name__}, not a "
                       "torch.nn.Module")
    return model


def load_weights(model, path):
    import torch

    p = Path(path)
    if not p.is_file():
        raise ExportError(f"weights file not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise ExportError(f"cannot load weights {p} (torch.load weights_only=True): "
                       f"{type(exc).__name__}: {_one_line(exc)[:300]}") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise ExportError(f"{p} holds a {type(state).__name__}, not a state_dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) !=
              tuple(own[k].shape)]
    if missing or unexpected or shapes:
        bits = []
        if missing:
            bits.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            bits.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            bits.append(f"{len(shapes)} with other shapes (e.g. {shapes[:2]}; check "
                        "--num-classes)")
        raise ExportError(f"the weights in {p} do not fit the model: " + "; ".join(bits))
    model.load_state_dict(state)
    return model




def build_model(arch=None, factory=None, weights=None, num_classes=None):
    """``(model, name)`` from a torchvision ``arch`` name or a ``factory`` "module:function",
    with the state_dict file ``weights`` loaded when given."""
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise need_build_extras("exporting a PyTorch model", exc) from None
    if arch:
        model, name = torchvision_model(arch, num_classes), arch
    else:
        model, name = factory_model(factory, num_classes), factory.split(":", 1)[1]
    if weights:
        load_weights(model, weights)
    return model, name
