"""``liftcam edge --web``: the page runs explain_raw.onnx in headless Chromium (Debian's
package, driven by Playwright) with onnxruntime-web's WASM backend, and its map equals
Python's: explain_raw.onnx in onnxruntime to 1e-4, the Python pipeline (Explainer +
place_map) within tests/test_raw.py's tolerance."""
from __future__ import annotations

import json
import shutil
import subprocess

import numpy as np
import onnxruntime as ort
import pytest
from PIL import Image

pytest.importorskip("onnx")

from liftcam.cli import main  # noqa: E402
from liftcam.contract import LOGITS, MAP, PIXELS, TARGET  # noqa: E402
from liftcam.engine import DEMO_DIR  # noqa: E402
from liftcam.engine.bundle import load_bundle  # noqa: E402
from liftcam.engine.explainer import Explainer  # noqa: E402
from liftcam.engine.images import load_image, preprocess  # noqa: E402
from liftcam.engine.maps import place_map  # noqa: E402
from liftcam.export.edge import browser, web  # noqa: E402

VGG = DEMO_DIR / "vgg_demo.liftcam"
WEB_TESTS = DEMO_DIR.parent.parent / "tests" / "web"


def _need_browser():
    if browser.chromium_path() is None:
        pytest.skip("chromium is not installed (.ci/run installs Debian's chromium)")
    pytest.importorskip("playwright", reason="the playwright package is not installed "
                                             "(pip install -e '.[test]')")


def _need_ort_web():
    """onnxruntime-web from tests/web's npm install (as tests/test_raw.py does)."""
    if (WEB_TESTS / "node_modules" / "onnxruntime-web").is_dir():
        return
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: no onnxruntime-web for the page")
    r = subprocess.run(["npm", "install", "--no-audit", "--no-fund", "--silent"],
                       cwd=WEB_TESTS, capture_output=True, text=True, timeout=300)
    if r.returncode != 0:
        pytest.skip(f"npm install onnxruntime-web failed: {r.stderr[-300:]}")


def test_pinned_version_matches_the_node_tests():
    pkg = json.loads((WEB_TESTS / "package.json").read_text())
    assert pkg["dependencies"]["onnxruntime-web"] == web.ORT_WEB_VERSION


@pytest.fixture(scope="module")
def page_dir(tmp_path_factory):
    _need_browser()
    _need_ort_web()
    out = tmp_path_factory.mktemp("edge") / "out"
    assert main(["edge", str(VGG), "-o", str(out), "--web", "--repeats", "1"]) == 0
    return out / "web"


def test_page_files_are_self_contained(page_dir):
    names = {p.name for p in page_dir.iterdir()}
    assert {"index.html", "main.js", "model.json", "explain_raw.onnx"} | set(web.DIST_FILES) \
        <= names
    html = (page_dir / "index.html").read_text() + (page_dir / "main.js").read_text()
    assert "http://" not in html and "https://" not in html       # works offline
    rep = json.loads((page_dir.parent / "report.json").read_text())
    assert rep["web"]["page"] == "web/index.html"


@pytest.mark.parametrize("size", [None, (97, 203)])
def test_browser_map_equals_python(page_dir, tmp_path, size):
    img_path = DEMO_DIR / "star.png"
    if size is not None:                                   # a non-square, resized photo
        img_path = tmp_path / "star_resized.png"
        Image.open(DEMO_DIR / "star.png").convert("RGB").resize(size, Image.BILINEAR) \
            .save(img_path)
    got = browser.run_page(page_dir, img_path, timeout_s=60)
    img = load_image(img_path)
    h, w = img.size[1], img.size[0]
    assert got["dims"] == [1, h, w]
    cam = np.asarray(got["map"], np.float32).reshape(h, w)
    s = ort.InferenceSession(str(page_dir / "explain_raw.onnx"))
    logits, want = s.run([LOGITS, MAP], {PIXELS: np.asarray(img), TARGET: np.array([-1])})
    assert got["top"] == int(np.argmax(logits[0]))
    assert np.abs(cam - want[0]).max() < 1e-4
    pre = load_bundle(VGG).manifest["preprocessing"]
    e = Explainer(VGG).explain(preprocess([img], pre), targets=got["top"], method="liftcam")
    assert np.abs(cam - place_map(e.maps[0], img.size, pre)).max() <= 0.03
