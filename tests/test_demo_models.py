"""Demo classifiers: shapes, the features/head split, and the committed weights' accuracy."""
import json

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from liftcam.export.demo import models as dm  # noqa: E402
from liftcam.export.demo import shapes  # noqa: E402
from liftcam.export.demo.models import build_demo_model  # noqa: E402

NAMES = ["vgg_demo", "resnet_demo"]
# a data seed used neither for training (1000 + s) nor for metrics.json (2000 + s)
FRESH_SEED = 987654


@pytest.fixture(scope="module")
def fresh():
    images, labels, _ = shapes.make_dataset(320, seed=FRESH_SEED)
    return dm.to_input(images), torch.from_numpy(labels)


@pytest.mark.parametrize("name", NAMES)
def test_forward_shapes_and_split(name):
    torch.manual_seed(0)
    model = build_demo_model(name, weights_path=False)
    assert not model.training
    nparams = sum(p.numel() for p in model.parameters())
    assert nparams < 1_000_000
    x = torch.randn(3, 3, 64, 64)
    with torch.no_grad():
        y = model(x)
        a = model.forward_features(x)
        target = model.get_submodule(model.TARGET_LAYER)
        seen = {}
        h = target.register_forward_hook(lambda m, i, o: seen.setdefault("a", o))
        model(x)
        h.remove()
    assert y.shape == (3, len(shapes.CLASSES))
    assert a.shape == (3, 64, 8, 8)
    assert torch.equal(seen["a"], a)             # TARGET_LAYER is the split point
    assert torch.allclose(model.forward_head(a), y, atol=1e-6)
    assert (a >= 0).all()                         # a ReLU output


def test_vgg_head_is_maxpool_relu_mlp():
    m = dm.VGGDemo()
    kinds = [type(mod).__name__ for mod in [m.pool, *m.classifier]]
    assert kinds == ["MaxPool2d", "Flatten", "Linear", "ReLU", "Linear"]


def test_resnet_head_is_linear():
    m = dm.ResNetDemo()
    assert isinstance(m.avgpool, torch.nn.AdaptiveAvgPool2d) and isinstance(m.fc, torch.nn.Linear)


@pytest.mark.parametrize("name", NAMES)
def test_committed_weights_accuracy(name, fresh):
    x, y = fresh
    model = build_demo_model(name)
    assert not model.training
    acc = dm.evaluate(model, x, y)
    assert acc >= 0.95, f"{name}: {acc:.3f} on a fresh test set"


def test_metrics_json():
    metrics = json.loads((dm.WEIGHTS_DIR / "metrics.json").read_text())
    assert metrics["classes"] == list(shapes.CLASSES)
    for name in NAMES:
        assert metrics["models"][name]["test_accuracy"] >= 0.95


def test_unknown_name_and_missing_weights(tmp_path):
    with pytest.raises(ValueError, match="vgg_demo"):
        build_demo_model("alexnet")
    with pytest.raises(FileNotFoundError):
        build_demo_model("vgg_demo", weights_path=tmp_path / "none.pt")


def test_to_input_normalisation():
    img = np.zeros((1, 2, 2, 3), dtype=np.uint8)
    img[..., 0] = 255
    x = dm.to_input(img)
    assert x.shape == (1, 3, 2, 2) and x.dtype == torch.float32
    assert torch.all(x[:, 0] == 1.0) and torch.all(x[:, 1:] == -1.0)


def test_to_input_matches_engine_preprocess():
    from PIL import Image

    from liftcam.engine.images import preprocess
    images, _, _ = shapes.make_dataset(4, seed=1)
    ref = preprocess([Image.fromarray(a) for a in images], dm.PREPROCESSING)
    np.testing.assert_allclose(dm.to_input(images).numpy(), ref, atol=1e-6)
