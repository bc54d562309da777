"""PyTorch module -> one ONNX graph in which the candidate target layers' outputs are findable.

The module is exported once (TorchScript-based exporter, a dynamic batch axis) with the
outputs of the requested sub-modules as extra graph outputs. A forward hook records a *clone* of
each output (one graph output per module), so a following in-place op (``ReLU(inplace=True)``,
DenseNet's ``F.relu(..., inplace=True)``) cannot change what the name stands for. The extra
outputs only mark tensors: they are traced back through Identity nodes to the tensor the rest of
the network consumes, and removed again.

When torch's exporter fails, its message (often the whole TorchScript graph) goes to a log file;
the raised :class:`ExportError` is one line that names the file.
"""
from __future__ import annotations

import contextlib
import difflib
import io
import os
import sys
import tempfile
import time
import traceback
import warnings

import onnx

from liftcam.contract import IMAGE, LOGITS
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


def _record_outputs(model, names, example, call):
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
            logits = call(example)
    finally:
        for h in handles:
            h.remove()
    return logits, seen


def _four_d(seen) -> list:
    """Names (in call order) of the modules whose (last) output is a 4-D float tensor."""
    import torch

    return [name for name, (out, _calls) in seen.items()
            if isinstance(out, torch.Tensor) and out.dim() == 4 and out.is_floating_point()]


def torch_to_onnx(model, input_shape, layers=None, call=None):
    """Export ``model`` with the outputs of ``layers`` (all 4-D ones when None) marked.

    ``call``: a :class:`liftcam.export.outputs.ModelCall` (how to call the model, where its
    logits are in what it returns); None makes one that takes ``logits`` / the first tensor.

    Returns ``(onnx_model, names_by_tensor, example_logits, example_input)`` where
    ``names_by_tensor`` maps an ONNX tensor name to the module names whose output it is.
    The returned model has a single output (the model's own) with a dynamic batch axis.
    """
    import torch

    from liftcam.export.outputs import ModelCall

    call = call if call is not None else ModelCall(model)
    example = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(0))
    wanted = layers if layers is not None else [n for n, _ in model.named_modules() if n]
    logits, seen = _record_outputs(model, wanted, example, call)
    if logits.dim() != 2:
        field = "" if call.field is None else f" (field {call.field!r} of {call.structure})"
        raise ExportError(
            f"the model's logits must be one (N, num_classes) tensor; it returned "
            f"{tuple(logits.shape)}{field}. Pass output= to pick another field")
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
        """Returns the logits, then the marked modules' outputs. The hooks sit on the
        model's own modules, by their own names: no wrapper prefix reaches the user."""

        def __init__(self, inner):
            super().__init__()
            self.inner = inner

        def forward(self, x):
            store = {}
            hs = [modules[n].register_forward_hook(
                lambda m, i, o, n=n: store.__setitem__(n, o.clone())) for n in reps]
            try:
                y = call(x, self.inner)
            finally:
                for h in hs:
                    h.remove()
            return (y, *[store[n] for n in reps])

    out_names = [LOGITS] + [f"liftcam_mark_{i}" for i in range(len(reps))]
    buf = io.BytesIO()
    try:
        _export_quietly(lambda: torch.onnx.export(
            _Marked(model).eval(), (example,), buf, dynamo=False, opset_version=OPSET,
            input_names=[IMAGE], output_names=out_names, do_constant_folding=True,
            dynamic_axes={n: {0: "N"} for n in [IMAGE, *out_names]}), type(model).__name__)
        proto = onnx.load_from_string(buf.getvalue())
    except ExportError as first:
        # the torch.export-based exporter handles some models TorchScript cannot (adaptive
        # pooling to a size that does not divide the input, ...); its failure is not the news
        proto = _export_dynamo(_Marked(model).eval(), example, out_names)
        if proto is None:
            raise first from None
    m, names_by_tensor = _unmark(proto, reps, out_names)
    return m, names_by_tensor, logits.detach().numpy(), example.numpy()


def _export_dynamo(marked, example, out_names):
    """torch.onnx.export(..., dynamo=True) with a dynamic batch axis; None when it fails."""
    import torch

    box = {}

    def run():
        prog = torch.onnx.export(
            marked, (example,), dynamo=True, input_names=[IMAGE], output_names=out_names,
            dynamic_shapes=({0: torch.export.Dim("N", min=1, max=1024)},), verbose=False)
        box["proto"] = prog.model_proto
    try:
        _export_quietly(run, type(marked.inner).__name__ + " (dynamo)")
    except ExportError:
        return None
    return box.get("proto")


def _export_quietly(run, what: str) -> None:
    """Call ``run()`` (torch.onnx.export) with its output captured (:func:`_captured_output`).

    On success the captured text is passed on to stdout/stderr. On failure the full exception
    and the captured text go to a log file (:func:`_write_log`) and the ExportError raised is
    one line: what failed, the exception type, the first line of its message and the log's
    path (also in the error's ``log_path``).
    """
    try:
        with _captured_output() as captured, warnings.catch_warnings():
            warnings.simplefilter("ignore")
            run()
    except Exception as exc:
        first = next((ln.strip() for ln in str(exc).splitlines() if ln.strip()), "")
        if len(first) > 200:
            first = first[:197] + "..."
        title = f"torch.onnx.export failed on the model {what}"
        path = _write_log(title, exc, captured)
        error = ExportError(f"{title} ({type(exc).__name__}: {first}); full log: {path}")
        error.log_path = path
        raise error from None
    for name, stream in (("stdout", sys.stdout), ("stderr", sys.stderr)):
        stream.write(captured[name] + captured[f"native {name}"])


def _flush_all() -> None:
    """Flush Python's and C's stdio buffers (native code writes through the latter)."""
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    with contextlib.suppress(Exception):
        import ctypes
        ctypes.CDLL(None).fflush(None)


@contextlib.contextmanager
def _captured_output():
    """Capture stdout and stderr while the block runs: Python's (``contextlib`` redirects) and
    native code's (file descriptors 1 and 2, where torch's C++ exporter prints the TorchScript
    graph of a failed export). Yields a dict, filled in when the block ends:
    ``stdout``, ``stderr``, ``native stdout``, ``native stderr``."""
    captured = {"stdout": "", "stderr": "", "native stdout": "", "native stderr": ""}
    py = {"stdout": io.StringIO(), "stderr": io.StringIO()}
    native = {}
    _flush_all()
    for fd, name in ((1, "native stdout"), (2, "native stderr")):
        try:
            saved = os.dup(fd)
        except OSError:          # no such descriptor (e.g. a GUI process): nothing to capture
            continue
        tmp = tempfile.TemporaryFile()
        os.dup2(tmp.fileno(), fd)
        native[name] = (fd, saved, tmp)
    try:
        with contextlib.redirect_stdout(py["stdout"]), contextlib.redirect_stderr(py["stderr"]):
            yield captured
    finally:
        _flush_all()
        for name, (fd, saved, tmp) in native.items():
            os.dup2(saved, fd)
            os.close(saved)
            tmp.seek(0)
            captured[name] = tmp.read().decode("utf-8", "replace")
            tmp.close()
        captured["stdout"], captured["stderr"] = py["stdout"].getvalue(), py["stderr"].getvalue()


def _write_log(title: str, exc: BaseException, captured: dict) -> str:
    """Write the full failure report to ``<tmp>/liftcam-export-<timestamp>-<pid>.log``,
    atomically (a temporary file renamed into place); returns its path."""
    parts = [title, "", "".join(traceback.format_exception(type(exc), exc, exc.__traceback__))]
    for name, text in captured.items():
        parts += [f"---- exporter {name} ----", text]
    now = time.time()
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
    folder = tempfile.gettempdir()
    path = os.path.join(folder, f"liftcam-export-{stamp}-{os.getpid()}.log")
    fd, tmp = tempfile.mkstemp(prefix=".liftcam-export-", suffix=".tmp", dir=folder)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write("\n".join(parts))
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    return path


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
    keep = outputs[LOGITS]
    del m.graph.output[:]
    m.graph.output.append(keep)
    return m, names_by_tensor
