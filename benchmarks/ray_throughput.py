"""Ray Data throughput: images/s of ``liftcam.integrations.ray.explain_images`` with 1 and 2
explaining actors on this machine, next to the plain in-process Explainer for reference.

    python benchmarks/ray_throughput.py [--images 256 2048] [--batch 32] [--repeats 3]
                                        [--out benchmarks/results/ray]

Inputs: ``--images`` PNGs (each count is one set of runs) made from the 8 demo samples
(flips, 90° turns and small shifts, 64×64), explained with LIFT-CAM by the demo VGG. Each Ray
run is one ``materialize()`` of the dataset from the file paths (decode + preprocess tasks, the
actor pool, float16 maps) on a local ``ray.init(num_cpus=2)``; it includes starting the actors
and loading the bundle in each. Each actor gets one ONNX Runtime thread. Reported: the median
and best of ``--repeats`` runs.
"""
from __future__ import annotations

import argparse
import logging
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

from liftcam.engine import DEMO_DIR  # noqa: E402

BUNDLE = DEMO_DIR / "vgg_demo.liftcam"


def make_images(folder: Path, n: int) -> list:
    """``n`` PNGs from the demo samples: flips, 90° turns, shifts of up to 3 pixels."""
    rng = np.random.default_rng(0)
    samples = [np.asarray(Image.open(p).convert("RGB")) for p in sorted(DEMO_DIR.glob("*.png"))]
    paths = []
    for i in range(n):
        a = samples[i % len(samples)]
        a = np.rot90(a, k=int(rng.integers(4)))
        if rng.random() < 0.5:
            a = a[:, ::-1]
        a = np.roll(a, tuple(rng.integers(-3, 4, size=2)), axis=(0, 1))
        p = folder / f"img{i:04d}.png"
        Image.fromarray(np.ascontiguousarray(a)).save(p)
        paths.append(str(p))
    return paths


def run_ray(paths, actors, batch, repeats):
    from liftcam.integrations.ray import explain_images

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ds = explain_images(paths, BUNDLE, batch_size=batch, concurrency=actors).materialize()
        times.append(time.perf_counter() - t0)
        assert ds.count() == len(paths)
        del ds
    return times


def run_local(paths, threads, batch, repeats):
    """The plain Explainer in this process: load + preprocess + explain, same batches."""
    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import load_image, preprocess

    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        ex = Explainer(BUNDLE, threads=threads)
        pre = ex.bundle.manifest["preprocessing"]
        for s in range(0, len(paths), batch):
            x = preprocess([load_image(p) for p in paths[s:s + batch]], pre)
            e = ex.explain(x, method="liftcam", progress=False)
            e.maps.astype(np.float16)
        times.append(time.perf_counter() - t0)
    return times


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--images", type=int, nargs="+", default=[256, 2048])
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--out", default=str(Path(__file__).parent / "results" / "ray"))
    args = ap.parse_args(argv)
    import ray

    command = "python benchmarks/ray_throughput.py " + " ".join(argv or sys.argv[1:])
    load_start = common.load_average()
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
             logging_level=logging.WARNING)
    ray.data.DataContext.get_current().enable_progress_bars = False
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for n in args.images:
            paths = make_images(Path(d), n)
            b, r = args.batch, args.repeats
            entries = [("in-process Explainer", "1 ORT thread", lambda: run_local(paths, 1, b, r)),
                       ("in-process Explainer", "2 ORT threads",
                        lambda: run_local(paths, 2, b, r)),
                       ("Ray Data", "1 actor", lambda: run_ray(paths, 1, b, r)),
                       ("Ray Data", "2 actors", lambda: run_ray(paths, 2, b, r))]
            for what, workers, fn in entries:
                times = fn()
                med, best = statistics.median(times), min(times)
                rows.append({"entry": what, "workers": workers, "images": n, "batch": b,
                             "seconds": [round(t, 3) for t in times], "median_s": round(med, 3),
                             "images_per_s_median": round(n / med, 1),
                             "images_per_s_best": round(n / best, 1)})
                print(rows[-1], flush=True)
    ray.shutdown()
    machine = common.machine_description(threads=1)
    machine["versions"]["ray"] = common._version("ray")
    machine["load_average_start"] = load_start
    out = Path(args.out)
    common.write_json(out / "throughput.json", {"command": command, "machine": machine,
                                                "bundle": BUNDLE.name, "method": "liftcam",
                                                "results": rows})
    table = common.markdown_table(
        ["entry", "workers", "images", "batch", "median s", "images/s (median)",
         "images/s (best)"],
        [[r["entry"], r["workers"], r["images"], r["batch"], r["median_s"],
          r["images_per_s_median"], r["images_per_s_best"]] for r in rows])
    (out / "throughput.md").write_text(
        f"# Ray Data throughput\n\nCommand: `{command}`  \n"
        f"Machine: {machine['cpu']}, {machine['logical_cores']} logical cores; ray "
        f"{machine['versions']['ray']}, onnxruntime {machine['versions']['onnxruntime']}; load "
        f"average at start {load_start}, at end {common.load_average()}.  \n"
        f"Demo VGG (64×64, 8 classes), LIFT-CAM, {' and '.join(map(str, args.images))} PNGs, "
        f"{args.repeats} runs each. "
        "A Ray run is one `explain_images(...).materialize()` from the file paths on a local "
        "`ray.init(num_cpus=2)`, including actor start-up and the bundle load in each actor; "
        "each actor uses one ONNX Runtime thread. The in-process rows run load_image + "
        "preprocess + Explainer.explain in one process, for reference.\n\n"
        + table + "\n", encoding="utf-8")
    print((out / "throughput.md").read_text())


if __name__ == "__main__":
    main()
