"""Builders of the hostile corpus (tests/test_hostile.py): images, file names, bundles and
protobuf files made at test time, each small on disk however large it claims to be."""
from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
from PIL import Image

from liftcam.engine import DEMO_DIR

DEMO = DEMO_DIR / "resnet_demo.liftcam"     # 64x64 input, 8 classes, onnx-free to run


# ----------------------------------------------------------------------------- images
def small_png(path, seed=0, size=64) -> Path:
    rng = np.random.default_rng(seed)
    Image.fromarray(rng.integers(0, 255, (size, size, 3), np.uint8)).save(path)
    return Path(path)


def huge_png(path, width, height) -> Path:
    """A width x height 1-bit PNG: a few KB on disk, width*height pixels in its header."""
    Image.new("1", (width, height)).save(path, optimize=False)
    return Path(path)


def image_folder(d: Path, n: int) -> Path:
    d.mkdir(parents=True, exist_ok=True)
    for i in range(n):
        small_png(d / f"img{i:03d}.png", seed=i)
    return d


# ----------------------------------------------------------------------------- bundles
def bundle_copy(tmp: Path, name="b.liftcam") -> Path:
    dst = tmp / name
    shutil.copytree(DEMO, dst)
    return dst


def manifest(b: Path) -> dict:
    return json.loads((b / "manifest.json").read_text())


def write_manifest(b: Path, m: dict) -> None:
    (b / "manifest.json").write_text(json.dumps(m))


def rehash(b: Path, name: str, as_name: str = None) -> None:
    """Record the current bytes of ``name`` in the manifest (what a careful tamperer does)."""
    m = manifest(b)
    data = (b / name).read_bytes()
    m["files"][as_name or name] = {"sha256": hashlib.sha256(data).hexdigest(),
                                   "bytes": len(data)}
    write_manifest(b, m)


def set_location(b: Path, graph: str, location: str) -> None:
    """Point every external initializer of ``graph`` at ``location``; fix the manifest hash."""
    import onnx

    m = onnx.load(str(b / graph), load_external_data=False)
    for t in m.graph.initializer:
        for e in t.external_data:
            if e.key == "location":
                e.value = location
    (b / graph).write_bytes(m.SerializeToString())
    rehash(b, graph)


def replace_bytes(b: Path, graph: str, old: bytes, new: bytes) -> None:
    """Byte-level edit of a graph (same length keeps the protobuf valid); fix the hash."""
    assert len(old) == len(new)
    data = (b / graph).read_bytes()
    assert old in data
    (b / graph).write_bytes(data.replace(old, new))
    rehash(b, graph)


# ----------------------------------------------------------------------------- protobuf
def _varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b, n = n & 0x7F, n >> 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def ld(field: int, payload: bytes) -> bytes:
    """A length-delimited protobuf field."""
    return _varint(field << 3 | 2) + _varint(len(payload)) + payload


def nested_model(depth: int, payload_bytes: int = 0) -> bytes:
    """A ModelProto whose graph nests ``depth`` subgraphs (node -> attribute g -> graph ...),
    the innermost holding an initializer with ``payload_bytes`` of raw data (field 9)."""
    inner = ld(5, ld(8, b"w") + ld(9, b"\0" * payload_bytes)) if payload_bytes else b""
    for _ in range(depth):
        inner = ld(1, ld(5, ld(1, b"then_branch") + ld(6, inner)))
    return ld(7, inner)


# ----------------------------------------------------------------------------- processes
def cli(*args) -> list:
    return [sys.executable, "-m", "liftcam.cli", *map(str, args)]


def wait_for_lines(path: Path, n: int, proc, timeout=60.0) -> None:
    """Wait until ``path`` has at least ``n`` lines (or the process ends / time runs out)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end and proc.poll() is None:
        if path.exists() and path.read_bytes().count(b"\n") >= n:
            return
        time.sleep(0.05)
    raise AssertionError(f"{path} did not reach {n} lines (rc {proc.poll()})")


def jsonl(path: Path) -> list:
    """Every line of a results.jsonl, each of which must parse."""
    data = path.read_bytes()
    assert not data or data.endswith(b"\n"), "the last line is incomplete"
    return [json.loads(line) for line in data.splitlines()]


def popen(args, cwd=None):
    env = dict(os.environ, LIFTCAM_PROGRESS_SECONDS="1000")
    return subprocess.Popen(args, cwd=cwd, env=env, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE)


OVERLAY_PROBE = """
import sys, tracemalloc
import numpy as np
from PIL import Image
from liftcam.engine.maps import overlay, place_map
peaks = []
for w, h in ((1000, 1000), (3000, 2000)):
    img = Image.fromarray(np.zeros((h, w, 3), np.uint8))
    m = place_map(np.random.default_rng(0).random((8, 8)).astype(np.float32), img.size,
                  {"resize": [64, 64]})
    tracemalloc.start()
    overlay(img, m)
    peaks.append(tracemalloc.get_traced_memory()[1])
    tracemalloc.stop()
print((peaks[1] - peaks[0]) / (6e6 - 1e6))   # bytes per extra pixel
"""
