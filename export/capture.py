"""PyTorch module -> one ONNX graph in which the candidate target layers' outputs are findable.

The module is exported once (TorchScript-based exporter, a dynamic batch axis) with the
outputs of the requested sub-modules as extra graph outputs. A forward hook records a *clone* of
each output (one graph output per module), so a following in-place op (``ReLU(inplace=True)``, DenseNet's
``F.relu(..., inplace=True)``) cannot change what the name stands for. The extra outputs only
mark tensors: they are traced back through Identity nodes to the tensor the rest of the network
consumes, and removed again.
"""
from __future__ import annotations

import difflib
import io
import warnings

import onnx

from liftcam.engine.errors import ExportError, LayerError

OPSET = 17


def module_name(model, layer) -> str:
    """The dotted name of ``layer`` (a name or a sub-module of ``model``), validated."""
    names = [n for n, _ in model.named_modules() if n]
    if isinstance(layer, str):
        if layer in names:
            return layer
        close = difflib.get_close_matches(layer, names, n=5, cutoff=0.5)
        hint = f" Closest names: {close}." if close else ""
        raise LayerError(f"the model has no layer named {layer!r}.{hint}")
    for n, m in model.named_modules():
        if m is layer and n:
            return n
    raise ExportError(
        f"the target layer {type(layer).__name__} is not a sub-module of the model; pass a "
        "module of the model or its dotted name (e.g. 'layer4')")


def _record_outputs(model, names, example):
    """Eager run with hooks: name -> (output tensor object, number of calls)."""
    import torch

    modules = dict(model.named_modules())
    seen = {}
    handles = []
    for name in names:
        def hook(mod, inp, out, name=name):
            prev = seen.get(name)
            seen[name] = (out, (prev[1] + 1) if prev else 1)
        handles.append(modules[name].register_forward_hook(hook))
    try:
        with torch.no_grad():
            logits = model(example)
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def _four_d(seen) -> list:
    """Names (in call order) of the modules whose (last) output is a 4-D float tensor."""
    import torch

    return [name for name, (out, _calls) in seen.items()
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.is_floating_point()]


def torch_to_onnx(model, input_shape, layers=None):
    """Export ``model`` with the outputs of ``layers`` (all 4-D ones when None) marked.

    Returns ``(onnx_model, names_by_tensor, example_logits, example_input)`` where
    ``names_by_tensor`` maps an ONNX tensor name to the module names whose output it is.
    The returned model has a single output (the model's own) with a dynamic batch axis.
    """
    import torch

    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    wanted = layers if layers is not None else [n for n, _ in model.named_modules() if n]
    logits, seen = _record_outputs(model, wanted, example)
    if not isinstance(logits, torch.Tensor) or logits.dim() != 2:
        raise ExportError(
            "the model must return one tensor of logits (N, num_classes); it returned "
            f"{type(logits).__name__}{'' if not hasattr(logits, 'shape') else tuple(logits.shape)}")
    for name in layers or []:
        if name not in seen:
            raise LayerError(f"layer {name!r} was not called in the forward pass")
    reps = _four_d(seen)
    if layers is not None:
        for name in layers:
            if name not in reps:
                out = seen[name][0]
                shape = tuple(out.shape) if hasattr(out, "shape") else type(out).__name__
                raise LayerError(
                    f"layer {name!r} outputs {shape}, not a 4-D activation (N,K,h,w); CAMs need a "
                    "convolutional feature map")
    modules = dict(model.named_modules())

    class _Marked(torch.nn.Module):
        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            store = {}
            hs = [modules[n].register_forward_hook(
                lambda m, i, o, n=n: store.__setitem__(n, o.clone())) for n in reps]
            try:
                y = self.inner(x)
            finally:
                for h in hs:
                    h.remove()
            return (y, *[store[n] for n in reps])

    out_names = ["logits"] + [f"liftcam_mark_{i}" for i in range(len(reps))]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            torch.onnx.export(
                _Marked(model).eval(), (example,), buf, dynamo=False, opset_version=OPSET,
                input_names=["image"], output_names=out_names, do_constant_folding=True,
                dynamic_axes={n: {0: "N"} for n in ["image", *out_names]})
        except Exception as exc:
            raise ExportError(f"torch.onnx.export failed on the model: {exc}") from exc
    m, names_by_tensor = _unmark(onnx.load_from_string(buf.getvalue()), reps, out_names)
    return m, names_by_tensor, logits.detach().numpy(), example.numpy()


def _unmark(m: onnx.ModelProto, reps, out_names):
    """Map mark outputs to the tensors they stand for; keep only the logits as output.

    Modules whose outputs are the same graph tensor (``layer4``, ``layer4.2``,
    ``layer4.2.relu``) are grouped, the outermost (shortest) name first.
    """
    from liftcam.export.split import producers

    prod = producers(m.graph)
    names_by_tensor = {}
    outputs = {o.name: o for o in m.graph.output}
    for name, mark in zip(reps, out_names[1:]):
        t = mark
        node = prod.get(t)
        while node is not None and node.op_type == "Identity" and node.input[0] in prod:
            t = node.input[0]
            node = prod[t]
        names_by_tensor.setdefault(t, []).append(name)
    for names in names_by_tensor.values():
        names.sort(key=lambda n: (n.count("."), len(n)))
    keep = outputs["logits"]
    del m.graph.output[:]
    m.graph.output.append(keep)
    return m, names_by_tensor
