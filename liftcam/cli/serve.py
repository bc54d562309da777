"""``liftcam serve BUNDLE``: the HTTP API and page of :mod:`liftcam.serve` under uvicorn.

SIGTERM (and Ctrl-C) stop it gracefully: the listening socket closes at once (new connections
are refused), requests in flight finish, then the process exits (0 after SIGTERM).
"""
from __future__ import annotations

import signal

from liftcam.cli.common import EXIT_OK, CliError, needs_extra, positive_arg, say

#: seconds the in-flight requests get to finish after SIGTERM before they are cut
DRAIN_SECONDS = 60


def add_parser(sub):
    s = sub.add_parser("serve", help="serve a bundle over HTTP (needs the 'serve' extra)",
                       description="Serve a bundle over HTTP: POST /v1/explain, GET /v1/info, "
                                   "/healthz, /metrics, and a page at /. Concurrent requests "
                                   "are batched into one engine call. Needs pip install "
                                   "'liftcam[serve]'.")
    s.add_argument("bundle", metavar="BUNDLE", help="a bundle directory (*.liftcam)")
    s.add_argument("--host", default="127.0.0.1", help="address to bind (default: %(default)s)")
    s.add_argument("--port", type=int, default=8000, help="port (default: %(default)s)")
    s.add_argument("--max-batch", type=positive_arg, default=16, metavar="N",
                   help="most images per engine call; 1 turns batching off "
                        "(default: %(default)s)")
    s.add_argument("--max-wait-ms", type=float, default=5.0, metavar="MS",
                   help="how long a batch waits for more requests (default: %(default)s)")
    s.add_argument("--max-bytes", type=positive_arg, default=20_000_000, metavar="N",
                   help="largest upload in bytes; larger: 413 (default: %(default)s)")
    s.add_argument("--max-pixels", type=positive_arg, default=None, metavar="N",
                   help="largest image in pixels, read from its header; larger: 413 "
                        "(default: 40,000,000)")
    s.add_argument("--providers", nargs="+", default=None, metavar="P",
                   help="ONNX Runtime execution providers, e.g. cuda cpu (default: cpu)")
    s.add_argument("--threads", type=positive_arg, default=None, metavar="N",
                   help="intra-op threads per session (default: ONNX Runtime's)")
    s.add_argument("--log-level", default="info",
                   choices=("critical", "error", "warning", "info", "debug"),
                   help="uvicorn's log level; 'warning' hides the access log "
                        "(default: %(default)s)")
    s.set_defaults(func=run)


def run(args) -> int:
    try:
        import uvicorn

        from liftcam.serve.app import Limits, create_app
    except ImportError as exc:
        raise needs_extra("liftcam serve", exc, "serve") from None
    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import DEFAULT_MAX_PIXELS

    if args.max_wait_ms < 0:
        raise CliError(f"--max-wait-ms must be >= 0, got {args.max_wait_ms}")
    if not 0 <= args.port < 65536:
        raise CliError(f"--port must be in 0..65535, got {args.port}")
    explainer = Explainer(args.bundle, providers=args.providers, threads=args.threads)
    limits = Limits(max_batch=args.max_batch, max_wait_ms=args.max_wait_ms,
                    max_bytes=args.max_bytes, max_pixels=args.max_pixels or DEFAULT_MAX_PIXELS)
    app = create_app(explainer, limits)
    config = uvicorn.Config(app, host=args.host, port=args.port, log_level=args.log_level,
                            lifespan="on", timeout_graceful_shutdown=DRAIN_SECONDS)
    server = uvicorn.Server(config)
    got = []
    # uvicorn drains on SIGTERM, then re-raises the signal to the handler it found: ours notes
    # it, so a drained shutdown exits 0 instead of dying by the signal.
    previous = signal.signal(signal.SIGTERM, lambda signum, frame: got.append(signum))
    try:
        server.run()
    finally:
        signal.signal(signal.SIGTERM, previous)
    if not server.started and not got:
        raise CliError(f"the server could not start on {args.host}:{args.port} "
                       "(see the log above)")
    if got:
        say("liftcam serve: stopped (SIGTERM), in-flight requests finished")
    return EXIT_OK
