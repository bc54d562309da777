"""``liftcam info BUNDLE``: what a bundle holds, after verifying it."""
from __future__ import annotations

import json
import sys

from liftcam.cli.common import EXIT_OK, fmt_bytes, say


def add_parser(sub):
    i = sub.add_parser("info", help="show what a bundle holds (after verifying it)",
                       description="Verify a bundle (manifest, sha256 of every file) and print "
                                   "its input, preprocessing, target layer, classes and files.")
    i.add_argument("bundle", metavar="BUNDLE")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.add_argument("--no-verify", action="store_true", help="skip the sha256 check")
    i.set_defaults(func=run)


def run(args) -> int:
    from liftcam.engine.bundle import load_bundle

    bundle = load_bundle(args.bundle, verify=not args.no_verify)
    m = bundle.manifest
    if args.json:
        say(json.dumps(m, indent=2), sys.stdout)
        return EXIT_OK
    inp, pre, tl, act = m["input"], m["preprocessing"], m["target_layer"], m["activation"]
    lines = [f"bundle       {bundle.path}",
             f"verified     {'no (--no-verify)' if args.no_verify else 'yes'}: manifest "
             f"format {m['format_version']}, sha256 of {len(m['files'])} files"]
    src = m.get("source", {})
    if src:
        lines.append("source       " + ", ".join(f"{k}={v}" for k, v in src.items()))
    shape = "x".join("N" if d is None else str(d) for d in inp["shape"])
    lines.append(f"input        {inp.get('name')} {shape} {inp.get('dtype', 'float32')} "
                 f"{inp.get('layout', 'NCHW')}")
    pre_bits = []
    for key in ("resize", "resize_shorter", "center_crop", "resize_mode", "scale", "mean",
                "std", "channel_order"):
        if pre.get(key) is not None:
            v = pre[key]
            if isinstance(v, list):
                v = ",".join(f"{x:g}" if isinstance(x, float) else str(x) for x in v)
            pre_bits.append(f"{key}={v}")
    lines.append("preprocess   " + " ".join(pre_bits))
    aliases = tl.get("aliases") or []
    lines.append(f"target layer {tl.get('name')} (tensor {tl.get('tensor')}"
                 + (f"; also {', '.join(aliases)}" if aliases else "") + ")")
    lines.append("activation   " + "x".join("N" if d is None else str(d) for d in act["shape"]))
    head = m.get("head", {})
    if head:
        kind = "linear (GAP + dense): cam available" if head.get("linear") else \
            "non-linear: cam unavailable"
        lines.append(f"head         {kind}")
    labels = m.get("labels")
    if labels:
        shown = ", ".join(f"{i}:{lab}" for i, lab in enumerate(labels[:20]))
        more = f", ... ({len(labels) - 20} more)" if len(labels) > 20 else ""
        lines.append(f"classes      {m['num_classes']}: {shown}{more}")
    else:
        lines.append(f"classes      {m['num_classes']} (no labels)")
    out = m.get("output", {})
    if out.get("stripped_final"):
        lines.append(f"output       logits (the model's final {out['stripped_final']} removed)")
    lines.append("graphs       " + ", ".join(f"{r}={f}" for r, f in m["graphs"].items()))
    total = 0
    lines.append("files")
    for name, entry in m["files"].items():
        size = entry.get("bytes")
        if size is None:
            fp = bundle.path / name
            size = fp.stat().st_size if fp.exists() else 0
        total += size
        lines.append(f"  {name:<28} {fmt_bytes(size):>10}  sha256 {entry['sha256'][:16]}…")
    lines.append(f"  {'total':<28} {fmt_bytes(total):>10}")
    if m.get("opset") is not None:
        lines.append(f"opset        {m['opset']}")
    exp = m.get("exporter")
    if exp:
        lines.append("exporter     " + ", ".join(f"{k} {v}" for k, v in exp.items()))
    if m.get("created"):
        lines.append(f"created      {m['created']}")
    ver = m.get("verification")
    if ver:
        lines.append(f"split check  max relative error {ver.get('max_relative_error', 0):.2g} "
                     f"(rtol {ver.get('rtol')}, batch sizes {ver.get('batch_sizes')})")
        if "reference_relative_error" in ver:
            lines.append(f"vs model     max relative error {ver['reference_relative_error']:.2g}"
                         f" (ONNX export alone {ver['onnx_baseline_error']:.2g}, allowed "
                         f"{ver['reference_rtol']:.2g})")
    say("\n".join(lines), sys.stdout)
    return EXIT_OK
