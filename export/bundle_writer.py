"""Write a bundle directory atomically, with every weight stored once.

The graphs of a bundle (features, head, the multiplier graphs, explain) hold many of the same
initializers (the head's weights appear in four of them). Each distinct tensor payload (by
sha256 of its bytes) is written once into ``weights.bin``, 64-byte aligned, and every graph's
initializer points there with ONNX external data (location, offset, length).
"""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Optional

import onnx
from onnx import numpy_helper

from liftcam.contract import FORMAT_VERSION, GRAPH_FILES, MANIFEST, WEIGHTS
from liftcam.engine.bundle import sha256_file
from liftcam.engine.errors import ExportError

EXTERNAL_MIN_BYTES = 1024   # smaller initializers stay inside their graph
ALIGN = 64


def _payload(t: onnx.TensorProto) -> bytes:
    return t.raw_data if t.raw_data else numpy_helper.to_array(t).tobytes()


def stored_payloads(models, weights_path) -> dict:
    """sha256 -> (offset, length) of every payload that ``models`` already keep in
    ``weights_path`` (the ``stored`` argument of :func:`externalize`)."""
    found = {}
    with open(weights_path, "rb") as f:
        for model in models:
            for t in model.graph.initializer:
                if t.data_location != onnx.TensorProto.EXTERNAL:
                    continue
                e = {kv.key: kv.value for kv in t.external_data}
                f.seek(int(e["offset"]))
                raw = f.read(int(e["length"]))
                found.setdefault(hashlib.sha256(raw).hexdigest(),
                                 (int(e["offset"]), int(e["length"])))
    return found


def externalize(models, weights_path: Path, stored: Optional[dict] = None) -> None:
    """Point every initializer of ``models`` of at least EXTERNAL_MIN_BYTES into one
    deduplicated weights file, in place.

    Without ``stored``: write ``weights_path`` anew, each distinct payload once, 64-byte
    aligned. With ``stored`` (see :func:`stored_payloads`): the file is left as it is; only the
    payloads it already holds are pointed at, the others stay inside their graph.
    """
    offsets = {} if stored is None else dict(stored)
    f = open(weights_path, "wb") if stored is None else None
    try:
        for model in models:
            for t in model.graph.initializer:
                if t.data_location == onnx.TensorProto.EXTERNAL:
                    raise ExportError(f"initializer {t.name} already uses external data")
                raw = _payload(t)
                if len(raw) < EXTERNAL_MIN_BYTES:
                    continue
                key = hashlib.sha256(raw).hexdigest()
                if key not in offsets:
                    if f is None:
                        continue
                    f.write(b"\0" * ((-f.tell()) % ALIGN))
                    offsets[key] = (f.tell(), len(raw))
                    f.write(raw)
                _point_external(t, *offsets[key])
    finally:
        if f is not None:
            f.close()


def _point_external(t: onnx.TensorProto, offset: int, length: int) -> None:
    dims, dtype, name = list(t.dims), t.data_type, t.name
    t.Clear()
    t.name, t.data_type = name, dtype
    t.dims.extend(dims)
    t.data_location = onnx.TensorProto.EXTERNAL
    for k, v in (("location", WEIGHTS), ("offset", str(offset)), ("length", str(length))):
        e = t.external_data.add()
        e.key, e.value = k, v


def file_entry(path: Path) -> dict:
    """A manifest ``files`` entry: the file's sha256 and size."""
    return {"sha256": sha256_file(path), "bytes": path.stat().st_size}


def write_bundle(out_dir, models: dict, manifest: dict, overwrite: bool = False) -> Path:
    """Write ``models`` (role -> ModelProto, roles from GRAPH_FILES) and the manifest.

    The bundle is assembled in a temporary directory beside ``out_dir`` and renamed into place,
    so a failed export never leaves a half-written bundle (the command line turns SIGTERM into
    an exception, so a terminated export removes it too). An existing ``out_dir`` is replaced
    only with ``overwrite=True``, through a fresh uniquely named folder of its own (never a
    sibling that happens to be called ``.NAME.old``). The bundle gets the umask's usual
    directory mode, not mkdtemp's 0700.
    """
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise ExportError(f"{out} already exists; pass overwrite=True (--overwrite) to replace it")
    if out.exists() and not (out.is_dir() and ((out / MANIFEST).is_file()
                                               or not any(out.iterdir()))):
        # overwrite replaces a bundle (or an empty directory), never an unrelated file/folder
        raise ExportError(f"{out} exists and is not a liftcam bundle (no {MANIFEST}); refusing "
                          "to replace it even with overwrite=True. Choose another out_dir.")
    unknown = set(models) - set(GRAPH_FILES)
    if unknown:
        raise ExportError(f"unknown graph roles {sorted(unknown)}")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)
        externalize(models.values(), tmp / WEIGHTS)
        files = {}
        for role, model in models.items():
            name = GRAPH_FILES[role]
            (tmp / name).write_bytes(model.SerializeToString())
        for p in sorted(tmp.iterdir()):
            files[p.name] = file_entry(p)
        full = dict(manifest)
        full["format_version"] = FORMAT_VERSION
        full["graphs"] = {role: GRAPH_FILES[role] for role in models}
        full["files"] = files
        (tmp / MANIFEST).write_text(json.dumps(full, indent=2) + "\n", encoding="utf-8")
        if out.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".old", dir=out.parent))
            os.replace(out, old)            # onto our own empty folder
            os.replace(tmp, out)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def add_graph(bundle, role: str, model: onnx.ModelProto) -> Path:
    """Add the graph ``role`` to an existing, verified bundle: its weights point into the
    bundle's ``weights.bin`` where the payload is already there (nothing stored twice; others
    stay inside the graph), the file is written atomically and the manifest lists it."""
    from liftcam.engine.atomic import write_bytes_atomic

    root = Path(bundle.path)
    graphs = [onnx.load(str(bundle.graph(r)), load_external_data=False)
              for r in bundle.manifest["graphs"]]
    externalize([model], root / WEIGHTS, stored=stored_payloads(graphs, root / WEIGHTS))
    name = GRAPH_FILES[role]
    write_bytes_atomic(root / name, model.SerializeToString())
    manifest = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    manifest["graphs"][role] = name
    manifest["files"][name] = file_entry(root / name)
    write_bytes_atomic(root / MANIFEST, (json.dumps(manifest, indent=2) + "\n").encode("utf-8"))
    return root / name
