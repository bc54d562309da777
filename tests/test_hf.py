"""Models that return structures (ModelOutput, dict, dataclass, named tuple, tuple), keyword
inputs, transformers CNN classifiers at their default layer, and transformers image-processor
settings translated into liftcam's preprocessing (export/hf.py, export/outputs.py)."""
from __future__ import annotations

import collections
import dataclasses
import json
import sys
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

import liftcam  # noqa: E402
from liftcam.engine.errors import ExportError  # noqa: E402
from liftcam.engine.images import preprocess  # noqa: E402
from liftcam.export.hf import preprocessing_from_hf  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "benchmarks"))

Pair = collections.namedtuple("Pair", "feats logits")


@dataclasses.dataclass
class Out:
    feats: torch.Tensor
    logits: torch.Tensor


class Net(nn.Module):
    """conv -> block -> GAP -> fc, returning its logits in the structure ``kind``."""

    def __init__(self, kind):
        super().__init__()
        self.kind = kind
        self.stem = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.block = nn.Sequential(nn.Conv2d(8, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, 5)

    def forward(self, pixel_values, return_dict=True):
        a = self.block(self.stem(pixel_values))
        y = self.fc(a.mean((2, 3)))
        return {"dict": lambda: {"feats": a, "logits": y}, "dataclass": lambda: Out(a, y),
                "namedtuple": lambda: Pair(a, y), "tuple": lambda: (y, a)}[self.kind]()


@pytest.mark.parametrize("kind,output,field", [
    ("dict", None, "logits"), ("dataclass", None, "logits"), ("namedtuple", "logits", 1),
    ("tuple", None, 0)])
def test_structured_outputs_keyword_input(kind, output, field, tmp_path):
    model = Net(kind).eval()
    b = liftcam.export_model(model, input_shape=(3, 12, 12), output=output, out_dir=tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    assert m["output"]["field"] == field and m["output"]["input_keyword"] == "pixel_values"
    assert m["target_layer"]["name"] == "block"          # the model's own names, no prefix
    x = torch.randn(3, 3, 12, 12)
    with torch.no_grad():
        ref = model(x)["logits"] if kind == "dict" else (
            model(x)[0] if kind == "tuple" else model(x).logits)
    e = liftcam.Explainer(b, threads=1).explain(x.numpy(), method="gradcam")
    np.testing.assert_allclose(e.logits, ref.numpy(), rtol=1e-4, atol=1e-5)


def test_output_refusals(tmp_path):
    with pytest.raises(ExportError, match=r"without a tensor field 'scores'.*\['feats', "
                                          r"'logits'\]"):
        liftcam.export_model(Net("dict").eval(), input_shape=(3, 12, 12), output="scores",
                             out_dir=tmp_path / "a")
    with pytest.raises(ExportError, match="no field 'x'"):
        liftcam.export_model(Net("namedtuple").eval(), input_shape=(3, 12, 12), output="x",
                             out_dir=tmp_path / "b")
    names = [c["name"] for c in liftcam.candidate_layers(Net("tuple").eval(), (3, 12, 12))]
    assert names[0] == "block" and not any(n.startswith("inner") for n in names)


# ----------------------------------------------------------------------------- transformers
def _completeness(bundle, x):
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    s = {k: ort.InferenceSession(str(Path(bundle) / f"{k}.onnx"), so,
                                 providers=["CPUExecutionProvider"])
         for k in ("features", "head", "multipliers_deeplift")}
    (A,) = s["features"].run(None, {"image": x})
    (y,) = s["head"].run(None, {"activation": A})
    t = y.argmax(1).astype(np.int64)
    yA, M = s["multipliers_deeplift"].run(None, {"activation": A, "target": t})
    (y0,) = s["head"].run(None, {"activation": np.zeros_like(A)})
    lhs = (A.astype(np.float64) * M).reshape(len(A), -1).sum(1)
    rhs = yA[np.arange(len(t)), t].astype(np.float64) - y0[np.arange(len(t)), t]
    return float(np.abs(lhs - rhs).max() / np.abs(rhs).max())


@pytest.mark.parametrize("name,layer", [
    ("hf:resnet", "resnet.encoder.stages.1"), ("hf:convnext", "convnext.encoder.stages.1"),
    ("hf:efficientnet", "efficientnet.encoder.top_activation"),
    ("hf:mobilenet_v2", "mobilenet_v2.conv_1x1")])
def test_transformers_model_unwrapped_default_layer(name, layer, tmp_path):
    pytest.importorskip("transformers")
    import hf_models

    model, _ = hf_models.build(name, 64, tiny=True)
    b = liftcam.export_model(model, input_shape=(3, 64, 64), out_dir=tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    assert m["target_layer"]["name"] == layer                # the last stage
    assert m["output"] == {"name": "logits", "stripped_final": None, "field": "logits",
                           "structure": "ImageClassifierOutputWithNoAttention",
                           "input_keyword": "pixel_values"}
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        ref = model(pixel_values=x).logits.numpy()
    e = liftcam.Explainer(b, threads=1).explain(x.numpy(), method="liftcam")
    assert np.abs(e.logits - ref).max() <= 1e-4 * np.abs(ref).max()
    assert _completeness(b, x.numpy()) < 1e-4


# ----------------------------------------------------------------------------- preprocessing
def _image(h, w, seed):
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w]
    base = np.stack([xx * 255 / w, yy * 255 / h, (xx + yy) * 128 / (h + w)], -1)
    return Image.fromarray(np.clip(base + rng.normal(0, 40, (h, w, 3)), 0, 255).astype(np.uint8))


def _image_file(folder, h, w):
    path = Path(folder) / f"img_{h}x{w}.png"
    _image(h, w, 0).save(path)
    return path


#: image sizes whose crop margins are even or 1 mod 4, where transformers' floor((h - H) / 2)
#: and liftcam's (torchvision's) round-half-even agree (export/hf.py "Known difference")
SIZES = [(130, 90), (64, 64), (81, 117)]


def _processors():
    import transformers as T

    crop = {"crop_size": {"height": 64, "width": 64}}
    return {   # name: (processor, tolerance on pixel_values)
        "convnext_pil": (T.ConvNextImageProcessorPil(size={"shortest_edge": 64}), 1e-5),
        "convnext_384_pil": (T.ConvNextImageProcessorPil(size={"shortest_edge": 384}), 1e-5),
        "bit_pil": (T.BitImageProcessorPil(size={"shortest_edge": 72}, **crop), 1e-5),
        "mobilenet_v2_pil": (T.MobileNetV2ImageProcessorPil(size={"shortest_edge": 73}, **crop),
                             1e-5),
        "efficientnet_pil": (T.EfficientNetImageProcessorPil(size={"height": 64, "width": 64}),
                             1e-5),
        # the torchvision backends resize with torch's antialiased kernels: a grey level or
        # a few apart from Pillow (std 0.5: 2/255 per level; EfficientNet's std^2 0.25 and
        # bicubic 2x downscaling: up to 5 levels)
        "convnext_tv": (T.ConvNextImageProcessor(size={"shortest_edge": 64}), 2.01 / 255),
        "efficientnet_offset_tv": (T.EfficientNetImageProcessor(
            size={"height": 64, "width": 64}, rescale_offset=True, rescale_factor=1 / 127.5),
            5.01 * 4 / 127.5),
    }


def test_preprocessing_matches_transformers_processors():
    pytest.importorskip("transformers")
    for name, (proc, tol) in _processors().items():
        pre = preprocessing_from_hf(proc)
        assert pre == preprocessing_from_hf(proc.to_dict())
        for i, (h, w) in enumerate(SIZES):
            im = _image(h, w, i)
            ref = proc(images=[im], return_tensors="np")["pixel_values"]
            got = preprocess([im], pre)
            assert got.shape == ref.shape, name
            assert np.abs(got - ref).max() <= tol, (name, (h, w), np.abs(got - ref).max())


def test_preprocessing_translation_and_bundle(tmp_path):
    cfg = {"image_processor_type": "ConvNextImageProcessor", "size": {"shortest_edge": 224},
           "crop_pct": 0.875, "resample": 3, "do_rescale": True, "rescale_factor": 1 / 255,
           "do_normalize": True, "image_mean": [0.485, 0.456, 0.406],
           "image_std": [0.229, 0.224, 0.225]}
    pre = preprocessing_from_hf(cfg)
    assert (pre["resize_shorter"], pre["center_crop"], pre["resize_mode"]) == (256, [224, 224],
                                                                               "bicubic")
    assert pre["scale"] == pytest.approx(255.0) and pre["resize"] is None
    eff = preprocessing_from_hf({"size": {"height": 16, "width": 16}, "image_mean": [0.5] * 3,
                                 "image_std": [0.5] * 3, "include_top": True,
                                 "rescale_offset": True, "rescale_factor": 1 / 127.5})
    assert eff["mean"] == [1.5] * 3 and eff["std"] == [0.25] * 3 and eff["resize"] == [16, 16]
    with pytest.raises(ExportError, match="without a centre crop"):
        preprocessing_from_hf({"size": {"shortest_edge": 64}, "do_center_crop": False})
    # the bundle records the translation; input_shape comes from the final size
    small = dict(cfg, size={"shortest_edge": 12}, crop_pct=0.75)
    b = liftcam.export_model(Net("dict").eval(), preprocessing=small, out_dir=tmp_path / "b")
    m = json.loads((b / "manifest.json").read_text())
    assert m["input"]["shape"] == [None, 3, 12, 12]
    assert m["preprocessing"]["resize_shorter"] == 16 and m["preprocessing"]["center_crop"] == [
        12, 12] and m["preprocessing"]["resize_mode"] == "bicubic"
    run = liftcam.explain_files(b, [_image_file(tmp_path, 30, 20)], tmp_path / "out",
                                methods=["liftcam"])
    assert run.explained == 1 and not run.failures
    with pytest.raises(ExportError, match="makes 12x12 images but the model input is 16x16"):
        liftcam.export_model(Net("dict").eval(), input_shape=(3, 16, 16), preprocessing=small,
                             out_dir=tmp_path / "c")
