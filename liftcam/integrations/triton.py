"""A Triton Inference Server model repository from a bundle: ``export_triton(bundle, repo)``.

Writes ``REPO/<name>/1/model.onnx`` (the fused explain graph with its weights inside, so the
file stands alone) and ``REPO/<name>/config.pbtxt`` for the ONNX Runtime backend with dynamic
batching, plus ``labels.txt`` (the classes, for Triton's classification extension on
``logits``) and ``client_example.py`` (a ``tritonclient.http`` request) in the model folder.

Shapes. The graph takes ``image`` float32 (N, C, H, W) and ``target`` int64 (N,) (-1: the
predicted class) and returns ``logits`` (N, classes), ``weights`` (N, K) and ``map`` (N, H, W).
With ``max_batch_size > 0`` Triton's ``dims`` leave out the batch dimension, so ``image`` is
``[C, H, W]``; a per-sample scalar cannot be written as empty dims, so ``target`` is
``dims: [1]`` with ``reshape: { shape: [] }`` (the client sends (N, 1), the model gets (N,)).

Building needs ``onnx`` (``pip install 'liftcam[triton]'``); nothing here imports
``tritonclient`` (the tests parse the config with its ``ModelConfig`` protobuf).
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from pathlib import Path
from pprint import pformat

import numpy as np

from liftcam.contract import (
    COEFFICIENTS,
    EXPLAIN,
    EXPLAIN_GRADCAM,
    IMAGE,
    LOGITS,
    LOW_RES,
    MAP,
    TARGET,
)
from liftcam.engine.errors import InputError
from liftcam.integrations import require

__all__ = ["export_triton", "GRAPHS"]

#: method -> the bundle's fused graph that computes it
GRAPHS = {"liftcam": EXPLAIN, "gradcam": EXPLAIN_GRADCAM}
TWO_GB = 2 ** 31
_ONNX_TO_TRITON = {1: "TYPE_FP32", 7: "TYPE_INT64", 10: "TYPE_FP16", 11: "TYPE_FP64",
                   6: "TYPE_INT32", 9: "TYPE_BOOL", 2: "TYPE_UINT8"}


def export_triton(bundle, repo, *, name=None, method="liftcam", max_batch: int = 32,
                  instances: int = 1, gpu: bool = False, queue_delay_us: int = 100,
                  overwrite: bool = False, verify: bool = True) -> Path:
    """Write a Triton model repository entry for ``bundle``; returns the model folder.

    ``name``: the model name (default: the bundle folder's name without ``.liftcam``).
    ``method``: ``liftcam`` (explain.onnx) or ``gradcam`` (explain_gradcam.onnx).
    ``max_batch``: Triton's ``max_batch_size`` (dynamic batching up to it). ``instances``:
    model instances; ``gpu``: ``KIND_GPU`` instead of ``KIND_CPU``. An existing model folder
    is refused unless ``overwrite``. ``verify``: run the written model once with ONNX Runtime
    and check its outputs against the declared dims.
    """
    onnx = require("onnx", "triton", "liftcam export-triton")
    from liftcam.engine.bundle import Bundle, load_bundle

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    if method not in GRAPHS:
        raise InputError(f"method must be one of {sorted(GRAPHS)} (the fused graphs a bundle "
                         f"holds), got {method!r}")
    for what, v in (("max_batch", max_batch), ("instances", instances)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{what} must be a positive int, got {v!r}")
    name = name or re.sub(r"\.liftcam$", "", Path(b.path).name)
    if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
        raise InputError(f"model name {name!r}: use letters, digits, '_', '-' and '.'")
    repo = Path(repo)
    final = repo / name
    if final.exists() and not overwrite:
        raise InputError(f"{final} already exists; pass overwrite=True (--overwrite) to "
                         "replace it")
    model = onnx.load(str(b.graph(GRAPHS[method])), load_external_data=True)
    _fill_dims(model, b)
    spec = _io_spec(model)
    repo.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{name}.", dir=repo))
    try:
        (tmp / "1").mkdir()
        path = tmp / "1" / "model.onnx"
        if model.ByteSize() < TWO_GB:
            onnx.save(model, str(path))
        else:   # protobuf's limit: the weights go into one file next to model.onnx
            onnx.save(model, str(path), save_as_external_data=True, all_tensors_to_one_file=True,
                      location="model.onnx.data")
        labels = "labels.txt" if b.labels else None
        if labels:
            (tmp / labels).write_text("\n".join(b.labels) + "\n", encoding="utf-8")
        (tmp / "config.pbtxt").write_text(
            config_text(name, spec, max_batch, instances, gpu, queue_delay_us, labels),
            encoding="utf-8")
        (tmp / "client_example.py").write_text(
            client_example(name, spec, b.manifest["preprocessing"]), encoding="utf-8")
        if verify:
            _verify(path, spec)
        if final.exists():
            shutil.rmtree(final)
        os.replace(tmp, final)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp)
    return final


def _fill_dims(model, b) -> None:
    """Give the graph's unnamed non-batch output dims their values (logits: the classes)."""
    known = {LOGITS: [b.num_classes]}
    for out in model.graph.output:
        dims = out.type.tensor_type.shape.dim
        for i, d in enumerate(dims[1:]):
            if not d.HasField("dim_value") and out.name in known:
                d.Clear()
                d.dim_value = known[out.name][i]


def _io_spec(model) -> dict:
    """``{"inputs"|"outputs": [(name, triton dtype, dims without the batch)]}`` from the
    graph; refuses graphs Triton could not batch or whose dims are not all known."""
    spec = {}
    for kind, values in (("inputs", model.graph.input), ("outputs", model.graph.output)):
        spec[kind] = []
        for v in values:
            t = v.type.tensor_type
            dims = [d.dim_value if d.HasField("dim_value") else None for d in t.shape.dim]
            if not dims or dims[0] is not None:
                raise InputError(f"{v.name}: the first dim must be the batch dim, got {dims}")
            if any(d is None or d < 1 for d in dims[1:]):
                raise InputError(f"{v.name}: non-batch dims must be known, got {dims}")
            spec[kind].append((v.name, _ONNX_TO_TRITON[t.elem_type], dims[1:]))
    names = [n for n, *_ in spec["inputs"]], [n for n, *_ in spec["outputs"]]
    # low_res (bundles from liftcam 0.2.1 on) is served too; older explain graphs lack it
    if names[0] != [IMAGE, TARGET] or names[1] not in ([LOGITS, COEFFICIENTS, MAP],
                                                        [LOGITS, COEFFICIENTS, MAP, LOW_RES]):
        raise InputError(f"unexpected explain graph inputs/outputs {names}")
    return spec


def _dims(dims) -> str:
    return "[ " + ", ".join(map(str, dims)) + " ]"


def config_text(name, spec, max_batch, instances, gpu, queue_delay_us, labels=None) -> str:
    """config.pbtxt (protobuf text format of Triton's ``ModelConfig``)."""
    def tensor(n, dtype, dims, extra=""):
        if not dims:         # a per-sample scalar: [1] on the wire, () in the model
            dims, extra = [1], extra + "\n    reshape: { shape: [ ] }"
        return (f"  {{\n    name: \"{n}\"\n    data_type: {dtype}\n    dims: {_dims(dims)}"
                f"{extra}\n  }}")

    ins = [tensor(*t) for t in spec["inputs"]]
    outs = [tensor(n, d, s, f'\n    label_filename: "{labels}"' if labels and n == LOGITS
                   else "") for n, d, s in spec["outputs"]]
    kind = "KIND_GPU" if gpu else "KIND_CPU"
    text = (f'name: "{name}"\nbackend: "onnxruntime"\nmax_batch_size: {max_batch}\n'
            "input [\n" + ",\n".join(ins) + "\n]\noutput [\n" + ",\n".join(outs) + "\n]\n"
            f"dynamic_batching {{\n  max_queue_delay_microseconds: {queue_delay_us}\n}}\n"
            f"instance_group [\n  {{\n    count: {instances}\n    kind: {kind}\n  }}\n]\n")
    if gpu:
        text += ("# TensorRT through ONNX Runtime (untested here; ops TensorRT lacks run on\n"
                 "# ONNX Runtime's CUDA provider):\n"
                 "# optimization { execution_accelerators {\n"
                 "#   gpu_execution_accelerator : [ { name : \"tensorrt\" } ] } }\n")
    return text


def client_example(name, spec, preprocessing) -> str:
    """A tritonclient.http request for the model (what ``client_example.py`` holds)."""
    (_, _, chw), = [t for t in spec["inputs"] if t[0] == IMAGE]
    shape = ", ".join(map(str, chw))
    return f'''"""Explain one image with the Triton model "{name}" (liftcam export-triton).

pip install 'tritonclient[http]' liftcam; start Triton on this repository
(tritonserver --model-repository REPO), then: python client_example.py IMAGE [URL]
"""
import sys

import numpy as np
import tritonclient.http as httpclient

from liftcam.engine.images import load_image, preprocess

PREPROCESSING = {pformat(dict(preprocessing), width=88, sort_dicts=False)}
image = sys.argv[1]
url = sys.argv[2] if len(sys.argv) > 2 else "localhost:8000"

x = preprocess([load_image(image)], PREPROCESSING)    # (1, {shape}) float32
target = np.array([[-1]], dtype=np.int64)             # (1, 1): -1 = the predicted class

client = httpclient.InferenceServerClient(url=url)
inputs = [httpclient.InferInput("{IMAGE}", list(x.shape), "FP32"),
          httpclient.InferInput("{TARGET}", list(target.shape), "INT64")]
inputs[0].set_data_from_numpy(x)
inputs[1].set_data_from_numpy(target)
outputs = [httpclient.InferRequestedOutput(n) for n in ("{LOGITS}", "{COEFFICIENTS}", "{MAP}")]
result = client.infer("{name}", inputs, outputs=outputs)
logits, cam = result.as_numpy("{LOGITS}"), result.as_numpy("{MAP}")
print("predicted class", int(logits[0].argmax()), "map", cam.shape, cam.min(), cam.max())
'''


def _verify(path, spec) -> None:
    """Run the written model at batch 2 and check every output's shape against the dims."""
    import onnxruntime as ort

    s = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    (_, _, chw), = [t for t in spec["inputs"] if t[0] == IMAGE]
    outs = s.run(None, {IMAGE: np.zeros((2, *chw), np.float32),
                        TARGET: np.full(2, -1, np.int64)})
    for (n, _, dims), o in zip(spec["outputs"], outs):
        if list(o.shape) != [2, *dims]:
            raise InputError(f"{path}: output {n} has shape {o.shape}, declared {[2, *dims]}")

