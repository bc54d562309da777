"""The ``liftcam`` command line: ``demo``, ``explain``, ``info``, ``export``, ``layers``.

Run time commands (``demo``, ``explain``, ``info``) need numpy + onnxruntime + Pillow only;
``export`` and ``layers`` need the build extras (torch/torchvision for PyTorch models, onnx),
imported only inside those commands.

Exit status: 0 success; 1 an error (bad bundle, bad target, unreadable model, ...; one line on
stderr starting ``liftcam: error:``); 2 a bad command line; 3 ``explain`` finished but some
inputs could not be read (each named on stderr, the others written); 130 interrupted.
"""
from __future__ import annotations

import argparse
import difflib
import glob
import io
import json
import os
import sys
import time
from pathlib import Path

from liftcam import __version__
from liftcam.engine.errors import InputError, LiftcamError

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_PARTIAL, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".jpe", ".jfif", ".png", ".bmp", ".gif", ".tif", ".tiff",
                    ".webp", ".ppm", ".pgm", ".pbm", ".pnm", ".tga", ".ico")
METHOD_NAMES = ("liftcam", "gradcam", "gradcam++", "xgradcam", "layercam", "hirescam",
                "ablationcam", "scorecam", "cam", "shap")


class CliError(LiftcamError):
    """A command-line level error (bad option value, nothing to do)."""


def _say(msg: str, stream=None) -> None:
    stream = stream or sys.stderr
    stream.write(msg + "\n")
    stream.flush()


def _one_line(msg) -> str:
    return " ".join(str(msg).split())


# ----------------------------------------------------------------------------- parser

class _Parser(argparse.ArgumentParser):
    """argparse with a one-line error message (no usage dump) and exit status 2."""

    def error(self, message):
        self.exit(EXIT_USAGE, f"liftcam: error: {_one_line(message)} "
                              f"(see '{self.prog} --help')\n")


def _shape(text: str) -> tuple:
    try:
        dims = tuple(int(v) for v in text.replace("x", ",").split(","))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected C,H,W (e.g. 3,224,224), got {text!r}")
    if len(dims) != 3 or min(dims) <= 0:
        raise argparse.ArgumentTypeError(f"expected three positive ints C,H,W, got {text!r}")
    return dims


def _triple(text: str) -> list:
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected three numbers a,b,c, got {text!r}")
    if len(vals) != 3:
        raise argparse.ArgumentTypeError(f"expected three numbers a,b,c, got {text!r}")
    return vals


def _hw(text: str) -> list:
    try:
        vals = [int(v) for v in text.replace("x", ",").split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected H,W, got {text!r}")
    if len(vals) == 1:
        vals = vals * 2
    if len(vals) != 2 or min(vals) <= 0:
        raise argparse.ArgumentTypeError(f"expected two positive ints H,W, got {text!r}")
    return vals


def _positive(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    if v < 1:
        raise argparse.ArgumentTypeError(f"expected a positive int, got {text!r}")
    return v


def _methods(text: str) -> list:
    out = []
    for m in text.split(","):
        m = m.strip().lower()
        if m == "all":
            out += [x for x in METHOD_NAMES if x != "cam"]
            continue
        if m not in METHOD_NAMES:
            close = difflib.get_close_matches(m, METHOD_NAMES, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise argparse.ArgumentTypeError(
                f"unknown method {m!r}{hint}; choose from {', '.join(METHOD_NAMES)} or 'all'")
        out.append(m)
    return out


def build_parser() -> argparse.ArgumentParser:
    p = _Parser(prog="liftcam",
                description="LIFT-CAM and the CAM family on ONNX Runtime: export a CNN "
                            "classifier to a bundle, then explain images with it.",
                epilog="exit status: 0 ok, 1 error, 2 bad command line, 3 some inputs could "
                       "not be read. Run 'liftcam COMMAND --help' for a command's options.")
    p.add_argument("--version", action="version", version=f"liftcam {__version__}")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    # demo -------------------------------------------------------------------------
    d = sub.add_parser("demo", help="explain the built-in sample images with every method",
                       description="Explain the bundled sample images (procedural shapes) with "
                                   "every CAM method for both demo models; writes a grid PNG per "
                                   "model and per-image overlays. Needs no torch.")
    d.add_argument("-o", "--out", default="liftcam-demo", metavar="DIR",
                   help="output folder (default: %(default)s/)")
    d.add_argument("--methods", type=_methods, default=None, metavar="M[,M...]",
                   help="methods to run (default: all; 'cam' only for linear heads)")
    d.add_argument("--shap-samples", type=_positive, default=None, metavar="N",
                   help="permutations per image for 'shap' (default: 128)")
    d.add_argument("--tile", type=_positive, default=None, metavar="PX",
                   help="tile size of the grid in pixels (default: 128)")
    d.add_argument("--providers", nargs="+", default=None, metavar="P",
                   help="ONNX Runtime execution providers, e.g. cuda cpu (default: cpu)")
    d.set_defaults(func=cmd_demo)

    # explain ------------------------------------------------------------------------
    e = sub.add_parser("explain", help="explain images with a bundle",
                       description="Explain images with a bundle. INPUTS are image files, "
                                   "folders (searched recursively for image files) and glob "
                                   "patterns. Writes <stem>_<method>.png overlays at each "
                                   "image's own size, the maps, and results.jsonl (one line per "
                                   "image and method). Unreadable images are named on stderr and "
                                   "skipped (exit status 3).")
    e.add_argument("bundle", metavar="BUNDLE", help="a bundle directory (*.liftcam)")
    e.add_argument("inputs", nargs="+", metavar="INPUTS", help="image files, folders, globs")
    e.add_argument("-o", "--out", required=True, metavar="DIR", help="output folder")
    e.add_argument("-m", "--method", type=_methods, default=["liftcam"], metavar="M[,M...]",
                   help="CAM method(s), comma-separated: " + ", ".join(METHOD_NAMES) +
                        " or 'all' (default: liftcam)")
    e.add_argument("-t", "--target", default=None, metavar="T",
                   help="class to explain: an index or a label (default: the predicted class)")
    e.add_argument("-b", "--batch-size", type=_positive, default=8, metavar="B",
                   help="images per engine pass (default: %(default)s)")
    e.add_argument("--providers", nargs="+", default=None, metavar="P",
                   help="ONNX Runtime execution providers, e.g. cuda cpu (default: cpu)")
    e.add_argument("--threads", type=_positive, default=None, metavar="N",
                   help="intra-op threads per session (default: ONNX Runtime's)")
    e.add_argument("--maps", choices=("npy", "npz", "none"), default="npy",
                   help="save the maps (float32 in [0,1], the model's input size) as one .npy "
                        "per image, one maps.npz, or not at all (default: %(default)s)")
    e.add_argument("-k", "--top-k", type=_positive, default=5, metavar="K",
                   help="classes to list per image in results.jsonl (default: %(default)s)")
    e.add_argument("--alpha", type=float, default=0.5,
                   help="heatmap weight in the overlay, 0..1 (default: %(default)s)")
    e.add_argument("--shap-samples", type=_positive, default=None, metavar="N",
                   help="permutations per image for 'shap' when the layer has > 16 channels "
                        "(default: 64)")
    e.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    e.set_defaults(func=cmd_explain)

    # info ---------------------------------------------------------------------------
    i = sub.add_parser("info", help="show what a bundle holds (after verifying it)",
                       description="Verify a bundle (manifest, sha256 of every file) and print "
                                   "its input, preprocessing, target layer, classes and files.")
    i.add_argument("bundle", metavar="BUNDLE")
    i.add_argument("--json", action="store_true", help="print the manifest as JSON")
    i.add_argument("--no-verify", action="store_true", help="skip the sha256 check")
    i.set_defaults(func=cmd_info)

    # export -------------------------------------------------------------------------
    x = sub.add_parser("export", help="export a model to a bundle (needs torch or onnx)",
                       description="Export a classifier to a bundle: a torchvision "
                                   "architecture (--arch, optional --weights), a factory "
                                   "function (--factory module:function) or an ONNX file "
                                   "(--onnx).")
    src = x.add_mutually_exclusive_group(required=True)
    src.add_argument("--arch", metavar="NAME", help="torchvision architecture, e.g. resnet50")
    src.add_argument("--factory", metavar="MODULE:FUNCTION",
                     help="a function that returns a torch.nn.Module (the current folder is "
                          "on the import path)")
    src.add_argument("--onnx", metavar="FILE", help="an ONNX classifier")
    x.add_argument("--weights", metavar="FILE",
                   help="a state_dict file for --arch/--factory (torch.load weights_only=True; "
                        "default: random weights, with a warning)")
    x.add_argument("--num-classes", type=_positive, default=None, metavar="N",
                   help="number of classes for --arch (default: 1000) or --factory")
    x.add_argument("--layer", metavar="NAME",
                   help="target layer: module name (PyTorch) or tensor name (ONNX); default: "
                        "the last activation before pooling (see 'liftcam layers')")
    x.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                   help="input shape (default: 3,224,224; ONNX: the model's own)")
    x.add_argument("--labels", metavar="FILE", help="class labels, one per line")
    x.add_argument("--mean", type=_triple, default=None, metavar="R,G,B",
                   help="normalisation mean on [0,1] pixels (default: ImageNet's)")
    x.add_argument("--std", type=_triple, default=None, metavar="R,G,B",
                   help="normalisation std on [0,1] pixels (default: ImageNet's)")
    x.add_argument("--resize-shorter", type=_positive, default=None, metavar="S",
                   help="resize the shorter side to S, keeping the aspect ratio (use with "
                        "--center-crop); default: resize to exactly H,W")
    x.add_argument("--center-crop", type=_hw, default=None, metavar="H,W",
                   help="cut the centre H,W after resizing (default: none)")
    x.add_argument("--bgr", action="store_true", help="the model expects BGR channel order")
    x.add_argument("-o", "--out", default=None, metavar="OUT",
                   help="bundle directory (default: <name>.liftcam)")
    x.add_argument("--overwrite", action="store_true", help="replace an existing bundle")
    x.set_defaults(func=cmd_export)

    # layers -------------------------------------------------------------------------
    ly = sub.add_parser("layers", help="list the layers a model can be cut at",
                        description="List the candidate target layers of a model (torchvision "
                                    "architecture name, module:function, or .onnx file) with "
                                    "their activation shapes; the default comes first.")
    ly.add_argument("model", metavar="MODEL", help="arch name, module:function or model.onnx")
    ly.add_argument("--input-shape", type=_shape, default=None, metavar="C,H,W",
                    help="input shape (default: 3,224,224; ONNX: the model's own)")
    ly.add_argument("--num-classes", type=_positive, default=None, metavar="N")
    ly.add_argument("--all", action="store_true",
                    help="also list layers a skip connection crosses (not cuttable)")
    ly.set_defaults(func=cmd_layers)
    return p


# ----------------------------------------------------------------------------- progress

class Progress:
    """A one-line progress bar on stderr; silent unless stderr is a terminal."""

    def __init__(self, total: int, label: str = "", stream=None, enabled=None):
        self.stream = stream or sys.stderr
        self.total, self.label, self.done = max(int(total), 0), label, 0
        if enabled is None:
            enabled = hasattr(self.stream, "isatty") and self.stream.isatty()
        self.enabled = bool(enabled) and self.total > 0
        self.t0 = time.perf_counter()
        self._drawn = False

    def update(self, n: int = 1, note: str = "") -> None:
        self.done = min(self.done + n, self.total)
        if not self.enabled:
            return
        frac = self.done / self.total
        rate = self.done / max(time.perf_counter() - self.t0, 1e-9)
        bar = "#" * int(30 * frac)
        line = (f"{self.label} [{bar:<30}] {self.done}/{self.total} "
                f"{rate:.1f}/s {note[:30]:<30}")
        self.stream.write("\r" + line[:self._width() - 1])
        self.stream.flush()
        self._drawn = True

    @staticmethod
    def _width() -> int:
        import shutil

        return max(20, shutil.get_terminal_size((100, 24)).columns)

    def write(self, msg: str) -> None:
        """Print a message line without garbling the bar."""
        if self._drawn:
            self.stream.write("\r" + " " * (self._width() - 1) + "\r")
        self.stream.write(msg + "\n")
        self.stream.flush()
        if self._drawn:
            self.update(0)

    def close(self) -> None:
        if self._drawn:
            self.stream.write("\n")
            self.stream.flush()
            self._drawn = False


# ----------------------------------------------------------------------------- helpers

def _load_bundle(path, verify=True):
    from liftcam.engine.bundle import load_bundle

    return load_bundle(path, verify=verify)


def _resolve_target(target, bundle):
    """``--target``: None, an index, or a label of the bundle."""
    if target is None:
        return None
    C, labels = bundle.num_classes, bundle.labels or []
    try:
        t = int(target)
    except ValueError:
        if target in labels:
            return labels.index(target)
        close = difflib.get_close_matches(target, labels, n=3)
        hint = f"; did you mean {close}?" if close else ""
        what = "a class index" if not labels else "a class index or one of the bundle's labels"
        raise CliError(f"--target {target!r} is not {what}{hint}")
    if not 0 <= t < C:
        raise CliError(f"--target {t} is out of range: the model has {C} classes (0..{C - 1})")
    return t


def collect_inputs(specs, exclude=None):
    """Expand files, folders (recursive, image extensions) and globs.

    Returns ``(files, missing)``: the files in order without duplicates, and the specs that
    matched nothing. Explicit files are taken whatever their extension; folder and glob matches
    only with an image extension. Paths under ``exclude`` (the output folder) are skipped."""
    exclude = Path(exclude).resolve() if exclude is not None else None
    seen, files, missing = set(), [], []

    def add(p: Path, check_ext: bool):
        if check_ext and p.suffix.lower() not in IMAGE_EXTENSIONS:
            return
        r = p.resolve()
        if exclude is not None and (r == exclude or exclude in r.parents):
            return
        if r not in seen:
            seen.add(r)
            files.append(p)

    def add_dir(d: Path):
        for f in sorted(d.rglob("*")):
            if f.is_file() and not any(part.startswith(".") for part in f.relative_to(d).parts):
                add(f, True)

    for spec in specs:
        p = Path(spec)
        if p.is_dir():
            add_dir(p)
        elif p.is_file():
            add(p, False)
        elif glob.has_magic(spec):
            matches = sorted(glob.glob(spec, recursive=True))
            for m in matches:
                mp = Path(m)
                if mp.is_dir():
                    add_dir(mp)
                elif mp.is_file():
                    add(mp, True)
            if not matches:
                missing.append(spec)
        else:
            missing.append(spec)
    return files, missing


def _unique_stems(files) -> list:
    """Output stems: the file's stem, made unique with -2, -3, ... where stems collide
    (compared case-insensitively, for case-insensitive file systems)."""
    taken, out = set(), []
    for f in files:
        stem = f.stem or "image"
        cand, n = stem, 1
        while cand.lower() in taken:
            n += 1
            cand = f"{stem}-{n}"
        taken.add(cand.lower())
        out.append(cand)
    return out


def map_to_original(cam, size_wh, preprocessing):
    """A map over the model input, placed on the original image of ``size_wh`` = (w, h).

    With a plain ``resize`` the map is stretched over the whole image; with
    ``resize_shorter``/``center_crop`` it covers the region of the image the model saw (the
    rest is 0)."""
    import numpy as np

    from liftcam.engine.images import resize_map, validate_preprocessing

    p = validate_preprocessing(preprocessing)
    w, h = int(size_wh[0]), int(size_wh[1])
    if p["center_crop"] is None and p["resize_shorter"] is None:
        return resize_map(cam, (h, w))
    if p["resize"] is not None:
        rh, rw = p["resize"]
    elif p["resize_shorter"] is not None:
        s = p["resize_shorter"]
        short, long = (w, h) if w <= h else (h, w)
        new_long = int(s * long / short)
        rw, rh = (s, new_long) if w <= h else (new_long, s)
    else:
        rw, rh = w, h
    ch, cw = p["center_crop"] if p["center_crop"] is not None else (rh, rw)
    # the crop window in resized coordinates: [y0, y0 + ch) x [x0, x0 + cw)
    y0 = int(round((rh - ch) / 2.0)) if ch <= rh else -((ch - rh) // 2)
    x0 = int(round((rw - cw) / 2.0)) if cw <= rw else -((cw - rw) // 2)
    cam = np.asarray(cam, np.float32)
    mh, mw = cam.shape

    def axis_matrix(n_out, scale, origin, n_win, n_map):
        """(n_out, n_map) bilinear weights from map samples to original pixels."""
        m = np.zeros((n_out, n_map), np.float32)
        for u in range(n_out):
            win = (u + 0.5) * scale - origin            # position in the crop window
            if win < 0 or win > n_win:
                continue
            s = win * (n_map / n_win) - 0.5              # map sample coordinate
            s = min(max(s, 0.0), n_map - 1.0)
            i0 = int(np.floor(s))
            i1 = min(i0 + 1, n_map - 1)
            f = s - i0
            m[u, i0] += 1 - f
            m[u, i1] += f
        return m

    Ry = axis_matrix(h, rh / h, y0, ch, mh)
    Rx = axis_matrix(w, rw / w, x0, cw, mw)
    return np.clip(Ry @ cam @ Rx.T, 0.0, 1.0).astype(np.float32)


# ----------------------------------------------------------------------------- commands

def cmd_demo(args) -> int:
    from liftcam.cli import demo

    t0 = time.perf_counter()
    kwargs = {}
    if args.shap_samples is not None:
        kwargs["shap_samples"] = args.shap_samples
    if args.tile is not None:
        kwargs["tile"] = args.tile
    methods = None if args.methods is None else list(dict.fromkeys(args.methods))
    summary = demo.run_demo(args.out, methods=methods, providers=args.providers,
                            log=lambda s: _say(s, sys.stdout), **kwargs)
    for name, m in summary["models"].items():
        _say(f"  {name}: grid {m['grid']}, overlays in {m['overlays']}/", sys.stdout)
    _say(f"wrote {args.out}/ (summary.json) in {time.perf_counter() - t0:.1f}s", sys.stdout)
    return EXIT_OK


def cmd_explain(args) -> int:
    import numpy as np

    from liftcam.engine.explainer import Explainer
    from liftcam.engine.images import (load_image, overlay, preprocess, save_npy_atomic,
                                       save_png_atomic, write_bytes_atomic)

    t_start = time.perf_counter()
    bundle = _load_bundle(args.bundle)
    methods = list(dict.fromkeys(args.method))
    if "cam" in methods and not bundle.manifest.get("head", {}).get("linear"):
        raise CliError("method 'cam' needs a linear head (global average pooling then one dense "
                       "layer); this bundle's head is not. Use 'liftcam', which equals CAM on "
                       "linear heads.")
    if not 0.0 <= args.alpha <= 1.0:
        raise CliError(f"--alpha must be in [0, 1], got {args.alpha}")
    target = _resolve_target(args.target, bundle)
    explainer = Explainer(bundle, providers=args.providers, threads=args.threads)
    pre = bundle.manifest["preprocessing"]
    labels = bundle.labels
    out = Path(args.out)
    files, missing = collect_inputs(args.inputs, exclude=out)
    if not files:
        raise CliError("no input images found: " + (
            f"nothing matches {', '.join(missing)}" if missing else
            f"no image files ({', '.join(IMAGE_EXTENSIONS[:6])}, ...) in "
            + ", ".join(args.inputs)))
    failures = [(m, "no such file, folder or matching pattern") for m in missing]
    for name, why in failures:
        _say(f"liftcam: {name}: {why}")
    out.mkdir(parents=True, exist_ok=True)
    stems = _unique_stems(files)
    records, npz = [], {}
    k = min(args.top_k, bundle.num_classes)
    bar = Progress(len(files), "explain", enabled=None if not args.quiet else False)
    try:
        for s in range(0, len(files), args.batch_size):
            batch = list(zip(files[s:s + args.batch_size], stems[s:s + args.batch_size]))
            loaded = []
            for path, stem in batch:
                try:
                    loaded.append((path, stem, load_image(path)))
                except InputError as exc:
                    failures.append((str(path), str(exc)))
                    bar.write(f"liftcam: skipped: {_one_line(exc)}")
            if loaded:
                x = preprocess([img for _, _, img in loaded], pre)
                for method in methods:
                    opts = {"n_samples": args.shap_samples} \
                        if method == "shap" and args.shap_samples else {}
                    e = explainer.explain(x, targets=target, method=method, progress=False,
                                          **opts)
                    probs = e.probabilities()
                    for j, (path, stem, img) in enumerate(loaded):
                        name = f"{stem}_{method}"
                        full = map_to_original(e.maps[j], img.size, pre)
                        save_png_atomic(overlay(img, full, alpha=args.alpha),
                                        out / f"{name}.png")
                        if args.maps == "npy":
                            save_npy_atomic(e.maps[j].astype(np.float32), out / f"{name}.npy")
                            map_ref = f"{name}.npy"
                        elif args.maps == "npz":
                            npz[name] = e.maps[j].astype(np.float32)
                            map_ref = f"maps.npz:{name}"
                        else:
                            map_ref = None
                        order = np.argsort(-probs[j], kind="stable")[:k]
                        t = int(e.targets[j])
                        records.append({
                            "file": str(path), "method": method, "overlay": f"{name}.png",
                            "map": map_ref, "size": list(img.size),
                            "target": t, "target_label": labels[t] if labels else None,
                            "target_probability": float(probs[j, t]),
                            "target_logit": float(e.logits[j, t]),
                            "predicted": int(order[0]),
                            "top_k": [{"class": int(c),
                                       "label": labels[c] if labels else None,
                                       "probability": float(probs[j, c])} for c in order],
                        })
            bar.update(len(batch), batch[-1][0].name)
    finally:
        bar.close()
        if npz:
            buf = io.BytesIO()
            np.savez_compressed(buf, **npz)
            write_bytes_atomic(out / "maps.npz", buf.getvalue())
        if records:
            text = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            write_bytes_atomic(out / "results.jsonl", text.encode("utf-8"))
    n_ok = len({r["file"] for r in records})
    if not args.quiet:
        _say(f"explained {n_ok} image(s) with {', '.join(methods)} in "
             f"{time.perf_counter() - t_start:.1f}s -> {out}/ (overlays, "
             f"{'maps, ' if args.maps != 'none' else ''}results.jsonl)", sys.stderr)
    if failures:
        _say(f"liftcam: {len(failures)} input(s) failed: " +
             ", ".join(name for name, _ in failures[:10]) + (" ..." if len(failures) > 10 else ""))
        if n_ok == 0:
            _say("liftcam: error: no image could be explained")
        return EXIT_PARTIAL
    return EXIT_OK


def _fmt_bytes(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024


def cmd_info(args) -> int:
    bundle = _load_bundle(args.bundle, verify=not args.no_verify)
    m = bundle.manifest
    if args.json:
        _say(json.dumps(m, indent=2), sys.stdout)
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
        kind = "linear (GAP + dense): cam available" if head.get("linear") else "non-linear"
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
        lines.append(f"  {name:<28} {_fmt_bytes(size):>10}  sha256 {entry['sha256'][:16]}…")
    lines.append(f"  {'total':<28} {_fmt_bytes(total):>10}")
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
    _say("\n".join(lines), sys.stdout)
    return EXIT_OK


def _need_build_extras(what: str, exc: ImportError):
    return CliError(f"{what} needs the build-time extras ({exc.name or exc}: not installed); "
                    "install them with: pip install 'liftcam[export]'")


def _torchvision_model(arch: str, num_classes):
    try:
        import torchvision
    except ImportError as exc:
        raise _need_build_extras(f"--arch {arch}", exc) from None
    names = torchvision.models.list_models(module=torchvision.models)
    if arch not in names:
        close = difflib.get_close_matches(arch, names, n=5, cutoff=0.5)
        hint = f" Did you mean {', '.join(close)}?" if close else ""
        raise CliError(f"unknown torchvision classification architecture {arch!r}.{hint} "
                       f"({len(names)} available, e.g. resnet50, vgg16, densenet121, "
                       "mobilenet_v3_large)")
    kwargs = {"weights": None}
    if num_classes is not None:
        kwargs["num_classes"] = num_classes
    if arch.startswith("inception") or arch.startswith("googlenet"):
        kwargs["aux_logits"] = False
        kwargs["init_weights"] = False
    try:
        return torchvision.models.get_model(arch, **kwargs)
    except Exception as exc:
        raise CliError(f"could not build {arch}: {_one_line(exc)}") from None


def _factory_model(spec: str, num_classes):
    import importlib

    if ":" not in spec:
        raise CliError(f"--factory must be module:function, got {spec!r}")
    mod_name, fn_name = spec.split(":", 1)
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        mod = importlib.import_module(mod_name)
    except ImportError as exc:
        raise CliError(f"--factory: cannot import module {mod_name!r}: {_one_line(exc)}") \
            from None
    fn = getattr(mod, fn_name, None)
    if not callable(fn):
        raise CliError(f"--factory: {mod_name} has no function {fn_name!r}")
    try:
        model = fn(**({"num_classes": num_classes} if num_classes is not None else {}))
    except Exception as exc:
        raise CliError(f"--factory: {spec}() failed: {type(exc).__name__}: {_one_line(exc)}") \
            from None
    import torch

    if not isinstance(model, torch.nn.Module):
        raise CliError(f"--factory: {spec}() returned a {type(model).__name__}, not a "
                       "torch.nn.Module")
    return model


def _load_weights(model, path):
    import torch

    p = Path(path)
    if not p.is_file():
        raise CliError(f"weights file not found: {p}")
    try:
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:
        raise CliError(f"cannot load weights {p} (torch.load weights_only=True): "
                       f"{type(exc).__name__}: {_one_line(exc)[:300]}") from None
    for key in ("state_dict", "model_state_dict", "model"):
        if isinstance(state, dict) and isinstance(state.get(key), dict):
            state = state[key]
            break
    if not isinstance(state, dict):
        raise CliError(f"{p} holds a {type(state).__name__}, not a state_dict")
    if state and all(k.startswith("module.") for k in state):
        state = {k[len("module."):]: v for k, v in state.items()}
    own = model.state_dict()
    missing = [k for k in own if k not in state]
    unexpected = [k for k in state if k not in own]
    shapes = [f"{k} {tuple(state[k].shape)} vs {tuple(own[k].shape)}" for k in own
              if k in state and hasattr(state[k], "shape") and tuple(state[k].shape) !=
              tuple(own[k].shape)]
    if missing or unexpected or shapes:
        bits = []
        if missing:
            bits.append(f"{len(missing)} missing (e.g. {missing[:3]})")
        if unexpected:
            bits.append(f"{len(unexpected)} unexpected (e.g. {unexpected[:3]})")
        if shapes:
            bits.append(f"{len(shapes)} with other shapes (e.g. {shapes[:2]}; check "
                        "--num-classes)")
        raise CliError(f"the weights in {p} do not fit the model: " + "; ".join(bits))
    model.load_state_dict(state)
    return model


def _read_labels(path):
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CliError(f"labels file not found: {p}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"cannot read labels file {p}: {_one_line(exc)}") from None
    labels = [line.strip() for line in text.splitlines()]
    while labels and not labels[-1]:
        labels.pop()
    if not labels:
        raise CliError(f"labels file {p} is empty")
    return labels


def _torch_model(args):
    try:
        import torch  # noqa: F401
    except ImportError as exc:
        raise _need_build_extras("exporting a PyTorch model", exc) from None
    if args.arch:
        model = _torchvision_model(args.arch, args.num_classes)
        name = args.arch
    else:
        model = _factory_model(args.factory, args.num_classes)
        name = args.factory.split(":", 1)[1]
    if args.weights:
        _load_weights(model, args.weights)
    return model, name


def cmd_export(args) -> int:
    import liftcam

    t0 = time.perf_counter()
    labels = _read_labels(args.labels) if args.labels else None
    pre = {}
    if args.mean is not None:
        pre["mean"] = args.mean
    if args.std is not None:
        if min(args.std) <= 0:
            raise CliError(f"--std must be > 0, got {args.std}")
        pre["std"] = args.std
    if args.resize_shorter is not None:
        pre["resize"] = None
        pre["resize_shorter"] = args.resize_shorter
        if args.center_crop is None:
            raise CliError("--resize-shorter needs --center-crop H,W (the model input size)")
    if args.center_crop is not None:
        pre["center_crop"] = args.center_crop
        if args.resize_shorter is None:
            pre["resize"] = None
    if args.bgr:
        pre["channel_order"] = "BGR"
    if args.out and Path(args.out).exists() and not args.overwrite:
        raise CliError(f"{args.out} already exists; pass --overwrite to replace it")
    if args.onnx:
        if args.weights or args.num_classes:
            raise CliError("--weights/--num-classes apply to --arch/--factory, not --onnx")
        out = args.out or f"{Path(args.onnx).stem}.liftcam"
        try:
            path = liftcam.export_onnx(args.onnx, activation=args.layer, out_dir=out,
                                       input_shape=args.input_shape, labels=labels,
                                       preprocessing=pre or None, overwrite=args.overwrite)
        except ImportError as exc:
            raise _need_build_extras("--onnx", exc) from None
    else:
        model, name = _torch_model(args)
        if not args.weights:
            _say(f"liftcam: warning: no --weights given: exporting {name} with random weights")
        out = args.out or f"{name}.liftcam"
        if not args.out and Path(out).exists() and not args.overwrite:
            raise CliError(f"{out} already exists; pass --overwrite to replace it")
        shape = args.input_shape or (3, 224, 224)
        path = liftcam.export(model, target_layer=args.layer, input_shape=shape, out_dir=out,
                              labels=labels, preprocessing=pre or None,
                              overwrite=args.overwrite)
    if pre.get("center_crop") is not None:
        _check_crop(path, pre)
    bundle = _load_bundle(path, verify=False)
    m = bundle.manifest
    size = sum(f.stat().st_size for f in Path(path).iterdir() if f.is_file())
    _say(f"exported {path} ({_fmt_bytes(size)}) in {time.perf_counter() - t0:.1f}s: "
         f"target layer {m['target_layer']['name']}, activation "
         f"{'x'.join(str(d) for d in m['activation']['shape'][1:])}, "
         f"{m['num_classes']} classes", sys.stdout)
    return EXIT_OK


def _check_crop(path, pre):
    bundle = _load_bundle(path, verify=False)
    H, W = bundle.input_shape[1:]
    if list(pre["center_crop"]) != [H, W]:
        _say(f"liftcam: warning: --center-crop {pre['center_crop']} differs from the model "
             f"input {H}x{W}; images will be rejected")


def cmd_layers(args) -> int:
    import liftcam

    spec = args.model
    try:
        from liftcam.export.split import POOLING_OPS
    except ImportError as exc:
        raise _need_build_extras("liftcam layers", exc) from None
    if spec.lower().endswith(".onnx") or Path(spec).is_file():
        if args.num_classes:
            raise CliError("--num-classes applies to architecture names, not ONNX files")
        cands = liftcam.candidate_layers(spec, args.input_shape or (3, 224, 224))
    else:
        try:
            import torch  # noqa: F401
        except ImportError as exc:
            raise _need_build_extras("liftcam layers on a PyTorch model", exc) from None
        if ":" in spec:
            model = _factory_model(spec, args.num_classes)
        else:
            model = _torchvision_model(spec, args.num_classes)
        cands = liftcam.candidate_layers(model, args.input_shape or (3, 224, 224))
    default = next((i for i, c in enumerate(cands)
                    if c["cuttable"] and c["op"] not in POOLING_OPS
                    and c["shape"][1] * c["shape"][2] > 1), None)
    if default is not None:
        cands = [cands[default]] + cands[:default] + cands[default + 1:]
    rows = [c for j, c in enumerate(cands) if args.all or c["cuttable"]]
    if not rows:
        raise CliError(f"{spec} has no layer liftcam can cut at")
    head = ("", "layer", "shape (K,h,w)", "op", "cut", "aliases")
    table = [head]
    for j, c in enumerate(rows):
        mark = "*" if (default is not None and j == 0) else ""
        cut = "yes" if c["cuttable"] else "no (skip: " + ",".join(c["crossing"][:2]) + ")"
        table.append((mark, c["name"], "x".join(str(d) for d in c["shape"]), c["op"], cut,
                      ", ".join(c["aliases"][:3]) + (" ..." if len(c["aliases"]) > 3 else "")))
    widths = [max(len(r[i]) for r in table) for i in range(len(head))]
    for r in table:
        _say("  ".join(v.ljust(widths[i]) for i, v in enumerate(r)).rstrip(), sys.stdout)
    if default is not None:
        _say(f"* default target layer ({len(rows)} listed"
             + ("" if args.all else "; --all adds the non-cuttable ones") + ")", sys.stdout)
    return EXIT_OK


# ----------------------------------------------------------------------------- main

def main(argv=None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:           # --help, --version, usage errors
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return args.func(args)
    except LiftcamError as exc:
        _say(f"liftcam: error: {_one_line(exc)}")
        return EXIT_ERROR
    except KeyboardInterrupt:
        _say("liftcam: interrupted")
        return EXIT_INTERRUPTED
    except BrokenPipeError:
        try:
            sys.stdout = open(os.devnull, "w")
        except OSError:
            pass
        return EXIT_ERROR
    except OSError as exc:
        where = f" {exc.filename}" if exc.filename else ""
        _say(f"liftcam: error:{where}: {exc.strerror or _one_line(exc)}")
        return EXIT_ERROR
    except Exception as exc:
        if os.environ.get("LIFTCAM_DEBUG"):
            raise
        _say(f"liftcam: error: unexpected {type(exc).__name__}: {_one_line(exc)[:500]} "
             "(set LIFTCAM_DEBUG=1 for the traceback)")
        return EXIT_ERROR


if __name__ == "__main__":
    sys.exit(main())
