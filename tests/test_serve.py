"""``liftcam serve``: a real server process on a free loopback port, a real HTTP client.

Every route, every error code (each followed by a request that proves the server still
serves), concurrent requests equal to single ones with the batch-size histogram showing a
batch > 1, SIGTERM draining, and the page in headless Chromium (skipped, with the reason, when
/usr/bin/chromium or playwright is missing; .ci/run installs both).
"""
from __future__ import annotations

import base64
import io
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import threading
import time
import zlib
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest

httpx = pytest.importorskip("httpx", reason="the server tests need the 'test' extra (httpx)")
pytest.importorskip("starlette", reason="liftcam serve needs the 'serve' extra")
pytest.importorskip("uvicorn", reason="liftcam serve needs the 'serve' extra")

from PIL import Image  # noqa: E402

from liftcam.engine import DEMO_DIR  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
VGG = DEMO_DIR / "vgg_demo.liftcam"
IMAGES = sorted(DEMO_DIR.glob("*.png"))
STAR = (DEMO_DIR / "star.png").read_bytes()
CHROMIUM = Path(os.environ.get("LIFTCAM_CHROMIUM", "/usr/bin/chromium"))
MAX_BYTES = 200_000
PNG = {"Content-Type": "image/png"}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(tmp_path, *args, bundle=VGG):
    """``liftcam serve`` in its own process on 127.0.0.1; returns (process, base URL) once
    /healthz answers ok (30 s at most)."""
    port = free_port()
    log = open(tmp_path / f"serve-{port}.log", "wb")
    proc = subprocess.Popen([sys.executable, "-m", "liftcam.cli", "serve", str(bundle),
                             "--host", "127.0.0.1", "--port", str(port), "--log-level",
                             "warning", *args], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError((tmp_path / f"serve-{port}.log").read_text())
        try:
            if httpx.get(url + "/healthz", timeout=2).json() == {"status": "ok"}:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise AssertionError("the server did not become healthy in 30 s")


def stop(proc):
    if proc.poll() is None:
        proc.kill()
        proc.wait(10)


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    proc, url = start_server(tmp_path_factory.mktemp("serve"), "--max-bytes", str(MAX_BYTES),
                             "--max-batch", "8", "--max-wait-ms", "50")
    yield url
    stop(proc)


def explain(url, data=STAR, client=httpx, headers=PNG, **params):
    return client.post(url + "/v1/explain", content=data, headers=headers, params=params,
                       timeout=60)


def assert_serves(url):
    r = explain(url)
    assert r.status_code == 200 and r.json()["target_label"] == "star", r.text


def decode_png(b64: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(b64)))


def raw_map(body: dict) -> np.ndarray:
    a = np.frombuffer(base64.b64decode(body["map_f32"]), "<f4")
    return a.reshape(body["height"], body["width"])


# ----------------------------------------------------------------------------- routes

def test_healthz_info_page_and_metrics(server):
    assert httpx.get(server + "/healthz").json() == {"status": "ok"}
    info = httpx.get(server + "/v1/info").json()
    assert info["name"] == "vgg_demo" and info["input_size"] == [64, 64]
    assert info["labels"][3] == "star" and info["num_classes"] == 8
    assert "liftcam" in info["methods"] and "cam" not in info["methods"]   # non-linear head
    assert info["target_layer"] == "features.relu4"
    page = httpx.get(server + "/")
    assert page.status_code == 200 and "text/html" in page.headers["content-type"]
    assert "/v1/explain" in page.text and 'id="drop"' in page.text
    m = httpx.get(server + "/metrics")
    assert m.headers["content-type"].startswith("text/plain")
    for name in ("liftcam_requests_total", "liftcam_request_duration_seconds_bucket",
                 "liftcam_batch_size_bucket", "liftcam_queue_depth"):
        assert f"# TYPE {name.removesuffix('_bucket')} " in m.text, name
    assert re.search(r'liftcam_requests_total\{route="/healthz",status="200"\} [1-9]', m.text)
    assert httpx.get(server + "/nope").status_code == 404


def test_explain_json_raw_body_and_multipart(server):
    img = Image.open(io.BytesIO(STAR)).convert("RGB").resize((96, 48))
    buf = io.BytesIO()
    img.save(buf, format="JPEG", quality=95)
    r = explain(server, buf.getvalue(), headers={"Content-Type": "image/jpeg"}, top_k=3, raw=1)
    assert r.status_code == 200, r.text
    body = r.json()
    assert {"method", "predicted", "target", "target_label", "probability", "top_k", "map_png",
            "width", "height", "timing_ms"} <= set(body)
    assert body["method"] == "liftcam" and body["target"] == body["predicted"]
    assert (body["width"], body["height"]) == (96, 48) and len(body["top_k"]) == 3
    assert body["top_k"][0]["class"] == body["predicted"]
    assert body["probability"] == body["top_k"][0]["probability"]
    gray = decode_png(body["map_png"])
    assert gray.mode == "L" and gray.size == (96, 48)            # the image's original size
    assert np.abs(np.asarray(gray) / 255.0 - raw_map(body)).max() <= 0.5 / 255 + 1e-6
    multi = httpx.post(server + "/v1/explain", params={"top_k": 3, "raw": 1}, timeout=60,
                       files={"image": ("x.jpg", buf.getvalue(), "image/jpeg")}).json()
    assert multi["top_k"] == body["top_k"] and multi["map_png"] == body["map_png"]
    ov = explain(server, format="overlay", method="gradcam", target="ring")
    assert ov.status_code == 200 and ov.headers["content-type"] == "image/png"
    o = Image.open(io.BytesIO(ov.content))
    assert o.mode == "RGB" and o.size == (64, 64)
    labelled = explain(server, target="ring", method="gradcam").json()
    assert labelled["target"] == 5 and labelled["target_label"] == "ring"
    assert labelled["predicted"] == 3


def bomb_png(w=20000, h=20000) -> bytes:
    """A 60-byte PNG whose header declares w x h pixels."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + \
            struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", w, h, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b""))


@pytest.mark.parametrize("case, status", [
    ("garbage", 400), ("empty", 400), ("truncated", 400), ("too_many_bytes", 413),
    ("bomb", 413), ("bogus_method", 422), ("target_99", 422), ("bad_label", 422),
    ("top_k_0", 422), ("bad_format", 422), ("method_all", 422), ("cam_on_vgg", 422),
    ("no_image_field", 400), ("json_body", 415)])
def test_bad_input_gets_its_code_and_the_server_goes_on(server, case, status):
    requests = {
        "garbage": lambda: explain(server, b"\x00garbage" * 50),
        "empty": lambda: explain(server, b""),
        "truncated": lambda: explain(server, STAR[:len(STAR) // 2]),
        "too_many_bytes": lambda: explain(server, b"\x89PNG" + b"\0" * MAX_BYTES),
        "bomb": lambda: explain(server, bomb_png()),
        "bogus_method": lambda: explain(server, method="bogus"),
        "target_99": lambda: explain(server, target="99"),
        "bad_label": lambda: explain(server, target="stra"),
        "top_k_0": lambda: explain(server, top_k=0),
        "bad_format": lambda: explain(server, format="gif"),
        "method_all": lambda: explain(server, method="all"),
        "cam_on_vgg": lambda: explain(server, method="cam"),
        "no_image_field": lambda: httpx.post(server + "/v1/explain",
                                             files={"picture": ("a.png", STAR, "image/png")}),
        "json_body": lambda: explain(server, b"{}", headers={"Content-Type": "application/json"}),
    }
    r = requests[case]()
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json"
    body = r.json()
    assert body["status"] == status and body["error"] and "Traceback" not in r.text
    if case == "bomb":
        assert "20000x20000" in body["error"] or "too large" in body["error"]
    if case == "bad_label":
        assert "star" in body["error"]                                  # did you mean
    assert_serves(server)


# ----------------------------------------------------------------------------- batching

def test_concurrent_requests_equal_single_ones_and_are_batched(server):
    methods = ["liftcam", "gradcam", "layercam", "liftcam", "ablationcam", "liftcam"]
    targets = [None, None, "3", None, "ring", "1", None, None]
    cases = [(IMAGES[i % len(IMAGES)].read_bytes(), methods[i % len(methods)],
              targets[i % len(targets)]) for i in range(16)]

    def call(case, client=httpx):
        data, method, target = case
        params = {"method": method, "raw": 1, "top_k": 4}
        if target is not None:
            params["target"] = target
        r = explain(server, data, client=client, **params)
        assert r.status_code == 200, r.text
        return r.json()

    single = [call(c) for c in cases]
    assert all(s["batch_size"] == 1 for s in single)
    gate = threading.Barrier(len(cases), timeout=30)

    def together(case):
        with httpx.Client(timeout=60) as client:
            client.get(server + "/healthz")          # connect first, then start together
            gate.wait()
            return call(case, client)

    with ThreadPoolExecutor(len(cases)) as pool:
        batched = list(pool.map(together, cases))
    assert max(b["batch_size"] for b in batched) > 1
    for s, b in zip(single, batched):
        for key in ("method", "predicted", "target", "target_label", "width"):
            assert s[key] == b[key], key
        # same classes in the same order; probabilities equal up to the float rounding of a
        # batched matrix product
        assert [k["class"] for k in s["top_k"]] == [k["class"] for k in b["top_k"]]
        np.testing.assert_allclose([k["probability"] for k in b["top_k"]],
                                   [k["probability"] for k in s["top_k"]], rtol=0, atol=1e-6)
        np.testing.assert_allclose(raw_map(b), raw_map(s), rtol=0, atol=1e-6)
    text = httpx.get(server + "/metrics").text
    le1 = int(re.search(r'liftcam_batch_size_bucket\{le="1"\} (\d+)', text).group(1))
    count = int(re.search(r"liftcam_batch_size_count (\d+)", text).group(1))
    assert count > le1, text                      # some engine call held more than one image


# ----------------------------------------------------------------------------- shutdown

def test_sigterm_stops_accepting_finishes_in_flight_and_exits_0(tmp_path):
    proc, url = start_server(tmp_path, "--max-batch", "4")
    try:
        # shap runs one image per engine call (its seed): 16 of them keep the engine busy
        slow = [(IMAGES[i % len(IMAGES)].read_bytes(), "shap") for i in range(16)]

        def call(case):
            data, method = case
            try:
                return explain(url, data, method=method).status_code
            except httpx.TransportError as exc:
                return repr(exc)

        with ThreadPoolExecutor(len(slow)) as pool:
            futures = [pool.submit(call, c) for c in slow]
            deadline = time.monotonic() + 20
            while time.monotonic() < deadline:           # wait until the server holds them
                depth = re.search(r"liftcam_queue_depth (\d+)",
                                  httpx.get(url + "/metrics").text).group(1)
                if int(depth) + sum(f.done() for f in futures) >= len(slow):   # all accepted
                    break
                time.sleep(0.02)
            proc.send_signal(signal.SIGTERM)
            refused, deadline = None, time.monotonic() + 5
            while refused is None and time.monotonic() < deadline:
                try:
                    httpx.get(url + "/healthz", timeout=1)
                    time.sleep(0.05)
                except httpx.ConnectError as exc:
                    refused = exc
            assert refused is not None, "new connections were still accepted after SIGTERM"
            assert not all(f.done() for f in futures), "the requests were not slow enough"
            codes = [f.result(timeout=60) for f in futures]
        assert codes == [200] * len(slow), codes
        assert proc.wait(timeout=30) == 0
    finally:
        stop(proc)


def test_serve_command_errors_are_one_line(tmp_path):
    r = subprocess.run([sys.executable, "-m", "liftcam.cli", "serve", str(tmp_path / "none"),
                        "--port", str(free_port())], capture_output=True, text=True, timeout=60)
    assert r.returncode == 1 and r.stderr.startswith("liftcam: error:"), r.stderr
    assert "Traceback" not in r.stderr


def test_runtime_does_not_import_the_server():
    code = ("import sys, liftcam, liftcam.engine.pipeline, liftcam.engine.images; "
            "e = liftcam.Explainer; bad = [m for m in sys.modules if m.startswith("
            "('starlette', 'uvicorn', 'liftcam.serve', 'multipart'))]; assert not bad, bad")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert r.returncode == 0, r.stderr


# ----------------------------------------------------------------------------- the page

def test_page_in_headless_chromium_shows_every_overlay(server, tmp_path):
    if not CHROMIUM.exists():
        pytest.skip(f"{CHROMIUM} is missing: apt-get install -y chromium (.ci/run does)")
    sync_api = pytest.importorskip("playwright.sync_api",
                                   reason="the browser test needs playwright (the test extra)")
    # the committed screenshot is refreshed only on request (LIFTCAM_UPDATE_SCREENSHOTS=1)
    shot = REPO / "benchmarks" / "results" / "serve" / "page.png" \
        if os.environ.get("LIFTCAM_UPDATE_SCREENSHOTS") else tmp_path / "page.png"
    methods = httpx.get(server + "/v1/info").json()["methods"]
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=[
            "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
            "--disable-component-update", "--disable-sync", "--no-first-run"])
        try:
            page = browser.new_page(viewport={"width": 1240, "height": 820})
            page.set_default_timeout(30_000)
            page.goto(server + "/")
            page.wait_for_selector("body[data-ready='1']")
            page.select_option("#method", "all")
            page.set_input_files("#file", str(DEMO_DIR / "star.png"))
            page.wait_for_selector("body[data-state]")
            assert page.get_attribute("body", "data-state") == "done", \
                page.inner_text("#status")
            rendered = page.eval_on_selector_all(
                "img.overlay", "els => els.map(e => [e.complete, e.naturalWidth, e.alt])")
            assert len(rendered) == len(methods), rendered
            assert all(ok and w == 64 for ok, w, _ in rendered), rendered
            tops = page.eval_on_selector_all(".card table", "ts => ts.map(t => t.rows.length)")
            assert tops == [5] * len(methods)
            assert "star" in page.inner_text(".card[data-method='liftcam'] table")
            shot.parent.mkdir(parents=True, exist_ok=True)
            page.screenshot(path=str(shot), full_page=True)
        finally:
            browser.close()
    assert shot.stat().st_size > 10_000
