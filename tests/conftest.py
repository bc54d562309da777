"""Shared test fixtures. Kept small: torch is imported only by the fixtures that need it."""
from __future__ import annotations

import pytest

TINY_SHAPE = (3, 32, 32)
TINY_LABELS = [f"class{i}" for i in range(10)]


def make_tiny_cnn(seed: int = 0):
    """A small CNN that ends in Softmax: the exporter must cut the softmax off.

    ``model[:-1]`` gives the logits. Layers: conv-relu-conv-bn-relu ("4" is the default target
    layer: the last activation before global pooling), GAP, flatten, linear(64, 10), softmax.
    Its conv weights are > 1 KiB, so a bundle of it stores them in ``weights.bin``.
    """
    import torch
    from torch import nn

    torch.manual_seed(seed)
    model = nn.Sequential(
        nn.Conv2d(3, 32, 3, padding=1), nn.ReLU(),
        nn.Conv2d(32, 64, 3, stride=2, padding=1), nn.BatchNorm2d(64), nn.ReLU(),
        nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(64, 10), nn.Softmax(dim=1))
    with torch.no_grad():   # non-trivial BatchNorm statistics
        model[3].running_mean.uniform_(-0.5, 0.5)
        model[3].running_var.uniform_(0.5, 2.0)
    return model.eval()


@pytest.fixture(scope="session")
def tiny_model():
    """The Softmax-ending CNN of :func:`make_tiny_cnn` (eval mode). Do not modify it."""
    return make_tiny_cnn()


@pytest.fixture(scope="session")
def tiny_bundle(tiny_model, tmp_path_factory):
    """A bundle of ``tiny_model`` at 32×32 with labels, exported once. Read-only: copy it
    (``shutil.copytree``) before changing anything in it."""
    import liftcam

    out = tmp_path_factory.mktemp("tiny") / "tiny.liftcam"
    return liftcam.export_model(tiny_model, input_shape=TINY_SHAPE, out_dir=out, labels=TINY_LABELS)
