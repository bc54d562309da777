"""Which graph should LIFT-CAM run through on the CPU, per batch size? (DESIGN.md §13)

    python benchmarks/paths.py [--models vgg16,resnet50] [--batches 1,2,4,8,16,32]
                               [--repeats R] [--out DIR] [--cache DIR]

For each model (the torchvision models of ``speed.py``, random weights seeded with 0, the same
export cache) and batch size, one process times, interleaved (rotating order, a pause between
calls so no thread pool is awake from the call before), with liftcam's session options:

- ``floor``: ONNX Runtime inference of the whole model;
- ``alpha``: ``Explainer(path="alpha").explain`` (features, then the channel-partial-sums
  α graph of DESIGN.md §5, then the numpy tail); only where the bundle has that graph;
- ``multipliers``: ``Explainer(path="multipliers").explain`` (features, the DeepLIFT
  multipliers M, α = Σ A·M in numpy, the tail);
- ``auto``: ``Explainer().explain``, the path the rule picks;
- ``fused``: ``explain.onnx`` (every step in one graph) in one ONNX Runtime session.

It also checks that every path gives the same maps and coefficients (max abs difference).
Outputs under ``--out``: ``paths.json`` (every timing) and ``paths.md`` (median ms and the ratio
to the floor; the fastest LIFT-CAM path per batch in bold).
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402
import speed  # noqa: E402

PATHS = ("alpha", "multipliers", "auto", "fused")


def entries(paths: dict, threads=None) -> dict:
    """name -> fn(x) for every entry this bundle supports."""
    import numpy as np
    import onnxruntime as ort

    from liftcam.engine.explainer import Explainer
    from liftcam.engine.sessions import session_options

    def session(path):
        return ort.InferenceSession(path, session_options(threads),
                                    providers=["CPUExecutionProvider"])

    floor = session(paths["onnx"])
    fused = session(str(Path(paths["bundle"]) / "explain.onnx"))
    out = {"floor": lambda x: floor.run(None, {"image": x})}
    for p in ("alpha", "multipliers", "auto"):
        if p == "alpha" and not paths["partial_sums"]:
            continue
        ex = Explainer(paths["bundle"], threads=threads, path=p)
        out[p] = (lambda e: lambda x: e.explain(x, progress=False, batch_size=len(x)))(ex)
    out["fused"] = lambda x: fused.run(None, {"image": x,
                                              "target": np.full(len(x), -1, np.int64)})
    return out


def agreement(fns: dict, x) -> dict:
    """Max abs difference of each path's coefficients and maps from the multipliers path's."""
    import numpy as np

    ref = fns["multipliers"](x)
    out = {}
    for name in ("alpha", "auto", "fused"):
        if name not in fns:
            continue
        r = fns[name](x)
        w, maps = (r[1], r[2]) if name == "fused" else (r.weights, r.maps)
        out[name] = {"weights_rel": float(np.abs(w - ref.weights).max()
                                          / np.abs(ref.weights).max()),
                     "maps_abs": float(np.abs(maps - ref.maps).max())}
    return out


def measure(model: str, batches, repeats: int, cache: Path, gap: float, log) -> dict:
    import numpy as np

    from liftcam.engine.explainer import Explainer

    paths = speed.prepare(model, cache)
    fns = entries(paths)
    size = paths["size"]
    rng = np.random.default_rng(0)
    res = {"times_s": {}, "agreement": agreement(fns, rng.standard_normal(
        (2, 3, size, size)).astype(np.float32))}
    rule = Explainer(paths["bundle"])
    res["rule"] = {str(b): rule.path_for("liftcam", b) for b in batches}
    for b in batches:
        x = rng.standard_normal((b, 3, size, size)).astype(np.float32)
        for f in fns.values():                  # warm-up: sessions, arenas
            f(x)
        times = {name: [] for name in fns}
        order = list(fns)
        for r in range(repeats):
            k = r % len(order)
            for name in order[k:] + order[:k]:
                time.sleep(gap)
                times[name].append(common.timed(lambda: fns[name](x)))
        res["times_s"][str(b)] = times
        log(f"[{model}] batch {b}: " + ", ".join(
            f"{n} {common.median(t) * 1e3:.1f}" for n, t in times.items()) + " ms (medians)")
    return res


def table(raw: dict) -> str:
    rows = []
    for model, res in raw.items():
        for b, times in res["times_s"].items():
            floor = common.median(times["floor"])
            meds = {n: common.median(t) for n, t in times.items()}
            best = min((n for n in meds if n in ("alpha", "multipliers", "fused")),
                       key=meds.get)
            cells = []
            for n in ("floor",) + PATHS:
                if n not in meds:
                    cells.append("–")
                    continue
                text = f"{meds[n] * 1e3:.1f} ({meds[n] / floor:.3f}×)"
                cells.append(f"**{text}**" if n == best else text)
            rows.append([model, b, *cells, res["rule"][b]])
    return common.markdown_table(["model", "batch", "floor ms", "alpha", "multipliers",
                                  "auto (Explainer)", "fused explain.onnx", "rule picks"], rows)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--models", default="vgg16,resnet50")
    p.add_argument("--batches", default="1,2,4,8,16,32")
    p.add_argument("--repeats", type=int, default=7)
    p.add_argument("--gap", type=float, default=0.1, help="pause between calls, seconds")
    p.add_argument("--out", default="bench_out/paths")
    p.add_argument("--cache", default="bench_cache",
                   help="where exported models are kept between runs")
    args = p.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",")]
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    started, machine = time.time(), common.machine_description()
    raw = {m: measure(m, batches, args.repeats, Path(args.cache), args.gap, log)
           for m in args.models.split(",")}
    machine["load_average_end"] = common.load_average()
    cmd = "python benchmarks/paths.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"Command: `{cmd}`  \nMachine: {machine['cpu']}, {machine['logical_cores']} logical "
              f"cores; onnxruntime {machine['versions']['onnxruntime']}; load average at start "
              f"{machine['load_average']}, at end {machine['load_average_end']}.  \nMedian of "
              f"{args.repeats} interleaved calls per cell (one process, liftcam's session "
              "options for every entry), ratio to the floor in brackets; bold: the fastest "
              "LIFT-CAM path. Agreement with the multipliers path (max |Δ| of maps, relative "
              "|Δ| of α): " + "; ".join(f"{m}: " + ", ".join(
                  f"{n} maps {a['maps_abs']:.1e} α {a['weights_rel']:.1e}"
                  for n, a in r["agreement"].items()) for m, r in raw.items()) + ".\n")
    md = table(raw)
    (out / "paths.md").write_text(header + "\n" + md + "\n", encoding="utf-8")
    common.write_json(out / "paths.json", {"command": cmd, "machine": machine,
                                           "elapsed_s": time.time() - started,
                                           "repeats": args.repeats, "raw": raw})
    print(header)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
