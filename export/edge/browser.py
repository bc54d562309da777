"""Run the ``liftcam edge --web`` page in headless Chromium and read back its result.

Serves the page folder on 127.0.0.1 (a free port, Python's http.server in a thread), drives
Chromium (Debian's ``/usr/bin/chromium``; Playwright's own browsers are never downloaded) with
the Python ``playwright`` package, picks ``image`` in the page's file input and returns
``window.liftcamResult`` (``map`` as a flat list, ``dims``, ``logits``, ``top``, ``ms``).
Used by the tests and by ``benchmarks/edge.py`` (which keeps a screenshot).
"""
from __future__ import annotations

import functools
import shutil
import threading
from contextlib import contextmanager
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def chromium_path():
    """Debian's chromium, or None."""
    return shutil.which("chromium") or shutil.which("chromium-browser")


class _Quiet(SimpleHTTPRequestHandler):
    extensions_map = {**SimpleHTTPRequestHandler.extensions_map,
                      ".mjs": "text/javascript", ".js": "text/javascript",
                      ".wasm": "application/wasm", ".onnx": "application/octet-stream"}

    def log_message(self, *args):
        pass


@contextmanager
def serve(folder):
    """``http://127.0.0.1:PORT/`` serving ``folder`` while the block runs."""
    handler = functools.partial(_Quiet, directory=str(folder))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    t = threading.Thread(target=httpd.serve_forever, daemon=True)
    t.start()
    try:
        yield f"http://127.0.0.1:{httpd.server_address[1]}/"
    finally:
        httpd.shutdown()
        httpd.server_close()


def _wait(page, states: str, timeout_s: float, log: list):
    from playwright.sync_api import TimeoutError as PlaywrightTimeout

    try:
        page.wait_for_function(f"{states}.includes(document.body.dataset.state)",
                               timeout=timeout_s * 1000)
    except PlaywrightTimeout:
        raise RuntimeError(f"the page did not reach {states} in {timeout_s:g} s; "
                           f"console: {log[-5:]}") from None


def run_page(web_dir, image, screenshot=None, timeout_s: float = 90.0, chromium=None) -> dict:
    """Load the page, explain ``image`` in it; returns ``window.liftcamResult``. Raises
    RuntimeError with the page's error (or the console log) when it fails."""
    from playwright.sync_api import sync_playwright

    exe = chromium or chromium_path()
    if exe is None:
        raise RuntimeError("chromium is not installed (apt-get install -y chromium)")
    log = []
    with serve(web_dir) as url, sync_playwright() as p:
        browser = p.chromium.launch(executable_path=exe, headless=True, args=CHROMIUM_ARGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 620})
            page.on("console", lambda m: log.append(f"{m.type}: {m.text}"))
            page.on("pageerror", lambda e: log.append(f"pageerror: {e}"))
            if not (Path(web_dir) / "index.html").is_file():
                raise RuntimeError(f"{web_dir} has no index.html")
            page.goto(url + "index.html")
            _wait(page, "['ready', 'error']", timeout_s, log)
            page.set_input_files("#file", str(Path(image)))
            _wait(page, "['done', 'error']", timeout_s, log)
            err = page.evaluate("window.liftcamError || null")
            if err:
                raise RuntimeError(f"the page failed: {err}; console: {log[-5:]}")
            result = page.evaluate("window.liftcamResult")
            if screenshot:
                Path(screenshot).parent.mkdir(parents=True, exist_ok=True)
                page.screenshot(path=str(screenshot), full_page=True)
        finally:
            browser.close()
    return result
