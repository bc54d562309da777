"""Load benchmark of ``liftcam serve``: concurrent clients against a local server.

For each mode (dynamic batching on: ``--max-batch B``; off: ``--max-batch 1``) a server process
is started on a free 127.0.0.1 port; ``--clients`` threads each send ``--requests`` POST
/v1/explain requests (the demo images in turn) over their own keep-alive connection. Reported:
throughput, latency p50/p99, errors (any non-200 or transport error), lost requests (sent but
never answered), the mean engine batch (from /metrics), and the server's overhead ratio: the
direct in-process throughput (decode, preprocess, ``Explainer.explain``, map at the original
size, PNG, at batch 1 or B like the server) over the server's throughput. Everything is
bounded: requests per client, a timeout per request and a deadline per mode. The server stops
by SIGTERM and must exit 0.

    python benchmarks/serve_load.py --clients 32 --requests 8 [--bundle DIR] [--out DIR]
"""
from __future__ import annotations

import argparse
import io
import json
import re
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from common import machine_description, write_json  # noqa: E402

from liftcam.engine import DEMO_DIR  # noqa: E402


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(bundle, max_batch, max_wait_ms, log_path):
    import httpx

    port = free_port()
    log = open(log_path, "wb")
    proc = subprocess.Popen([sys.executable, "-m", "liftcam.cli", "serve", str(bundle),
                             "--host", "127.0.0.1", "--port", str(port), "--max-batch",
                             str(max_batch), "--max-wait-ms", str(max_wait_ms),
                             "--log-level", "warning"], stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"the server exited: {Path(log_path).read_text()[-2000:]}")
        try:
            if httpx.get(url + "/healthz", timeout=2).status_code == 200:
                return proc, url
        except httpx.TransportError:
            time.sleep(0.2)
    proc.kill()
    raise SystemExit("the server did not become healthy in 60 s")


def load(url, images, clients, requests, method, deadline_s):
    """``clients`` threads × ``requests`` each; returns latencies (s), errors, lost, wall."""
    import httpx

    lat, errors, answered = [], [], [0]
    lock = threading.Lock()
    gate = threading.Barrier(clients + 1, timeout=60)
    stop_at = [time.monotonic() + 60 + deadline_s]        # connecting, then the load

    def client(c):
        with httpx.Client(timeout=60) as http:
            http.get(url + "/healthz")
            gate.wait()
            for i in range(requests):
                if time.monotonic() > stop_at[0]:
                    break
                data = images[(c * requests + i) % len(images)]
                t0 = time.perf_counter()
                try:
                    r = http.post(url + "/v1/explain", content=data, params={"method": method},
                                  headers={"Content-Type": "image/png"})
                    ok = r.status_code == 200 and "map_png" in r.json()
                    why = None if ok else f"HTTP {r.status_code}: {r.text[:200]}"
                except (httpx.HTTPError, ValueError) as exc:
                    why = repr(exc)
                dt = time.perf_counter() - t0
                with lock:
                    answered[0] += why is None or why.startswith("HTTP")
                    (errors.append(why) if why else lat.append(dt))

    threads = [threading.Thread(target=client, args=(c,)) for c in range(clients)]
    for t in threads:
        t.start()
    gate.wait()
    t0 = time.perf_counter()
    for t in threads:
        t.join(deadline_s + 120)
    wall = time.perf_counter() - t0
    sent = len(lat) + len(errors)
    return {"latencies": lat, "errors": errors, "sent": sent, "lost": sent - answered[0],
            "wall_s": wall}


def batch_stats(url):
    import httpx

    text = httpx.get(url + "/metrics").text
    images = float(re.search(r"liftcam_batch_size_sum (\S+)", text).group(1))
    calls = int(re.search(r"liftcam_batch_size_count (\d+)", text).group(1))
    return calls, images


def direct(bundle, images, n, batch, method):
    """The server's per-request work in-process, no HTTP: n requests at ``batch`` per call."""
    import base64

    from PIL import Image

    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import decode_image, preprocess
    from liftcam.engine.maps import place_map

    ex = Explainer(bundle)
    pre = ex.bundle.manifest["preprocessing"]
    ex.explain(preprocess([decode_image(images[0])], pre), method=method, progress=False)
    t0 = time.perf_counter()
    for s in range(0, n, batch):
        imgs = [decode_image(images[i % len(images)]) for i in range(s, min(n, s + batch))]
        e = ex.explain(np.concatenate([preprocess([im], pre) for im in imgs]), method=method,
                       progress=False)
        for j, im in enumerate(imgs):
            cam = place_map(e.maps[j], im.size, pre)
            buf = io.BytesIO()
            Image.fromarray(np.rint(cam * 255).astype(np.uint8), mode="L").save(buf, "PNG")
            json.dumps({"map_png": base64.b64encode(buf.getvalue()).decode(),
                        "p": e.probabilities()[j].tolist()})
    return n / (time.perf_counter() - t0)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bundle", default=str(DEMO_DIR / "vgg_demo.liftcam"))
    p.add_argument("--clients", type=int, default=32)
    p.add_argument("--requests", type=int, default=8, help="requests per client")
    p.add_argument("--method", default="liftcam")
    p.add_argument("--max-batch", type=int, default=16)
    p.add_argument("--max-wait-ms", type=float, default=5.0)
    p.add_argument("--deadline", type=float, default=120.0, help="seconds per mode at most")
    p.add_argument("--out", default=str(HERE / "results" / "serve"))
    args = p.parse_args(argv)
    if not (1 <= args.clients <= 256 and 1 <= args.requests <= 1000):
        p.error("--clients must be 1..256 and --requests 1..1000")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    images = [f.read_bytes() for f in sorted(DEMO_DIR.glob("*.png"))]
    n = args.clients * args.requests
    rows = []
    for mode, max_batch in (("batching off", 1), ("batching on", args.max_batch)):
        base = direct(args.bundle, images, n, max_batch, args.method)
        proc, url = start(args.bundle, max_batch, args.max_wait_ms,
                          Path(tempfile.gettempdir()) / f"liftcam-serve-load-{max_batch}.log")
        try:
            load(url, images, min(args.clients, 8), 2, args.method, 30)       # warm-up
            calls0, images0 = batch_stats(url)
            r = load(url, images, args.clients, args.requests, args.method, args.deadline)
            calls, images1 = batch_stats(url)
            calls -= calls0
            mean_batch = (images1 - images0) / calls if calls else 0.0
        finally:
            proc.send_signal(signal.SIGTERM)
            rc = proc.wait(60)
        lat = np.array(r["latencies"]) * 1000.0
        rps = len(lat) / r["wall_s"]
        rows.append({"mode": mode, "max_batch": max_batch, "clients": args.clients,
                     "requests": n, "ok": len(lat), "errors": len(r["errors"]),
                     "lost": r["lost"] + (n - r["sent"]), "wall_s": round(r["wall_s"], 3),
                     "throughput_rps": round(rps, 2),
                     "p50_ms": round(float(np.percentile(lat, 50)), 1) if len(lat) else None,
                     "p99_ms": round(float(np.percentile(lat, 99)), 1) if len(lat) else None,
                     "engine_calls": calls, "mean_batch": round(mean_batch, 2),
                     "direct_rps": round(base, 2), "overhead_ratio": round(base / rps, 2),
                     "exit_code": rc, "error_samples": r["errors"][:3]})
        print(json.dumps(rows[-1]), flush=True)
    off, on = rows
    command = "python benchmarks/serve_load.py " + " ".join(argv or sys.argv[1:])
    write_json(out / "serve_load.json", {
        "command": command.strip(), "machine": machine_description(), "method": args.method,
        "bundle": Path(args.bundle).name, "max_wait_ms": args.max_wait_ms, "rows": rows})
    lines = [f"Command: `{command.strip()}`  ",
             f"Bundle {Path(args.bundle).name}, method {args.method}, {args.clients} concurrent "
             f"clients × {args.requests} requests, --max-wait-ms {args.max_wait_ms:g}; client "
             "threads and server share the machine's cores.  ",
             "Overhead ratio = direct in-process throughput (same work, same batch size, no "
             "HTTP) / server throughput. Mean batch: images per engine call (/metrics).", "",
             "| mode | max batch | requests | ok | errors | lost | req/s | p50 ms | p99 ms | "
             "mean batch | direct req/s | overhead × | exit |",
             "|:---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r['mode']} | {r['max_batch']} | {r['requests']} | {r['ok']} | "
                     f"{r['errors']} | {r['lost']} | {r['throughput_rps']} | {r['p50_ms']} | "
                     f"{r['p99_ms']} | {r['mean_batch']} | {r['direct_rps']} | "
                     f"{r['overhead_ratio']} | {r['exit_code']} |")
    speedup = on["throughput_rps"] / off["throughput_rps"]
    lines += ["", f"Batching on vs off: throughput × {speedup:.2f}, "
              f"p99 × {on['p99_ms'] / off['p99_ms']:.2f}."]
    (out / "serve_load.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
    print("\n".join(lines))
    return 0 if all(r["errors"] == 0 and r["lost"] == 0 and r["exit_code"] == 0
                    for r in rows) else 1


if __name__ == "__main__":
    sys.exit(main())
