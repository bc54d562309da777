"""``liftcam serve``: an HTTP API and a page over one bundle (the optional ``serve`` extra:
Starlette + uvicorn; the runtime never imports this package).

- :mod:`liftcam.serve.app`: the routes, request parsing and the error mapping;
- :mod:`liftcam.serve.batcher`: dynamic batching of concurrent requests into engine calls;
- :mod:`liftcam.serve.metrics`: Prometheus counters and histograms (text exposition);
- ``page.html``: the page at ``GET /``.

DESIGN.md §9 describes the batching rule, the error mapping and the shutdown.
"""
