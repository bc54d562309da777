"""The HTTP API over an :class:`~liftcam.engine.explainer.Explainer` (Starlette, ASGI).

Routes: ``GET /`` (the page), ``GET /healthz``, ``GET /v1/info``, ``POST /v1/explain``,
``GET /metrics``. Errors are JSON ``{"error": ..., "status": ...}`` and never a traceback:
undecodable image 400, over ``max_bytes`` or ``max_pixels`` 413, unsupported content type
415, bad method/target/parameter 422, anything unexpected 500 (logged here, not sent).
"""
from __future__ import annotations

import asyncio
import base64
import contextlib
import io
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse, JSONResponse, Response
from starlette.routing import Route

from liftcam.engine import methods as _methods
from liftcam.engine.errors import ImageTooLargeError, InputError
from liftcam.engine.images import DEFAULT_MAX_PIXELS, decode_image, preprocess
from liftcam.engine.maps import overlay, place_map
from liftcam.engine.pipeline import resolve_methods, resolve_target
from liftcam.serve.batcher import Batcher
from liftcam.serve.metrics import CONTENT_TYPE, Metrics

log = logging.getLogger("liftcam.serve")
PAGE = Path(__file__).with_name("page.html")
ROUTES = ("/", "/healthz", "/v1/info", "/v1/explain", "/metrics")
FORMATS = ("json", "overlay")
#: beyond max_bytes, an upload is read and dropped up to this many more bytes before the 413
#: (so the client sees the answer instead of a reset connection), then the connection closes
DRAIN_BYTES = 64 << 20


class HttpError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status, self.message = status, message


def error_response(status: int, message: str) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(message).split()), "status": status}, status)


@dataclass
class Limits:
    max_batch: int = 16
    max_wait_ms: float = 5.0
    max_bytes: int = 20_000_000
    max_pixels: int = DEFAULT_MAX_PIXELS


# ----------------------------------------------------------------------------- request parts

def _query(request: Request, bundle) -> dict:
    """method, target, top_k, format, alpha and the two JSON extras, validated (422)."""
    q = request.query_params
    try:
        names = resolve_methods(q.get("method", "liftcam"), bundle)
        if len(names) != 1:
            raise InputError("one method per request (the page asks once per method); got "
                             f"{q.get('method')!r}")
        target = resolve_target(q.get("target") or None, bundle)
    except InputError as exc:
        raise HttpError(422, str(exc)) from None
    try:
        top_k = int(q.get("top_k", 5))
        alpha = float(q.get("alpha", 0.5))
    except ValueError:
        raise HttpError(422, "top_k must be an int >= 1 and alpha a number in [0, 1]") from None
    if top_k < 1 or not 0.0 <= alpha <= 1.0:
        raise HttpError(422, "top_k must be an int >= 1 and alpha a number in [0, 1]")
    fmt = q.get("format", "json")
    if fmt not in FORMATS:
        raise HttpError(422, f"format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    flag = {"1", "true", "yes"}
    return {"method": names[0], "target": target, "top_k": min(top_k, bundle.num_classes),
            "format": fmt, "alpha": alpha, "overlay": q.get("overlay", "").lower() in flag,
            "raw": q.get("raw", "").lower() in flag}


async def _body(request: Request, max_bytes: int) -> bytes:
    """The request body, refused (413) beyond ``max_bytes``: by Content-Length or as read."""
    declared = request.headers.get("content-length")
    over = declared is not None and declared.isdigit() and int(declared) > max_bytes
    chunks, n = [], 0
    async for chunk in request.stream():
        n += len(chunk)
        if n > max_bytes:
            over = True
        if over:
            if n > max_bytes + DRAIN_BYTES:
                break
            continue
        chunks.append(chunk)
    if over:
        raise HttpError(413, f"the upload is over the limit of {max_bytes:,} bytes "
                             "(--max-bytes)")
    return b"".join(chunks)


async def _image_bytes(request: Request, max_bytes: int) -> bytes:
    """The image: the raw body (image/*, application/octet-stream) or multipart field image."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = not ctype or ctype.startswith("image/") or ctype == "application/octet-stream"
    if not raw and ctype != "multipart/form-data":
        raise HttpError(415, f"send the image as the body with Content-Type image/* or as the "
                             f"multipart/form-data field 'image', not {ctype!r}")
    data = await _body(request, max_bytes)
    if raw:
        return data
    replay = {"done": False}

    async def receive():
        if replay["done"]:
            return {"type": "http.disconnect"}
        replay["done"] = True
        return {"type": "http.request", "body": data, "more_body": False}

    try:
        form = await Request(request.scope, receive).form(max_files=4, max_fields=16)
    except Exception as exc:                                   # noqa: BLE001 (multipart errors)
        raise HttpError(400, f"malformed multipart body: {exc}") from None
    field = form.get("image")
    if field is None:
        raise HttpError(400, "the multipart body has no field 'image'")
    return await field.read() if hasattr(field, "read") else str(field).encode()


def _png(img) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


# ----------------------------------------------------------------------------- the app

def create_app(explainer, limits: Limits = None, warm: bool = True) -> Starlette:
    """The Starlette app serving ``explainer``; the batcher starts with the app's lifespan
    (after a warm-up call per graph when ``warm``) and stops after the last request."""
    from liftcam.engine.explainer import Explainer

    if not isinstance(explainer, Explainer):
        explainer = Explainer(explainer)
    limits = limits or Limits()
    bundle = explainer.bundle
    pre = bundle.manifest["preprocessing"]
    labels = bundle.labels or [str(i) for i in range(bundle.num_classes)]
    state = {"ready": False}
    metrics = Metrics(limits.max_batch)
    batcher = Batcher(explainer, limits.max_batch, limits.max_wait_ms, on_batch=metrics.batch)
    metrics.queue_depth = lambda: batcher.depth
    H, W = bundle.image_hw

    def warm_up():
        x = np.zeros((1, *bundle.input_shape), np.float32)
        for m in ("liftcam", "gradcam"):          # the deeplift and the gradient graphs
            if m in _methods.available(bundle):
                explainer.explain(x, method=m, progress=False)
        explainer.head(explainer.features(x))

    @contextlib.asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        if warm:
            await batcher.run_in_engine(warm_up)
        state["ready"] = True
        log.info("liftcam serve: %s ready (max batch %d, wait %g ms)", bundle.path.name,
                 limits.max_batch, limits.max_wait_ms)
        try:
            yield
        finally:
            state["ready"] = False
            await batcher.stop()

    async def page(request):
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def healthz(request):
        if not state["ready"]:
            return JSONResponse({"status": "unavailable"}, 503)
        return JSONResponse({"status": "ok"})

    info = {"name": bundle.path.name.removesuffix(".liftcam"), "num_classes": bundle.num_classes,
            "labels": labels, "input_size": [H, W], "input_shape": list(bundle.input_shape),
            "methods": _methods.available(bundle), "default_method": "liftcam",
            "target_layer": bundle.manifest["target_layer"].get("name"),
            "activation_shape": list(bundle.activation_shape), "preprocessing": pre,
            "limits": vars(limits)}

    async def v1_info(request):
        return JSONResponse(info)

    async def prometheus(request):
        return Response(metrics.render(), media_type=CONTENT_TYPE)

    async def explain(request):
        t0 = time.perf_counter()
        try:
            q = _query(request, bundle)
            data = await _image_bytes(request, limits.max_bytes)
            img, x = await run_in_threadpool(_decode, data)
            row = await batcher.submit(x, q["target"], q["method"])
            return await run_in_threadpool(_answer, q, img, row, t0)
        except HttpError as exc:
            return error_response(exc.status, exc.message)
        except InputError as exc:     # the engine refused the request's parameters
            return error_response(422, str(exc))
        except Exception:             # noqa: BLE001 (logged with its traceback, never sent)
            log.exception("liftcam serve: unexpected error in /v1/explain")
            return error_response(500, "internal error (logged by the server)")

    def _decode(data):
        try:
            img = decode_image(data, name="the uploaded image", max_pixels=limits.max_pixels)
            return img, preprocess([img], pre, bundle.layout)
        except ImageTooLargeError as exc:
            raise HttpError(413, str(exc)) from None
        except InputError as exc:
            raise HttpError(400, str(exc)) from None

    def _answer(q, img, row, t0):
        cam = place_map(row.map, img.size, pre)
        if q["format"] == "overlay":
            return Response(_png(overlay(img, cam, alpha=q["alpha"])), media_type="image/png")
        order = np.argsort(-row.probabilities, kind="stable")[:q["top_k"]]
        gray = Image.fromarray(np.rint(cam * 255).astype(np.uint8), mode="L")
        out = {"method": row.method, "predicted": int(np.argmax(row.probabilities)),
               "target": row.target, "target_label": labels[row.target],
               "probability": float(row.probabilities[row.target]),
               "top_k": [{"class": int(c), "label": labels[c],
                          "probability": float(row.probabilities[c])} for c in order],
               "map_png": _b64(_png(gray)), "width": img.width, "height": img.height,
               "batch_size": row.batch_size}
        if q["overlay"]:
            out["overlay_png"] = _b64(_png(overlay(img, cam, alpha=q["alpha"])))
        if q["raw"]:
            out["map_f32"] = _b64(cam.astype("<f4").tobytes())
        out["timing_ms"] = round((time.perf_counter() - t0) * 1000.0, 2)
        return JSONResponse(out)

    async def http_error(request, exc):
        return error_response(exc.status_code, exc.detail)

    async def server_error(request, exc):
        log.error("liftcam serve: unexpected %s: %s", type(exc).__name__, exc)
        return error_response(500, "internal error (logged by the server)")

    app = Starlette(routes=[Route("/", page), Route("/healthz", healthz),
                            Route("/v1/info", v1_info), Route("/metrics", prometheus),
                            Route("/v1/explain", explain, methods=["POST"])],
                    exception_handlers={HTTPException: http_error, Exception: server_error},
                    lifespan=lifespan)
    return RequestMetrics(app, metrics)


class RequestMetrics:
    """ASGI middleware: every HTTP request counted by route and status, with its latency."""

    def __init__(self, app, metrics: Metrics):
        self.app, self.metrics = app, metrics

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        route = scope.get("path", "") if scope.get("path") in ROUTES else "other"
        status = {"code": 500}
        t0 = time.perf_counter()

        async def send_and_note(message):
            if message["type"] == "http.response.start":
                status["code"] = message["status"]
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except asyncio.CancelledError:
            status["code"] = 499                      # the client went away
            raise
        finally:
            self.metrics.request(route, status["code"], time.perf_counter() - t0)
