"""Build the demo assets that ``liftcam demo`` uses: two bundles and a few sample images.

    python -m liftcam.export.demo.make [--out DIR] [--weights-dir DIR] [--untrained]

Exports the trained demo models (:mod:`liftcam.export.demo.models`, weights from
``export/demo/weights/``) with :func:`liftcam.export` into ``DIR/vgg_demo.liftcam`` and
``DIR/resnet_demo.liftcam`` (labels: the shape class names; preprocessing: the training
normalisation; input 3x64x64), and writes one sample image per class from
:func:`liftcam.export.demo.shapes.make_dataset` with :data:`SAMPLE_SEED` (a seed neither training
nor the test set uses) as ``DIR/<class>.png``, plus ``DIR/samples.json`` (file -> true class).
``DIR`` defaults to ``engine/demo/`` (package data). Build time: needs torch.
"""
from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

SAMPLE_SEED = 4242          # not TRAIN_SEED_BASE + s / TEST_SEED_BASE + s for any small s
SAMPLE_POOL = 64            # images generated to pick one per class from
DEFAULT_OUT = Path(__file__).resolve().parents[2] / "engine" / "demo"


def sample_images(seed: int = SAMPLE_SEED, per_class: int = 1):
    """``[(class_name, uint8 (64,64,3) image)]``: the first ``per_class`` of each class."""
    from liftcam.export.demo import shapes

    images, labels, _ = shapes.make_dataset(SAMPLE_POOL, seed=seed)
    out = []
    for c, name in enumerate(shapes.CLASSES):
        idx = [i for i in range(len(labels)) if labels[i] == c][:per_class]
        out += [(name, images[i]) for i in idx]
    return out


def make_demo(out=DEFAULT_OUT, weights_dir=None, untrained=False, seed=SAMPLE_SEED,
              per_class: int = 1, log=print) -> dict:
    import liftcam
    from liftcam.engine.atomic import save_png_atomic, write_bytes_atomic
    from liftcam.export.demo import models as demo_models
    from liftcam.export.demo import shapes

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    written = {"bundles": [], "images": []}
    for name in ("vgg_demo", "resnet_demo"):
        t0 = time.perf_counter()
        if untrained:
            weights = False
        elif weights_dir is not None:
            weights = Path(weights_dir) / f"{name}.pt"
        else:
            weights = None
        model = demo_models.build_demo_model(name, weights)
        path = liftcam.export_model(
            model, target_layer=model.TARGET_LAYER,
            input_shape=(3, demo_models.INPUT_SIZE, demo_models.INPUT_SIZE),
            out_dir=out / f"{name}.liftcam", labels=list(shapes.CLASSES),
            preprocessing=dict(demo_models.PREPROCESSING), overwrite=True)
        Path(path).chmod(0o755)             # the writer's temp dir is 0700; package data is not
        size = sum(f.stat().st_size for f in Path(path).iterdir())
        log(f"exported {name} -> {path} ({size / 1e6:.2f} MB, {time.perf_counter() - t0:.1f}s)")
        written["bundles"].append(str(path))
    entries = []
    counts = {}
    for cls, img in sample_images(seed, per_class):
        counts[cls] = counts.get(cls, 0) + 1
        fname = f"{cls}.png" if per_class == 1 else f"{cls}_{counts[cls]}.png"
        save_png_atomic(img, out / fname)
        entries.append({"file": fname, "label": cls})
        written["images"].append(str(out / fname))
    meta = {"seed": seed, "generator": "liftcam.export.demo.shapes.make_dataset",
            "pool": SAMPLE_POOL, "classes": list(shapes.CLASSES), "images": entries}
    write_bytes_atomic(out / "samples.json", (json.dumps(meta, indent=2) + "\n").encode())
    log(f"wrote {len(entries)} sample images and samples.json to {out}")
    return written


def main(argv=None) -> int:
    p = argparse.ArgumentParser(prog="python -m liftcam.export.demo.make",
                                description="Export the demo bundles and sample images.")
    p.add_argument("--out", default=str(DEFAULT_OUT), help="output folder (default: %(default)s)")
    p.add_argument("--weights-dir", default=None,
                   help="folder with vgg_demo.pt / resnet_demo.pt (default: export/demo/weights)")
    p.add_argument("--untrained", action="store_true",
                   help="export randomly initialised models (for testing the pipeline only)")
    p.add_argument("--seed", type=int, default=SAMPLE_SEED, help="seed of the sample images")
    p.add_argument("--per-class", type=int, default=1, help="sample images per class")
    args = p.parse_args(argv)
    make_demo(args.out, args.weights_dir, args.untrained, args.seed, args.per_class)
    return 0


if __name__ == "__main__":
    sys.exit(main())
