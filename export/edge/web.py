"""``liftcam edge --web``: a static page that explains an image in the browser.

``DIR/web/`` holds ``index.html`` + ``main.js`` (from ``export/edge/page/``), the bundle's
``explain_raw.onnx`` with its weights inlined, ``model.json`` (name, labels, input) and the
onnxruntime-web files its WASM backend needs (:data:`DIST_FILES`), so the folder works offline
from any static file server (``python -m http.server -d DIR/web``). The page draws the picked
image on a canvas, hands its RGB pixels to the graph and shows the overlay.

onnxruntime-web comes from npm at build time: ``$LIFTCAM_ORT_WEB_DIST`` (a ``dist`` folder),
else ``tests/web/node_modules`` of a source checkout, else an ``npm install`` of
:data:`ORT_WEB_VERSION` into ``~/.cache/liftcam/`` (needs npm and its registry once).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import onnx

from liftcam.contract import EXPLAIN, EXPLAIN_RAW
from liftcam.engine.errors import ExportError

ORT_WEB_VERSION = "1.30.0"           # as tests/web/package.json
DIST_FILES = ("ort.wasm.min.js", "ort-wasm-simd-threaded.mjs", "ort-wasm-simd-threaded.wasm")
PAGE = Path(__file__).parent / "page"
MODEL = "explain_raw.onnx"


def _complete(dist: Path) -> bool:
    return all((dist / f).is_file() for f in DIST_FILES)


def ort_web_dist() -> Path:
    """A folder holding onnxruntime-web's :data:`DIST_FILES` (installed with npm if needed)."""
    env = os.environ.get("LIFTCAM_ORT_WEB_DIST")
    if env:
        if not _complete(Path(env)):
            raise ExportError(f"LIFTCAM_ORT_WEB_DIST={env} lacks {', '.join(DIST_FILES)}")
        return Path(env)
    repo = Path(__file__).resolve().parents[2] / "tests" / "web"
    cache = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "liftcam" \
        / f"onnxruntime-web-{ORT_WEB_VERSION}"
    for root in (repo, cache):
        dist = root / "node_modules" / "onnxruntime-web" / "dist"
        if _complete(dist) and _version(dist) == ORT_WEB_VERSION:
            return dist
    if shutil.which("npm") is None:
        raise ExportError("--web needs onnxruntime-web from npm, and npm is not installed; "
                          "install Node.js/npm or set LIFTCAM_ORT_WEB_DIST to its dist folder")
    cache.mkdir(parents=True, exist_ok=True)
    r = subprocess.run(["npm", "install", "--prefix", str(cache), "--no-audit", "--no-fund",
                        "--silent", f"onnxruntime-web@{ORT_WEB_VERSION}"],
                       capture_output=True, text=True, timeout=600)
    dist = cache / "node_modules" / "onnxruntime-web" / "dist"
    if r.returncode != 0 or not _complete(dist):
        raise ExportError(f"npm install onnxruntime-web@{ORT_WEB_VERSION} failed: "
                          + " ".join((r.stderr or r.stdout).split())[-300:])
    return dist


def _version(dist: Path):
    try:
        return json.loads((dist.parent / "package.json").read_text())["version"]
    except (OSError, ValueError, KeyError):
        return None


def _raw_model(bundle) -> onnx.ModelProto:
    if EXPLAIN_RAW in bundle.manifest["graphs"]:
        return onnx.load(str(bundle.graph(EXPLAIN_RAW)))           # weights inlined
    from liftcam.export.raw import build_raw_model

    return build_raw_model(onnx.load(str(bundle.graph(EXPLAIN))),
                           bundle.manifest["preprocessing"], bundle.input_shape,
                           layout=bundle.layout)


def build_page(bundle, web_dir) -> dict:
    """Write the page for ``bundle`` (a loaded Bundle) into ``web_dir``; returns its record
    for the report."""
    dist = ort_web_dist()
    web = Path(web_dir)
    web.mkdir(parents=True, exist_ok=True)
    for f in ("index.html", "main.js"):
        shutil.copy(PAGE / f, web / f)
    for f in DIST_FILES:
        shutil.copy(dist / f, web / f)
    onnx.save(_raw_model(bundle), str(web / MODEL))
    m = bundle.manifest
    H, W = bundle.image_hw
    (web / "model.json").write_text(json.dumps({
        "name": bundle.path.name, "labels": m.get("labels"), "num_classes": m["num_classes"],
        "input": f"{W}x{H} RGB, any image size"}, indent=1) + "\n")
    return {"page": "web/index.html", "model": f"web/{MODEL}",
            "onnxruntime_web": _version(dist) or ORT_WEB_VERSION,
            "bytes": sum(p.stat().st_size for p in web.iterdir())}
