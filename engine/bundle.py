"""The bundle: a directory with ``manifest.json``, the ONNX graphs and one shared weights file.

Loading validates everything before a graph is handed to ONNX Runtime: the manifest's format
version and fields, that every listed file exists with the recorded sha256, and that no ONNX
file points its external data outside the bundle directory. Run time only: numpy-free, onnx-free
(ONNX files are scanned with a small protobuf wire-format reader, :mod:`liftcam.engine.onnx_scan`).
"""
from __future__ import annotations

import hashlib
import json
import os
from dataclasses import dataclass
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
from liftcam.engine.onnx_scan import external_data_locations

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


@dataclass(frozen=True)
class Bundle:
    """A validated bundle. ``graph(role)`` gives the path of one of its ONNX graphs."""

    path: Path
    manifest: dict

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
    for key in ("input", "activation"):
        shape = m[key].get("shape")
        if (not isinstance(shape, list) or len(shape) != 4
                or not all(isinstance(d, int) and d > 0 for d in shape[1:])):
            raise BundleError(f"{where}: malformed manifest: {key}.shape must be "
                              f"[null, C, H, W] with positive ints, got {shape!r}")
    if m["input"].get("layout", "NCHW") not in LAYOUTS:
        raise BundleError(f"{where}: malformed manifest: input.layout must be one of "
                          f"{list(LAYOUTS)}, got {m['input'].get('layout')!r}")
    if m["num_classes"] <= 0:
        raise BundleError(f"{where}: malformed manifest: num_classes must be > 0")
    labels = m.get("labels")
    if labels is not None and (not isinstance(labels, list) or len(labels) != m["num_classes"]):
        raise BundleError(f"{where}: malformed manifest: labels must be a list of num_classes "
                          f"({m['num_classes']}) strings")
    for name, entry in m["files"].items():
        if (not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str)
                or len(entry["sha256"]) != 64):
            raise BundleError(f"{where}: malformed manifest: files[{name!r}] needs a 64-hex sha256")
        _inside(where.parent, name, f"files[{name!r}]")


def _inside(root: Path, name: str, what: str) -> Path:
    """``root / name``, refusing absolute paths and paths that leave ``root``."""
    if not isinstance(name, str) or not name or os.path.isabs(name):
        raise BundleError(f"{root}: {what} must be a relative file name inside the bundle, "
                          f"got {name!r}")
    full = (root / name).resolve()
    if full != root.resolve() and root.resolve() not in full.parents:
        raise BundleError(f"{root}: {what} points outside the bundle directory: {name!r}")
    return full


def load_bundle(path, verify: bool = True) -> Bundle:
    """Open and validate a bundle directory.

    Refuses, with a :class:`BundleError` that says what is wrong: a missing directory or
    manifest, a malformed manifest, an unknown format version, missing files, a sha256 mismatch
    (``verify=False`` skips hashing, not the other checks), and ONNX external-data paths that
    leave the bundle directory.
    """
    root = Path(path)
    if not root.is_dir():
        raise BundleError(f"bundle directory not found: {root} (export one with `liftcam export`)")
    mpath = root / MANIFEST
    if not mpath.is_file():
        raise BundleError(f"{root} is not a liftcam bundle: it has no {MANIFEST}")
    try:
        manifest = json.loads(mpath.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise BundleError(f"{mpath}: malformed manifest (not valid JSON: {exc})") from exc
    _check_manifest(manifest, mpath)
    listed = {_inside(root, n, "") for n in manifest["files"]}   # resolved paths
    for name, entry in manifest["files"].items():
        fpath = root / name
        if not fpath.is_file():
            raise BundleError(f"{root}: the file {name} listed in the manifest is missing")
        if verify and sha256_file(fpath) != entry["sha256"]:
            raise BundleError(
                f"{root}: sha256 mismatch for {name}: the file was changed or corrupted after "
                "export. Re-export the bundle.")
        if name.endswith(".onnx"):
            try:
                locations = external_data_locations(fpath.read_bytes())
            except ValueError as exc:
                raise BundleError(f"{fpath}: not a readable ONNX file ({exc})") from exc
            for loc in locations:
                target = _inside(root, loc, f"external data of {name}")
                if target not in listed:
                    raise BundleError(f"{root}: {name} uses external data {loc!r}, which the "
                                      "manifest does not list (so it is not hash-checked)")
    return Bundle(path=root, manifest=manifest)
