"""Real producers end to end: Keras applications (random weights) converted with tf2onnx,
then exported and explained by liftcam.

    python benchmarks/foreign_producers.py [--size 160] [--out benchmarks/results/foreign]

Needs tensorflow and tf2onnx (not in CI: TensorFlow is a large download); runs where they are
installed. For each model: tf2onnx.convert.from_keras (channels-last input [N, S, S, 3], a
final Softmax), liftcam.export_onnx with the layout detected, then checks that the map has the
image's spatial shape, that softmax(bundle logits) equals the Keras model's output (the bundle
explains the pre-softmax logits), and that LIFT-CAM's completeness holds on the head.
Writes foreign.md and foreign.json.
"""
from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

MODELS = ("MobileNetV2", "ResNet50", "EfficientNetB0")


def _randomize_batchnorm(model, tf):
    """Non-trivial BatchNorm statistics (as a trained network has), so random-weight logits
    vary between images and the checks below mean something."""
    rng = np.random.default_rng(0)
    for layer in model.layers:
        if isinstance(layer, tf.keras.layers.BatchNormalization):
            gamma, beta, mean, var = (w.shape for w in layer.get_weights())
            layer.set_weights([rng.uniform(0.5, 1.5, gamma), rng.normal(0, 0.1, beta),
                               rng.normal(0, 0.1, mean), rng.uniform(0.5, 2.0, var)])


def run(name: str, size: int, work: Path) -> dict:
    import tensorflow as tf
    import tf2onnx

    import liftcam

    t0 = time.perf_counter()
    tf.keras.utils.set_random_seed(0)
    model = getattr(tf.keras.applications, name)(weights=None, input_shape=(size, size, 3),
                                                  classes=10)
    _randomize_batchnorm(model, tf)          # Keras' fresh BN statistics make dead networks
    spec = (tf.TensorSpec((None, size, size, 3), tf.float32, name="image"),)
    path = work / f"{name}.onnx"
    tf2onnx.convert.from_keras(model, input_signature=spec, opset=17, output_path=str(path))
    t_convert = time.perf_counter() - t0
    bundle = liftcam.export_onnx(path, out_dir=work / f"{name}.liftcam")
    b = liftcam.load_bundle(bundle)
    x = np.random.default_rng(0).random((2, size, size, 3)).astype(np.float32)
    ex = liftcam.Explainer(b)
    e = ex.explain(x, method="liftcam")
    keras_probs = model(x, training=False).numpy()
    probs = e.probabilities()
    A = ex.features(x)
    y = ex.head(A)
    y0 = ex.head(np.zeros_like(A))
    r = np.arange(len(x))
    completeness = float(np.abs(e.weights.sum(1) - (y[r, e.targets] - y0[r, e.targets])).max())
    return {
        "model": name, "layout": b.layout, "input": b.manifest["input"]["shape"],
        "target_layer": b.manifest["target_layer"]["name"],
        "activation": b.manifest["activation"]["shape"],
        "stripped_final": b.manifest["output"]["stripped_final"],
        "map_shape": list(e.maps.shape[1:]),
        "max_prob_diff_vs_keras": float(np.abs(probs - keras_probs).max()),
        "completeness_max_abs": completeness,
        "logit_range": float(e.logits.max() - e.logits.min()),
        "seconds": round(time.perf_counter() - t0, 1), "convert_seconds": round(t_convert, 1),
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--size", type=int, default=160)
    p.add_argument("--models", default=",".join(MODELS))
    p.add_argument("--out", default=str(Path(__file__).parent / "results" / "foreign"))
    args = p.parse_args(argv)
    try:
        import tensorflow  # noqa: F401
        import tf2onnx  # noqa: F401
    except ImportError as exc:
        print(f"foreign_producers: needs tensorflow and tf2onnx ({exc.name} missing)",
              file=sys.stderr)
        return 2
    rows = []
    with tempfile.TemporaryDirectory() as d:
        for name in args.models.split(","):
            try:
                rows.append(run(name, args.size, Path(d)))
            except Exception as exc:  # a benchmark row, not a crash
                rows.append({"model": name, "error": f"{type(exc).__name__}: {exc}"[:300]})
            print(json.dumps(rows[-1]), flush=True)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / "foreign.json").write_text(json.dumps(rows, indent=2) + "\n")
    cols = ["model", "layout", "target_layer", "activation", "stripped_final", "map_shape",
            "max_prob_diff_vs_keras", "completeness_max_abs", "logit_range", "seconds"]
    lines = [f"Command: `python benchmarks/foreign_producers.py --size {args.size}`", "",
             "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    for r in rows:
        lines.append("| " + " | ".join(str(r.get(c, r.get("error", ""))) for c in cols) + " |")
    (out / "foreign.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    sys.exit(main())
