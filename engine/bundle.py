"""The bundle: a directory with ``manifest.json``, the ONNX graphs and one shared weights file.

Loading validates everything before a graph is handed to ONNX Runtime (DESIGN.md §11): the
manifest's format version and fields (every size it can ask for is capped), that every listed
file exists with the recorded sha256 (each distinct file hashed once), that every graph a role
names (whatever its file name) refers only to external data the manifest lists and hashes, and
that the graphs' declared inputs and outputs agree with the manifest. Run time only, onnx-free
(ONNX files are scanned with a small protobuf wire-format reader, :mod:`liftcam.engine.onnx_scan`).
"""
from __future__ import annotations

import hashlib
import json
import os
import posixpath
from dataclasses import dataclass, field
from pathlib import Path

from liftcam.contract import (  # noqa: F401  (re-exported for callers)
    FORMAT_VERSION,
    GRAPH_FILES,
    LAYOUTS,
    MANIFEST,
    REQUIRED_GRAPHS,
    WEIGHTS,
)
from liftcam.engine.errors import BundleError
from liftcam.engine.graph_check import check_graphs
from liftcam.engine.onnx_scan import scan_model

# manifest key -> the type(s) its value must have
REQUIRED_KEYS = {
    "format_version": int,
    "input": dict,
    "preprocessing": dict,
    "target_layer": dict,
    "activation": dict,
    "num_classes": int,
    "graphs": dict,
    "files": dict,
}
MAX_MANIFEST_BYTES = 16 << 20     # a manifest is a few KB; labels of 100k classes fit easily
MAX_SIDE = 8192                   # input and activation H, W (preprocessing: images.MAX_SIDE)
MAX_CHANNELS = 1 << 16            # input C, activation K
MAX_CLASSES = 1 << 20
MAX_FILES = 64                    # a bundle has about ten files


@dataclass(frozen=True)
class Bundle:
    """A validated bundle. ``graph(role)`` gives the path of one of its ONNX graphs."""

    path: Path
    manifest: dict
    #: role -> the names of its graph's outputs (read when the bundle was loaded)
    outputs: dict = field(default_factory=dict, compare=False)

    def graph(self, role: str) -> Path:
        graphs = self.manifest["graphs"]
        if role not in graphs:
            raise BundleError(
                f"bundle {self.path} has no {role!r} graph (it has {sorted(graphs)}); "
                "re-export it with this version of liftcam")
        return self.path / graphs[role]

    @property
    def num_classes(self) -> int:
        return self.manifest["num_classes"]

    @property
    def labels(self):
        return self.manifest.get("labels")

    @property
    def layout(self) -> str:
        """The input's layout: "NCHW" or "NHWC" (channels last, e.g. from Keras)."""
        return self.manifest["input"].get("layout", "NCHW")

    @property
    def input_shape(self) -> tuple:
        """The shape of one image in the model's own layout: (C, H, W) or (H, W, C)."""
        return tuple(self.manifest["input"]["shape"][1:])

    @property
    def image_hw(self) -> tuple:
        """(H, W) of the model's input, whatever its layout."""
        s = self.input_shape
        return (s[1], s[2]) if self.layout == "NCHW" else (s[0], s[1])

    @property
    def activation_shape(self) -> tuple:
        """(K, h, w) of the target layer's activation for one image."""
        return tuple(self.manifest["activation"]["shape"][1:])


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def canonical_name(name) -> str:
    """The one spelling of a relative file name inside a bundle (``./a/../w.bin`` ->
    ``w.bin``); refuses what is not a relative path that stays inside (ValueError)."""
    if not isinstance(name, str) or not name or "\0" in name or "\\" in name:
        raise ValueError(f"not a relative file name: {name!r}")
    if posixpath.isabs(name) or os.path.isabs(name):
        raise ValueError(f"an absolute path: {name!r}")
    norm = posixpath.normpath(name)
    if norm in (".", "..") or norm.startswith("../"):
        raise ValueError(f"points outside the bundle directory: {name!r}")
    return norm


def _check_shape(m, key, where, last_max):
    shape = m[key].get("shape")
    if (not isinstance(shape, list) or len(shape) != 4
            or not all(isinstance(d, int) and not isinstance(d, bool) and d > 0
                       for d in shape[1:])):
        raise BundleError(f"{where}: malformed manifest: {key}.shape must be "
                          f"[null, C, H, W] with positive ints, got {shape!r}")
    if shape[1] > MAX_CHANNELS or max(shape[2:]) > last_max:
        raise BundleError(f"{where}: manifest {key}.shape {shape[1:]} is over the limits "
                          f"(channels <= {MAX_CHANNELS}, sides <= {last_max})")


def _check_manifest(m, where: Path) -> None:
    if not isinstance(m, dict):
        raise BundleError(f"{where}: the manifest must be a JSON object, not {type(m).__name__}")
    if "format_version" in m and m["format_version"] != FORMAT_VERSION:
        raise BundleError(
            f"{where}: unknown bundle format version {m['format_version']!r}; this liftcam reads "
            f"version {FORMAT_VERSION}. Re-export the model with this liftcam version.")
    for key, typ in REQUIRED_KEYS.items():
        if key not in m:
            raise BundleError(f"{where}: malformed manifest: the key {key!r} is missing")
        if not isinstance(m[key], typ) or isinstance(m[key], bool):
            raise BundleError(
                f"{where}: malformed manifest: {key!r} must be a {typ.__name__}, "
                f"got {type(m[key]).__name__}")
    if len(m["files"]) > MAX_FILES:
        raise BundleError(f"{where}: malformed manifest: {len(m['files'])} files listed, "
                          f"more than {MAX_FILES}")
    for name, entry in m["files"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or len(entry["sha256"]) != 64):
            raise BundleError(f"{where}: malformed manifest: files[{name!r}] needs a 64-hex sha256")
        try:
            canon = canonical_name(name)
        except ValueError as exc:
            raise BundleError(f"{where.parent}: files[{name!r}] must be a relative file name "
                              f"inside the bundle: {exc}") from None
        if canon != name:
            raise BundleError(f"{where}: malformed manifest: files[{name!r}] must be spelled "
                              f"{canon!r} (one spelling per file)")
    for role in REQUIRED_GRAPHS:
        if role not in m["graphs"]:
            raise BundleError(f"{where}: malformed manifest: graphs has no {role!r} entry")
    for role, name in m["graphs"].items():
        if not isinstance(name, str):
            raise BundleError(f"{where}: malformed manifest: graphs[{role!r}] must be a file "
                              f"name (str), got {type(name).__name__}")
        if name not in m["files"]:
            raise BundleError(f"{where}: malformed manifest: graph {role!r} ({name}) has no entry "
                              "in 'files' (every file needs its sha256)")
    _check_shape(m, "input", where, MAX_SIDE)
    _check_shape(m, "activation", where, MAX_SIDE)
    if not isinstance(m["input"].get("name"), str) or not m["input"]["name"]:
        raise BundleError(f"{where}: malformed manifest: input.name must be a non-empty str")
    if not 0 < m["num_classes"] <= MAX_CLASSES:
        raise BundleError(f"{where}: malformed manifest: num_classes must be in "
                          f"1..{MAX_CLASSES}, got {m['num_classes']}")
    if m["input"].get("layout", "NCHW") not in LAYOUTS:
        raise BundleError(f"{where}: malformed manifest: input.layout must be one of "
                          f"{list(LAYOUTS)}, got {m['input'].get('layout')!r}")
    labels = m.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != m["num_classes"]
                               or not all(isinstance(x, str) for x in labels)):
        raise BundleError(f"{where}: malformed manifest: labels must be a list of num_classes "
                          f"({m['num_classes']}) strings")
    from liftcam.engine.errors import InputError
    from liftcam.engine.images import validate_preprocessing

    try:
        validate_preprocessing(m["preprocessing"])
    except InputError as exc:
        raise BundleError(f"{where}: malformed manifest: {exc}") from None


def _inside(root: Path, name: str, what: str) -> Path:
    """``root / name`` resolved, refusing absolute paths and paths that leave ``root`` (also
    through symlinks)."""
    try:
        canonical_name(name)
    except ValueError as exc:
        raise BundleError(f"{root}: {what} must be a relative file name inside the bundle: "
                          f"{exc}") from None
    full = (root / name).resolve()
    base = root.resolve()
    if full != base and base not in full.parents:
        raise BundleError(f"{root}: {what} points outside the bundle directory: {name!r}")
    return full


def _read_manifest(root: Path) -> dict:
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root} is not a liftcam bundle: it has no {MANIFEST}")
    if mpath.stat().st_size > MAX_MANIFEST_BYTES:
        raise BundleError(f"{mpath}: malformed manifest: over {MAX_MANIFEST_BYTES >> 20} MB")
    try:
        return json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: malformed manifest (not valid JSON: {exc})") from exc
    except RecursionError:
        raise BundleError(f"{mpath}: malformed manifest (JSON nested too deeply)") from None


def _scan(path: Path):
    """The :class:`~liftcam.engine.onnx_scan.ModelInfo` of an ONNX file (read once; the
    scanner walks offsets into it, copying nothing)."""
    data = path.read_bytes()
    if not data:
        raise ValueError("the file is empty")
    return scan_model(data)


def load_bundle(path, verify: bool = True) -> Bundle:
    """Open and validate a bundle directory.

    Refuses, with a :class:`BundleError` that says what is wrong: a missing directory or
    manifest, a malformed manifest (sizes over the caps, a file name in other than its one
    canonical spelling), an unknown format version, missing files, a sha256 mismatch
    (``verify=False`` skips hashing, not the other checks), graphs that refer to external data
    the manifest does not list (or that leaves the bundle, or is not UTF-8), and graphs whose
    declared inputs and outputs contradict the manifest.
    """
    root = Path(path)
    try:
        return _load(root, verify)
    except BundleError:
        raise
    except (OSError, RecursionError, MemoryError, OverflowError) as exc:
        what = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
        where = getattr(exc, "filename", None) or root
        raise BundleError(f"{where}: cannot read the bundle: {what}") from None


def _load(root: Path, verify: bool) -> Bundle:
    if not root.is_dir():
        raise BundleError(f"bundle directory not found: {root} (export one with `liftcam export`)")
    manifest = _read_manifest(root)
    _check_manifest(manifest, root / MANIFEST)
    listed = {}                                   # resolved path -> manifest name
    hashed = {}                                   # (st_dev, st_ino) -> sha256
    for name, entry in manifest["files"].items():
        full = _inside(root, name, f"files[{name!r}]")
        if not full.is_file():
            raise BundleError(f"{root}: the file {name} listed in the manifest is missing")
        listed[full] = name
        if verify:
            st = full.stat()
            key = (st.st_dev, st.st_ino)
            if key not in hashed:
                hashed[key] = sha256_file(full)
            if hashed[key] != entry["sha256"]:
                raise BundleError(
                    f"{root}: sha256 mismatch for {name}: the file was changed or corrupted "
                    "after export. Re-export the bundle.")
    graphs = dict.fromkeys(manifest["graphs"].values())
    graphs.update(dict.fromkeys(n for n in manifest["files"] if n.endswith(".onnx")))
    infos = {}
    for name in graphs:
        fpath = root / name
        try:
            info = _scan(fpath)
        except ValueError as exc:
            raise BundleError(f"{fpath}: not a readable ONNX file ({exc})") from None
        for loc in dict.fromkeys(info.locations):
            target = _inside(root, loc, f"external data of {name}")
            if target not in listed:
                raise BundleError(f"{root}: {name} uses external data {loc!r}, which the "
                                  "manifest does not list (so it is not hash-checked)")
        infos[name] = info
    check_graphs(manifest, {role: infos[n] for role, n in manifest["graphs"].items()}, root)
    return Bundle(path=root, manifest=manifest, outputs={
        role: tuple(infos[n].outputs) for role, n in manifest["graphs"].items()})
