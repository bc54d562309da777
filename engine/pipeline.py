"""Image files in, explanations out: the one pipeline the command line, the demo and the
integrations call.

``explain_files(bundle, inputs, out_dir, methods=...)`` reads image files (folders and globs
too), explains them with one or more CAM methods and writes, per image and method, an overlay
PNG at the image's own size, the map (``.npy``, one ``maps.npz``, or none) and one line of
``results.jsonl``. The run is robust by design:

- every image is isolated: one that cannot be read, preprocessed, explained or written becomes
  an error record (and a line on stderr) and the run goes on;
- ``results.jsonl`` is written as it goes, one complete line per record, so it is valid after
  any kill; file names are recorded losslessly (undecodable bytes as JSON ``\\udcXX`` escapes,
  which ``json.loads`` + ``os.fsencode`` turn back into the original bytes);
- outputs of an earlier run in the same folder are never silently mixed with or overwritten by
  this one: without ``overwrite`` the run refuses; with it, the earlier run's files go first.
"""
from __future__ import annotations

import difflib
import json
import os
import time
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from liftcam.contract import MANIFEST
from liftcam.engine import methods as _methods
from liftcam.engine.atomic import save_npy_atomic, save_png_atomic
from liftcam.engine.errors import InputError, LiftcamError, describe
from liftcam.engine.images import DEFAULT_MAX_PIXELS, load_image, preprocess
from liftcam.engine.inputs import IMAGE_EXTENSIONS, collect_inputs, output_stems, printable
from liftcam.engine.maps import overlay, place_map
from liftcam.engine.progress import Progress

RESULTS = "results.jsonl"
MAPS_NPZ = "maps.npz"
MAP_FORMATS = ("npy", "npz", "none")
#: failures of one image that become an error record instead of ending the run
ISOLATED = (LiftcamError, OSError, MemoryError, ValueError)


@dataclass
class ImageResult:
    """One image explained by one method (what ``on_result`` receives)."""

    path: Path
    stem: str
    method: str
    image: object             # the decoded PIL image
    map: np.ndarray           # (H, W) at the model's input size, in [0, 1]
    record: dict              # the line written to results.jsonl


@dataclass
class RunSummary:
    """What :func:`explain_files` did."""

    out_dir: Path
    methods: list
    explained: int                          # images with at least one explanation
    failures: list = field(default_factory=list)    # [(input, reason)]
    seconds: float = 0.0
    method_seconds: dict = field(default_factory=dict)

    @property
    def results(self) -> Path:
        return self.out_dir / RESULTS


def resolve_methods(methods, bundle) -> list:
    """Method names (a name, ``"all"``, or a sequence of them) -> validated, de-duplicated
    names; ``all`` is every method the bundle can run (``cam`` only on linear heads)."""
    names = [methods] if isinstance(methods, str) else list(methods)
    out = []
    for name in names:
        name = str(name).strip().lower()
        expanded = _methods.available(bundle) if name == "all" else [name]
        for m in expanded:
            _methods.check_applicable(_methods.get(m), bundle)
            if m not in out:
                out.append(m)
    if not out:
        raise InputError("no method given; choose from " + ", ".join(_methods.METHODS))
    return out


def resolve_target(target, bundle):
    """``target``: None (predicted class), a class index, or one of the bundle's labels."""
    if target is None:
        return None
    C, labels = bundle.num_classes, bundle.labels or []
    if isinstance(target, str):
        if target in labels:
            return labels.index(target)
        try:
            target = int(target)
        except ValueError:
            close = difflib.get_close_matches(target, labels, n=3)
            hint = f"; did you mean {close}?" if close else ""
            what = "a class index" if not labels else \
                "a class index or one of the bundle's labels"
            raise InputError(f"target {target!r} is not {what}{hint}") from None
    if isinstance(target, bool) or not isinstance(target, (int, np.integer)):
        raise InputError(f"target must be None, an int or a label, got {target!r}")
    if not 0 <= int(target) < C:
        raise InputError(f"target {int(target)} is out of range: the model has {C} classes "
                         f"(0..{C - 1})")
    return int(target)


def _json_line(record: dict) -> bytes:
    """One JSON line; names with undecodable bytes (surrogate escapes) as \\udcXX escapes."""
    try:
        return (json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8")
    except UnicodeEncodeError:
        return (json.dumps(record, ensure_ascii=True) + "\n").encode("ascii")


class _Outputs:
    """The run's output folder: the earlier-run check, results.jsonl as it goes, maps.npz."""

    def __init__(self, out: Path, stems, methods, maps: str, overwrite: bool):
        self.out, self.maps = out, maps
        planned = [f"{s}_{m}{ext}" for s in stems for m in methods
                   for ext in (".png", ".npy" if maps == "npy" else "")]
        earlier = self._earlier_run()
        clash = sorted(set(earlier) | {n for n in planned if (out / n).exists()})
        if clash and not overwrite:
            raise InputError(
                f"{out} holds outputs of an earlier run ({', '.join(clash[:3])}"
                f"{', ...' if len(clash) > 3 else ''}); pass overwrite=True (--overwrite) to "
                "replace that run, or choose another output folder")
        for name in clash:
            try:
                (out / name).unlink()
            except FileNotFoundError:
                pass
        out.mkdir(parents=True, exist_ok=True)
        self._fd = os.open(out / RESULTS, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o666)
        self._npz = None
        if maps == "npz":
            self._npz_tmp = out / f".{MAPS_NPZ}.{os.getpid()}.tmp"
            self._npz = zipfile.ZipFile(self._npz_tmp, "w", zipfile.ZIP_DEFLATED,
                                        allowZip64=True)

    def _earlier_run(self) -> list:
        """The files an earlier run wrote here: results.jsonl, maps.npz and what it lists."""
        names = [n for n in (RESULTS, MAPS_NPZ) if (self.out / n).exists()]
        if (self.out / MANIFEST).exists():
            raise InputError(f"{self.out} is a bundle directory; choose another output folder")
        if RESULTS in names:
            with open(self.out / RESULTS, "rb") as f:
                for line in f:
                    try:
                        rec = json.loads(line)
                    except ValueError:
                        continue
                    for key in ("overlay", "map"):
                        v = rec.get(key) if isinstance(rec, dict) else None
                        if isinstance(v, str) and v and "/" not in v and "\\" not in v \
                                and not v.startswith(".") and (self.out / v).is_file():
                            names.append(v)
        return names

    def record(self, rec: dict) -> None:
        os.write(self._fd, _json_line(rec))     # one write per line: complete or absent

    def save_map(self, name: str, cam: np.ndarray):
        if self.maps == "npy":
            save_npy_atomic(cam.astype(np.float32), self.out / f"{name}.npy")
            return f"{name}.npy"
        if self.maps == "npz":
            with self._npz.open(f"{name}.npy", "w", force_zip64=True) as f:
                np.lib.format.write_array(f, cam.astype(np.float32), allow_pickle=False)
            return f"{MAPS_NPZ}:{name}"
        return None

    def close(self) -> None:
        os.fsync(self._fd)
        os.close(self._fd)
        if self._npz is not None:
            self._npz.close()
            os.replace(self._npz_tmp, self.out / MAPS_NPZ)


def _record(path, stem, method, img, e, j, k, labels, map_ref) -> dict:
    probs = e.probabilities()[j]
    order = np.argsort(-probs, kind="stable")[:k]
    t = int(e.targets[j])
    return {
        "file": os.fsdecode(path), "method": method, "overlay": f"{stem}_{method}.png",
        "map": map_ref, "size": list(img.size),
        "target": t, "target_label": labels[t] if labels else None,
        "target_probability": float(probs[t]), "target_logit": float(e.logits[j, t]),
        "predicted": int(order[0]),
        "top_k": [{"class": int(c), "label": labels[c] if labels else None,
                   "probability": float(probs[c])} for c in order],
    }


def explain_files(bundle, inputs, out_dir, methods=("liftcam",), target=None, *,
                  batch_size: int = 8, maps: str = "npy", top_k: int = 5, alpha: float = 0.5,
                  overwrite: bool = False, options=None, max_pixels=DEFAULT_MAX_PIXELS,
                  providers=None, threads=None, explainer=None, progress=True,
                  on_result=None, log=None) -> RunSummary:
    """Explain image files with a bundle and write the results to ``out_dir``.

    ``bundle``: a bundle path or :class:`~liftcam.engine.bundle.Bundle` (or pass a ready
    ``explainer``). ``inputs``: image files, folders (recursive) and glob patterns.
    ``methods``: a name, ``"all"`` or a list. ``target``: None (predicted), a class index or a
    label. ``maps``: "npy", "npz" or "none". ``options``: per-method options, e.g.
    ``{"shap": {"n_samples": 64}}``. ``max_pixels``: refuse larger images (None: no cap).
    ``progress``: True (a bar on a terminal, a line every 10 s elsewhere), False, or a
    :class:`~liftcam.engine.progress.Progress`. ``on_result(ImageResult)``: called for each
    image and method. ``log(msg)``: where per-image errors are reported (default stderr
    through the progress).
    """
    from liftcam.engine.explainer import Explainer

    t_start = time.perf_counter()
    if explainer is None:
        explainer = Explainer(bundle, providers=providers, threads=threads)
    bundle = explainer.bundle
    methods = resolve_methods(methods, bundle)
    target = resolve_target(target, bundle)
    options = dict(options or {})
    if maps not in MAP_FORMATS:
        raise InputError(f"maps must be one of {MAP_FORMATS}, got {maps!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InputError(f"batch_size must be a positive int, got {batch_size!r}")
    if not 0.0 <= float(alpha) <= 1.0:
        raise InputError(f"alpha must be in [0, 1], got {alpha}")
    out = Path(out_dir)
    files, missing = collect_inputs(inputs, exclude=out)
    if not files:
        raise InputError("no input images found: " + (
            f"nothing matches {', '.join(map(printable, missing))}" if missing else
            f"no image files ({', '.join(IMAGE_EXTENSIONS[:6])}, ...) in "
            + ", ".join(map(printable, inputs))))
    stems = output_stems(files)
    outputs = _Outputs(out, stems, methods, maps, overwrite)
    N, K = len(files), bundle.activation_shape[0]
    steps = sum(1 + _methods.get(m).count(1, K, **options.get(m, {})) for m in methods)
    bar = progress if isinstance(progress, Progress) else \
        Progress(N * steps, "explain", enabled=bool(progress))
    say = log or bar.write
    summary = RunSummary(out, methods, 0, [], method_seconds={m: 0.0 for m in methods})
    ok = set()

    def fail(name, why, method=None):
        summary.failures.append((os.fsdecode(name), why))
        rec = {"file": os.fsdecode(name), "error": why}
        if method:
            rec["method"] = method
        outputs.record(rec)
        say(f"liftcam: skipped {printable(name)}: {why}")

    for name in missing:
        fail(name, "no such file, folder or matching pattern")
    pre, labels, k = bundle.manifest["preprocessing"], bundle.labels, min(top_k, bundle.num_classes)
    try:
        for s in range(0, N, batch_size):
            loaded = []
            for path, stem in zip(files[s:s + batch_size], stems[s:s + batch_size]):
                try:
                    img = load_image(path, max_pixels=max_pixels)
                    loaded.append((path, stem, img, preprocess([img], pre, bundle.layout)))
                except ISOLATED as exc:
                    fail(path, describe(exc))
                    bar.update(steps)
            for method in methods:
                t0 = time.perf_counter()
                for j, path, stem, img, e in explain_isolated(
                        explainer, loaded, method, target, options.get(method, {}), bar, fail):
                    try:
                        name = f"{stem}_{method}"
                        save_png_atomic(overlay(img, place_map(e.maps[j], img.size, pre),
                                                alpha=alpha), out / f"{name}.png")
                        rec = _record(path, stem, method, img, e, j, k, labels,
                                      outputs.save_map(name, e.maps[j]))
                        outputs.record(rec)
                        ok.add(path)
                        if on_result is not None:
                            on_result(ImageResult(path, stem, method, img, e.maps[j], rec))
                    except ISOLATED as exc:
                        fail(path, f"{type(exc).__name__}: {describe(exc)}", method)
                    bar.update(1)
                summary.method_seconds[method] += time.perf_counter() - t0
    finally:
        bar.close()
        outputs.close()
    summary.explained = len(ok)
    summary.seconds = time.perf_counter() - t_start
    return summary


def explain_isolated(explainer, loaded, method, target, opts, bar, fail):
    """Yield ``(row, path, stem, image, explanation)`` for ``loaded`` = ``[(path, stem, image,
    x (1,C,H,W))]``: the batch in one engine call or, if that fails, image by image, so only a
    bad image is lost (reported through ``fail(path, why, method)``; ``bar.update(n)`` gets the
    progress). Shared by :func:`explain_files` and ``liftcam.integrations.ray``."""
    if not loaded:
        return
    try:
        e = explainer.explain(np.concatenate([x for *_, x in loaded]), targets=target,
                              method=method, progress=bar.update, **opts)
    except ISOLATED as exc:
        if len(loaded) == 1:
            fail(loaded[0][0], f"{method}: {describe(exc)}", method)
            bar.update(1)
            return
        for item in loaded:
            yield from explain_isolated(explainer, [item], method, target, opts, bar, fail)
        return
    for j, (path, stem, img, _) in enumerate(loaded):
        yield j, path, stem, img, e
