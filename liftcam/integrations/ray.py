"""Explain image datasets with Ray Data: ``explain_images(source, bundle) -> ray.data.Dataset``.

Two stages. Decoding and preprocessing run as Ray tasks (``map_batches`` with a function:
:func:`liftcam.engine.images.load_image` / ``decode_image`` and ``preprocess``, the
bundle's own preprocessing); explaining runs in a pool of ``concurrency`` actors, each of which
loads the bundle once (``map_batches`` with a callable class around one
:class:`~liftcam.engine.explainer.Explainer`) and explains each batch with the pipeline's
per-image isolation (:func:`liftcam.engine.pipeline.explain_isolated`).

Output columns (one row per image and method): ``path``, ``predicted``, ``target``,
``target_label``, ``probability`` (softmax of the target class), ``map`` (float16, the model's
input size, in [0, 1]), ``method`` and ``error``. An image that cannot be read or explained
becomes a row whose ``error`` says why and whose other columns (``path`` and, for a failed
method, ``method`` aside) are null; the job itself does not fail.

Ray is imported only inside the functions: without it, calling them raises
:class:`~liftcam.integrations.MissingExtra` ("pip install 'liftcam[ray]'").
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from liftcam.engine.errors import InputError
from liftcam.engine.images import DEFAULT_MAX_PIXELS
from liftcam.integrations import require

__all__ = ["explain_images", "explain_to_parquet", "COLUMNS"]

COLUMNS = ("path", "predicted", "target", "target_label", "probability", "map", "method",
           "error")
DECODE_CPUS = 0.25          # logical CPUs per decode task
HEADROOM_CPUS = 1.0         # left to the tasks before the actors (decode, the source's reads)


def _ray():
    require("ray.data", "ray", "liftcam.integrations.ray")
    require("pyarrow", "ray", "liftcam.integrations.ray")
    import ray

    return ray


def explain_images(source, bundle, method="liftcam", batch_size: int = 32, concurrency: int = 2,
                   target=None, *, options=None, max_pixels=DEFAULT_MAX_PIXELS,
                   providers=None, threads=None, num_cpus: float = 1.0, num_gpus: float = 0):
    """Explain images with a bundle on Ray; returns a lazy ``ray.data.Dataset`` (see the module
    docstring for its columns).

    ``source``: a list of image paths, folders or globs (as ``liftcam explain`` takes them; a
    path that matches nothing becomes an error row; rows carry absolute paths), one folder or
    glob, or a
    ``ray.data.Dataset`` with a ``path`` column and/or an ``image`` column of encoded bytes.
    ``bundle``: a bundle directory, readable at the same path on every node. ``method``: a
    name, ``"all"`` or a list (one row per image and method). ``target``: None (the predicted
    class), an index or a label. ``batch_size``: images per engine call. ``concurrency``:
    explaining actors. ``num_cpus``/``num_gpus``: reserved per actor (``providers=["cuda"]``
    with ``num_gpus=1`` on GPU nodes); ``threads``: ONNX Runtime intra-op threads per actor
    (default: ``num_cpus`` rounded, at least 1). When the cluster has fewer CPUs than the
    actors ask for plus one for the tasks upstream of them (decoding, the source's own
    reads), the actors' share is scaled down to fit, so they cannot starve those tasks.
    """
    ray = _ray()
    from liftcam.engine import methods as _methods
    from liftcam.engine.bundle import Bundle, load_bundle
    from liftcam.engine.pipeline import resolve_methods, resolve_target

    b = bundle if isinstance(bundle, Bundle) else load_bundle(bundle)
    methods = resolve_methods(method, b)
    target = resolve_target(target, b)
    options = dict(options or {})
    for m in methods:
        unknown = set(options.get(m, {})) - set(_methods.get(m).options)
        if unknown:
            raise InputError(f"unknown option(s) {sorted(unknown)} for method {m!r}")
    for name, v in (("batch_size", batch_size), ("concurrency", concurrency)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InputError(f"{name} must be a positive int, got {v!r}")
    if not ray.is_initialized():
        ray.init()
    threads = threads or max(1, int(round(num_cpus)))
    total = ray.cluster_resources().get("CPU", 0)
    if total and concurrency * num_cpus + HEADROOM_CPUS > total:
        num_cpus = max(0.05, (total - HEADROOM_CPUS) / concurrency)
    ds = _source(source, ray, batch_size)
    decoded = ds.map_batches(_decode, batch_size=batch_size, batch_format="numpy",
                             num_cpus=DECODE_CPUS,
                             fn_kwargs={"preprocessing": b.manifest["preprocessing"],
                                        "shape": tuple(b.input_shape),
                                        "layout": b.layout, "max_pixels": max_pixels})
    return decoded.map_batches(
        _Explain, batch_size=batch_size, batch_format="numpy",
        compute=ray.data.ActorPoolStrategy(size=concurrency), num_cpus=num_cpus,
        num_gpus=num_gpus,
        fn_constructor_kwargs={"bundle": str(Path(b.path).resolve()), "methods": methods,
                               "target": target, "options": options, "providers": providers,
                               "threads": threads})


def _source(source, ray, batch_size):
    """The input as a Dataset with a ``path`` and/or an ``image`` (bytes) column."""
    if isinstance(source, ray.data.Dataset):
        names = source.schema().names
        if "path" not in names and "image" not in names:
            raise InputError(f"the dataset needs a 'path' or an 'image' (bytes) column; it "
                             f"has {names}")
        return source          # _decode reads those two columns only
    from liftcam.engine.inputs import collect_inputs

    specs = [source] if isinstance(source, (str, os.PathLike)) else list(source)
    files, missing = collect_inputs(specs)
    # absolute: Ray's workers do not share the driver's working directory
    items = [{"path": os.path.abspath(os.fsdecode(p))} for p in [*files, *missing]]
    if not items:
        raise InputError(f"no input images found in {', '.join(map(str, specs))}")
    blocks = max(1, -(-len(items) // batch_size))
    return ray.data.from_items(items, override_num_blocks=blocks)


def _decode(batch, preprocessing, shape, layout, max_pixels):
    """Decode + preprocess one batch: ``path``, ``x`` (N,C,H,W) float32 (zeros where the image
    failed) and ``error`` (None or why)."""
    import pyarrow as pa
    from ray.data.extensions import ArrowTensorArray

    from liftcam.engine.errors import describe
    from liftcam.engine.images import decode_image, load_image, preprocess
    from liftcam.engine.pipeline import ISOLATED

    paths, images = batch.get("path"), batch.get("image")
    n = len(paths if paths is not None else images)
    names = [None if paths is None or paths[i] is None else str(paths[i]) for i in range(n)]
    x = np.zeros((n, *shape), np.float32)
    errors = [None] * n
    for i, name in enumerate(names):
        try:
            data = None if images is None else images[i]
            if data is not None:
                what = f"image {name!r}" if name is not None else "image bytes"
                img = decode_image(data, name=what, max_pixels=max_pixels)
            elif name is not None:
                img = load_image(name, max_pixels=max_pixels)
            else:
                raise InputError("the row has neither image bytes nor a path")
            x[i] = preprocess([img], preprocessing, layout)[0]
        except ISOLATED as exc:
            errors[i] = describe(exc)
    return pa.table({"path": pa.array([_text(n) for n in names], pa.string()),
                     "x": ArrowTensorArray.from_numpy(x),
                     "error": pa.array(errors, pa.string())})


def _text(name):
    """A path as valid UTF-8 for Arrow (undecodable bytes of a file name become U+FFFD)."""
    if name is None:
        return None
    return str(name).encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class _Silent:
    def update(self, n=1, note=""):
        pass


class _Explain:
    """One actor: loads the bundle once, explains batches of decoded images."""

    def __init__(self, bundle, methods, target, options, providers, threads):
        from liftcam.engine.explainer import Explainer

        self.explainer = Explainer(bundle, providers=providers, threads=threads)
        self.labels = self.explainer.bundle.labels
        self.methods, self.target, self.options = methods, target, options

    def __call__(self, batch):
        from liftcam.engine.pipeline import explain_isolated

        rows = []
        paths, x, errors = batch["path"], batch["x"], batch["error"]
        loaded = []
        for i, path in enumerate(paths):
            if errors[i] is None:
                loaded.append((path, None, None, x[i:i + 1]))
            else:
                rows.append({"path": path, "error": errors[i]})

        def fail(path, why, method=None):
            rows.append({"path": path, "method": method, "error": why})

        for method in self.methods:
            for j, path, _, _, e in explain_isolated(self.explainer, loaded, method, self.target,
                                                     self.options.get(method, {}), _Silent(),
                                                     fail):
                t = int(e.targets[j])
                rows.append({"path": path, "predicted": int(np.argmax(e.logits[j])),
                             "target": t, "target_label": self.labels[t] if self.labels else None,
                             "probability": float(e.probabilities()[j, t]),
                             "map": e.maps[j].astype(np.float16), "method": method})
        return _table(rows, tuple(self.explainer.bundle.image_hw))


def _table(rows, hw):
    """Rows -> a pyarrow Table with the fixed schema; ``map`` is a Ray tensor column with nulls
    on error rows."""
    import pyarrow as pa
    from ray.data.extensions import ArrowTensorArray

    types = {"path": pa.string(), "predicted": pa.int64(), "target": pa.int64(),
             "target_label": pa.string(), "probability": pa.float32(), "method": pa.string(),
             "error": pa.string()}
    cols = {c: pa.array([r.get(c) for r in rows], types[c]) for c in COLUMNS if c != "map"}
    dense = np.zeros((len(rows), *hw), np.float16)
    missing = np.array([r.get("map") is None for r in rows], bool)
    for i, r in enumerate(rows):
        if not missing[i]:
            dense[i] = r["map"]
    maps = ArrowTensorArray.from_numpy(dense)
    if missing.any():
        st = maps.storage
        st = type(st).from_arrays(st.offsets, st.values, type=st.type, mask=pa.array(missing))
        maps = pa.ExtensionArray.from_storage(maps.type, st)
    cols["map"] = maps
    return pa.table({c: cols[c] for c in COLUMNS})


def explain_to_parquet(inputs, bundle, out, *, address=None, overwrite=False, progress=True,
                       **kwargs):
    """Run :func:`explain_images` and write its rows as Parquet files into ``out``; what
    ``liftcam explain --ray`` calls. Connects to ``address`` (a Ray cluster, e.g.
    ``ray://head:10001`` or ``auto``) or starts a local Ray. A non-empty ``out`` is refused
    unless ``overwrite`` and it holds only Parquet files (which are removed first).
    ``progress``: Ray Data's progress output (Ray's own logs are kept to warnings). Returns
    ``(rows, failures)``: the number of rows written and ``[(path, error)]``."""
    ray = _ray()
    import pyarrow.parquet as pq

    out = Path(out)
    old = sorted(out.iterdir()) if out.is_dir() else []
    if out.exists() and not out.is_dir():
        raise InputError(f"{out} exists and is not a folder")
    if old and not overwrite:
        raise InputError(f"{out} is not empty; pass overwrite=True (--overwrite) to replace "
                         "an earlier run's Parquet files, or choose another output folder")
    others = [p.name for p in old if p.suffix != ".parquet" or not p.is_file()]
    if others:
        raise InputError(f"{out} holds files that are not Parquet ({', '.join(others[:3])}); "
                         "choose another output folder")
    import logging

    started = False
    if not ray.is_initialized():
        local = {} if address else {"include_dashboard": False}
        ray.init(address=address, logging_level=logging.WARNING, **local)
        started = True
    ray.data.DataContext.get_current().enable_progress_bars = bool(progress)
    if not progress:
        logging.getLogger("ray.data").setLevel(logging.WARNING)
    try:
        for p in old:
            p.unlink()
        ds = explain_images(inputs, bundle, **kwargs)
        ds.write_parquet(str(out))
    finally:
        if started:
            ray.shutdown()
    table = pq.read_table(out, columns=["path", "error"])
    failures = [(p, e) for p, e in zip(table.column("path").to_pylist(),
                                       table.column("error").to_pylist()) if e is not None]
    return table.num_rows, failures
