"""Speed benchmark: explaining vs predicting, and vs the tools users would pick instead.

    python benchmarks/speed.py [--quick] [--models resnet50,vgg16] [--batches 1,8,32]
                               [--repeats R] [--slow-repeats R] [--out DIR] [--cache DIR]

For each model (torchvision, random weights seeded with 0) and batch size, on this CPU:

- the floor: ``ort`` = ONNX Runtime inference of the whole model (``torch.onnx.export``,
  dynamo=False, opset 17, dynamic batch) with liftcam's session options; ``ort-default`` the
  same with ONNX Runtime's default options; ``torch`` = PyTorch eager under ``no_grad`` with
  ``torch.set_num_threads`` = ONNX Runtime's intra-op threads;
- liftcam: ``liftcam`` (``Explainer.explain``, the path its rule picks: DESIGN.md §13),
  ``liftcam-M`` (``Explainer(path="multipliers")``: features, then the DeepLIFT multipliers,
  the tail in numpy), ``liftcam-onnx`` (the one-file ``explain.onnx`` in a plain onnxruntime
  session, ONNX Runtime's default options), ``gradcam``, ``ablationcam``, ``scorecam``
  (``Explainer``);
- peers: pytorch-grad-cam ``pgc-gradcam``, ``pgc-ablationcam``, ``pgc-scorecam`` on the same
  torch model and layer; ``captum-liftcam``: LIFT-CAM as its official code computes it (torch
  features, ``captum.attr.DeepLift(head).attribute(A, zeros_like(A), target=c)``, α = Σ_ij,
  map).

Method. Every entry runs in its own child process that loads only what the entry needs and
stays alive for the whole model; the parent drives the children round-robin (the starting
entry rotates every repeat, with a short pause between calls so no child's thread pool is
still awake when the next one starts), so load drift hits all entries alike. Per batch size:
``--warmup`` calls per entry, then ``--repeats`` timed calls each; the median is reported.
Ablation-CAM and Score-CAM make K model/head evaluations per image (K = 2048 on ResNet-50,
512 on VGG-16): they run at the smallest batch only, warmed up by one plain forward pass, with
``--slow-repeats`` timed calls. Peak memory is each child's resident-set high-water mark at
the end, i.e. over loading and every batch size it ran (the largest batch dominates;
``VmHWM``, see common.peak_rss_mb); ``import MiB`` is the RSS right after its imports
(torch alone is a few hundred MiB), so ``peak − import`` is what the entry itself added.

Outputs under ``--out``: ``speed.json`` (machine, settings, every raw timing), ``speed.md``
(the table, also printed) and ``speed.png`` (ratios to the ONNX Runtime floor, log scale).
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import common  # noqa: E402

FAST = ["ort", "ort-default", "torch", "liftcam", "liftcam-M", "liftcam-onnx", "gradcam",
        "pgc-gradcam", "captum-liftcam"]
SLOW = ["ablationcam", "scorecam", "pgc-ablationcam", "pgc-scorecam"]
LABELS = {
    "ort": "ONNX Runtime inference (floor; liftcam's session options)",
    "ort-default": "ONNX Runtime inference (ORT default options)",
    "torch": "PyTorch eager inference (no_grad)",
    "liftcam": "liftcam LIFT-CAM (Explainer.explain, the path its rule picks)",
    "liftcam-M": "liftcam LIFT-CAM (Explainer, path='multipliers')",
    "liftcam-onnx": "liftcam LIFT-CAM (explain.onnx, plain onnxruntime)",
    "gradcam": "liftcam Grad-CAM (Explainer)",
    "ablationcam": "liftcam Ablation-CAM (Explainer)",
    "scorecam": "liftcam Score-CAM (Explainer)",
    "pgc-gradcam": "pytorch-grad-cam GradCAM",
    "pgc-ablationcam": "pytorch-grad-cam AblationCAM",
    "pgc-scorecam": "pytorch-grad-cam ScoreCAM",
    "captum-liftcam": "LIFT-CAM, official way (torch + Captum DeepLift)",
}
FLOOR = "ort"
# model -> (liftcam target layer, input size)
MODELS = {"resnet50": ("layer4", 224), "vgg16": ("features.29", 224),
          "resnet18": ("layer4", 64), "tinycnn": ("features.4", 64)}


# ============================================================================ torch side
def torch_model(name: str):
    import torch
    import torchvision

    torch.manual_seed(0)
    if name == "tinycnn":
        from torch import nn

        class TinyCNN(nn.Module):
            def __init__(self):
                super().__init__()
                self.features = nn.Sequential(nn.Conv2d(3, 16, 3, padding=1), nn.ReLU(),
                                              nn.MaxPool2d(2), nn.Conv2d(16, 32, 3, padding=1),
                                              nn.ReLU())
                self.avgpool = nn.AdaptiveAvgPool2d(1)
                self.fc = nn.Linear(32, 10)

            def forward(self, x):
                return self.fc(torch.flatten(self.avgpool(self.features(x)), 1))

        return TinyCNN().eval()
    return getattr(torchvision.models, name)(weights=None).eval()


def torch_parts(name: str, model):
    """(features module: x -> A, head module: A -> logits, the target layer module)."""
    import copy

    from torch import nn

    if name.startswith("resnet"):
        feats = nn.Sequential(model.conv1, model.bn1, model.relu, model.maxpool, model.layer1,
                              model.layer2, model.layer3, model.layer4)
        head = nn.Sequential(model.avgpool, nn.Flatten(1), model.fc)
        return feats, head, model.layer4[-1]
    if name == "vgg16":
        head = nn.Sequential(model.features[30], model.avgpool, nn.Flatten(1),
                             copy.deepcopy(model.classifier))
        for m in head.modules():          # Captum's DeepLift needs non-in-place ReLUs
            if isinstance(m, nn.ReLU):
                m.inplace = False
        return model.features[:30], head, model.features[29]
    if name == "tinycnn":
        return model.features, nn.Sequential(model.avgpool, nn.Flatten(1), model.fc), \
            model.features[4]
    raise ValueError(name)


def _has_alpha_graph(bundle) -> bool:
    graphs = json.loads((Path(bundle) / "manifest.json").read_text())["graphs"]
    return "alpha_deeplift" in graphs


def prepare(name: str, cache: Path) -> dict:
    """Weights, the whole-model ONNX and the liftcam bundle of ``name`` (cached in ``cache``)."""
    layer, size = MODELS[name]
    d = cache / f"{name}_{size}"
    paths = {"weights": d / "model.pt", "onnx": d / "model.onnx", "bundle": d / "bundle.liftcam",
             "size": size, "layer": layer}
    done = {k: (str(v) if isinstance(v, Path) else v) for k, v in paths.items()}
    if all(Path(paths[k]).exists() for k in ("weights", "onnx", "bundle")):
        done["partial_sums"] = _has_alpha_graph(done["bundle"])
        return done
    import warnings

    import torch

    import liftcam

    d.mkdir(parents=True, exist_ok=True)
    model = torch_model(name)
    torch.save(model.state_dict(), paths["weights"])
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(model, torch.zeros(1, 3, size, size), str(paths["onnx"]), dynamo=False,
                          opset_version=17, input_names=["image"], output_names=["logits"],
                          dynamic_axes={"image": {0: "N"}, "logits": {0: "N"}})
    liftcam.export_model(model, target_layer=layer, input_shape=(3, size, size),
                         out_dir=paths["bundle"], overwrite=True)
    done["partial_sums"] = _has_alpha_graph(done["bundle"])
    return done


# ============================================================================ child
def _inputs(batches, size):
    import numpy as np

    rng = np.random.default_rng(0)
    return {b: rng.standard_normal((b, 3, size, size)).astype(np.float32) for b in batches}


def _child_ort(entry, paths, xs, threads):
    import numpy as np
    import onnxruntime as ort

    from liftcam.engine.explainer import Explainer
    from liftcam.engine.sessions import session_options

    if entry in ("ort", "ort-default"):
        so = session_options(threads) if entry == "ort" else ort.SessionOptions()
        if entry == "ort-default" and threads:
            so.intra_op_num_threads = threads
        s = ort.InferenceSession(paths["onnx"], so, providers=["CPUExecutionProvider"])
        return (lambda b: s.run(None, {"image": xs[b]})), None
    if entry == "liftcam-onnx":
        so = ort.SessionOptions()
        if threads:
            so.intra_op_num_threads = threads
        s = ort.InferenceSession(str(Path(paths["bundle"]) / "explain.onnx"), so,
                                 providers=["CPUExecutionProvider"])
        tg = {b: np.full(b, -1, np.int64) for b in xs}
        return (lambda b: s.run(None, {"image": xs[b], "target": tg[b]})), None
    from liftcam.engine.bundle import load_bundle

    ex = Explainer(load_bundle(paths["bundle"]), threads=threads,
                   path="multipliers" if entry == "liftcam-M" else "auto")
    method = "liftcam" if entry == "liftcam-M" else entry
    warm = (lambda b: ex.predict(xs[b])) if entry in SLOW else None
    return (lambda b: ex.explain(xs[b], method=method, progress=False)), warm


def _child_torch(entry, name, paths, xs, threads):
    import torch
    import torch.nn.functional as F

    torch.set_num_threads(threads)
    model = torch_model(name)
    model.load_state_dict(torch.load(paths["weights"]))
    model.eval()
    tx = {b: torch.from_numpy(x) for b, x in xs.items()}
    size = next(iter(xs.values())).shape[2:]
    feats, head, layer = torch_parts(name, model)

    def forward(b):
        with torch.no_grad():
            return model(tx[b])

    if entry == "torch":
        return forward, None
    if entry == "captum-liftcam":
        from captum.attr import DeepLift

        dl = DeepLift(head)

        def run(b):
            with torch.no_grad():
                A = feats(tx[b])
                c = head(A).argmax(1)
            attr = dl.attribute(A, baselines=torch.zeros_like(A), target=c)
            with torch.no_grad():
                alpha = attr.sum(dim=(2, 3))
                L = torch.relu((alpha[:, :, None, None] * A).sum(1, keepdim=True))
                up = F.interpolate(L, size=size, mode="bilinear", align_corners=False)[:, 0]
                lo = up.amin(dim=(1, 2), keepdim=True)
                hi = up.amax(dim=(1, 2), keepdim=True)
                return ((up - lo) / (hi - lo).clamp_min(1e-12)).numpy()
        return run, None
    import pytorch_grad_cam as pgc

    cls = {"pgc-gradcam": pgc.GradCAM, "pgc-ablationcam": pgc.AblationCAM,
           "pgc-scorecam": pgc.ScoreCAM}[entry]
    cam = cls(model=model, target_layers=[layer])
    return (lambda b: cam(input_tensor=tx[b], targets=None)), (forward if entry in SLOW else None)


def child_main(spec: dict):
    t_import = time.perf_counter()
    xs = _inputs(spec["batches"], spec["paths"]["size"])
    entry, threads = spec["entry"], spec["threads"]
    if entry in ("ort", "ort-default", "liftcam-onnx", "liftcam", "liftcam-M", "gradcam",
                 "ablationcam", "scorecam"):
        import numpy  # noqa: F401
        import onnxruntime  # noqa: F401

        import liftcam.engine.explainer  # noqa: F401
        base = common.current_rss_mb()
        fn, warm = _child_ort(entry, spec["paths"], xs, threads)
    else:
        import captum.attr  # noqa: F401
        import pytorch_grad_cam  # noqa: F401
        import torch  # noqa: F401

        base = common.current_rss_mb()
        fn, warm = _child_torch(entry, spec["model"], spec["paths"], xs, threads or
                                common._physical_cores() or os.cpu_count())
    setup_s = time.perf_counter() - t_import

    def do_warm(batch, n):
        for _ in range(n):
            (warm or fn)(batch)
        return {}

    def do_run(batch):
        return {"seconds": common.timed(lambda: fn(batch))}

    def do_rss():
        return {"peak_rss_mb": common.peak_rss_mb(), "import_rss_mb": base}

    common.serve({"warm": do_warm, "run": do_run, "rss": do_rss},
                 {"pid": os.getpid(), "setup_s": setup_s, "import_rss_mb": base})


# ============================================================================ parent
def measure_wave(model, entries, batches, paths, args, log):
    """Start one child per entry, time them round-robin, return {entry: result dict}."""
    res = {}
    children = {}
    try:
        for e in entries:
            spec = {"entry": e, "model": model, "batches": batches, "paths": paths,
                    "threads": args.threads}
            log(f"  [{model}] starting {e}")
            children[e] = common.Child([sys.executable, os.path.abspath(__file__), "--child",
                                        json.dumps(spec)], f"{model}/{e}")
            res[e] = {"times_s": {}, "setup_s": children[e].info["setup_s"]}
        repeats = args.slow_repeats if entries[0] in SLOW else args.repeats
        warmup = 1 if entries[0] in SLOW else args.warmup
        for b in batches:
            for e, c in children.items():
                c.ask("warm", batch=b, n=warmup)
                res[e]["times_s"][str(b)] = []
            order = list(children)
            for r in range(repeats):
                k = r % len(order)
                for e in order[k:] + order[:k]:
                    time.sleep(args.gap)
                    t = children[e].ask("run", batch=b)["seconds"]
                    res[e]["times_s"][str(b)].append(t)
                log(f"  [{model}] batch {b} repeat {r + 1}/{repeats}: " + ", ".join(
                    f"{e} {res[e]['times_s'][str(b)][-1] * 1e3:.0f}" for e in order) + " ms")
        for e, c in children.items():
            res[e].update(c.ask("rss"))
    finally:
        for c in children.values():
            c.close()
    return res


def summarise(raw: dict) -> list:
    """One row per (model, entry, batch): median, images/s, ratio to the ``ort`` floor."""
    rows = []
    for model, entries in raw.items():
        floor = {b: common.median(ts) for b, ts in entries[FLOOR]["times_s"].items()}
        for e in FAST + SLOW:
            if e not in entries:
                continue
            r = entries[e]
            for b, ts in r["times_s"].items():
                med = common.median(ts)
                rows.append({
                    "model": model, "entry": e, "label": LABELS[e], "batch": int(b),
                    "repeats": len(ts), "median_s": med, "images_per_s": int(b) / med,
                    "ratio_to_floor": med / floor[b], "floor_median_s": floor[b],
                    "peak_rss_mb": r["peak_rss_mb"], "import_rss_mb": r["import_rss_mb"],
                    "slow": e in SLOW})
    return rows


def table(rows) -> str:
    headers = ["model", "entry", "batch", "median ms", "images/s", "× ORT floor",
               "peak RSS MiB", "import MiB", "repeats"]
    out = []
    for r in rows:
        out.append([r["model"], f"{r['entry']}" + (" (slow: batch 1 only)" if r["slow"] else ""),
                    r["batch"], f"{r['median_s'] * 1e3:.1f}", f"{r['images_per_s']:.2f}",
                    f"{r['ratio_to_floor']:.3f}", f"{r['peak_rss_mb']:.0f}",
                    f"{r['import_rss_mb']:.0f}", r["repeats"]])
    return common.markdown_table(headers, out)


def chart(rows, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = list(dict.fromkeys(r["model"] for r in rows))
    fig, axes = plt.subplots(len(models), 1, figsize=(12, 4.2 * len(models)), squeeze=False)
    for ax, m in zip(axes[:, 0], models):
        mr = [r for r in rows if r["model"] == m]
        entries = list(dict.fromkeys(r["entry"] for r in mr))
        batches = sorted({r["batch"] for r in mr})
        width = 0.8 / len(batches)
        for i, b in enumerate(batches):
            xs, ys = [], []
            for j, e in enumerate(entries):
                hit = [r for r in mr if r["entry"] == e and r["batch"] == b]
                if hit:
                    xs.append(j + (i - (len(batches) - 1) / 2) * width)
                    ys.append(hit[0]["ratio_to_floor"])
            ax.bar(xs, ys, width, label=f"batch {b}")
        ax.axhline(1.0, color="k", lw=0.8)
        ax.axhline(1.05, color="r", lw=0.8, ls="--", label="1.05× floor")
        ax.set_yscale("log")
        ax.set_xticks(range(len(entries)))
        ax.set_xticklabels(entries, rotation=25, ha="right")
        ax.set_ylabel("latency / ONNX Runtime inference")
        ax.set_title(f"{m}: time relative to plain ONNX Runtime inference (lower is better)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--quick", action="store_true",
                   help="smoke run: a tiny CNN at 64x64, batches 1,2, 2 repeats")
    p.add_argument("--models", default=None, help="comma-separated (default resnet50,vgg16)")
    p.add_argument("--batches", default=None, help="comma-separated (default 1,8,32)")
    p.add_argument("--repeats", type=int, default=None, help="timed calls per entry (default 7)")
    p.add_argument("--slow-repeats", type=int, default=None,
                   help="timed calls for Ablation-CAM/Score-CAM (default 2)")
    p.add_argument("--warmup", type=int, default=None, help="warm-up calls (default 2)")
    p.add_argument("--no-slow", action="store_true", help="skip Ablation-CAM/Score-CAM")
    p.add_argument("--entries", default=None,
                   help="comma-separated subset of entries (default: all; 'ort' is always run)")
    p.add_argument("--threads", type=int, default=None,
                   help="intra-op threads (default: ONNX Runtime's, physical cores)")
    p.add_argument("--gap", type=float, default=0.1, help="pause between calls, seconds")
    p.add_argument("--out", default="bench_out", help="output directory")
    p.add_argument("--cache", default=None,
                   help="where exported models are kept between runs (default: a temp dir)")
    p.add_argument("--child", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.child:
        return child_main(json.loads(args.child))
    q = args.quick
    models = (args.models or ("tinycnn" if q else "resnet50,vgg16")).split(",")
    batches = [int(b) for b in (args.batches or ("1,2" if q else "1,8,32")).split(",")]
    args.repeats = args.repeats or (2 if q else 7)
    args.slow_repeats = args.slow_repeats or (1 if q else 2)
    args.warmup = args.warmup if args.warmup is not None else (1 if q else 2)
    if q:
        args.gap = min(args.gap, 0.02)
    wanted = set(FAST + SLOW) if not args.entries else set(args.entries.split(",")) | {FLOOR}
    if wanted - set(FAST + SLOW):
        p.error(f"unknown entries {sorted(wanted - set(FAST + SLOW))}; choose from {FAST + SLOW}")
    for m in models:
        if m not in MODELS:
            p.error(f"unknown model {m!r}; choose from {sorted(MODELS)}")
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    def log(msg):
        print(msg, file=sys.stderr, flush=True)

    tmp = None
    if args.cache:
        cache = Path(args.cache)
    else:
        tmp = tempfile.TemporaryDirectory(prefix="liftcam-bench-")
        cache = Path(tmp.name)
    started = time.time()
    machine = common.machine_description(args.threads)
    raw, partial = {}, {}
    try:
        for m in models:
            log(f"[{m}] exporting (cache {cache})")
            paths = prepare(m, cache)
            partial[m] = bool(paths["partial_sums"])
            raw[m] = measure_wave(m, [e for e in FAST if e in wanted], batches, paths, args, log)
            slow = [e for e in SLOW if e in wanted]
            if slow and not args.no_slow:
                raw[m].update(measure_wave(m, slow, batches[:1], paths, args, log))
    finally:
        if tmp is not None:
            tmp.cleanup()
    machine["load_average_end"] = common.load_average()
    rows = summarise(raw)
    md = table(rows)
    cmd = "python benchmarks/speed.py " + " ".join(argv if argv is not None else sys.argv[1:])
    header = (f"Command: `{cmd}`  \nMachine: {machine['cpu']}, {machine['logical_cores']} logical "
              f"cores; onnxruntime {machine['versions']['onnxruntime']}, torch "
              f"{machine['versions']['torch']}; load average at start {machine['load_average']}, "
              f"at end {machine['load_average_end']}.  \nMedians of {args.repeats} interleaved "
              f"calls after {args.warmup} warm-up; slow methods (Ablation-CAM, Score-CAM): batch "
              f"{batches[0]} only, {args.slow_repeats} calls. × ORT floor = median / median of "
              f"`ort` at the same batch. Peak RSS: each entry's own process, over all its batch "
              f"sizes. Partial-sums α graph in the bundle: {partial}.\n")
    (out / "speed.md").write_text(header + "\n" + md + "\n", encoding="utf-8")
    common.write_json(out / "speed.json", {
        "command": cmd, "machine": machine, "elapsed_s": time.time() - started,
        "settings": {"models": models, "batches": batches, "repeats": args.repeats,
                     "slow_repeats": args.slow_repeats, "warmup": args.warmup,
                     "threads": args.threads, "gap_s": args.gap, "floor": FLOOR,
                     "quick": q, "slow_entries": [] if args.no_slow else SLOW,
                     "partial_sums": partial},
        "labels": LABELS, "raw": raw, "rows": rows})
    chart(rows, out / "speed.png")
    print(header)
    print(md)
    return 0


if __name__ == "__main__":
    sys.exit(main())
