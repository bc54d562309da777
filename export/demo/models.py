"""Two small demo classifiers for the procedural shapes set, and their training script.

Build time (torch). The models classify 64x64 RGB images from
:mod:`liftcam.export.demo.shapes` into ``len(shapes.CLASSES)`` classes.

- :class:`VGGDemo`: VGG-style. Four Conv-BN-ReLU blocks (max-pool after the first
  three); the natural target layer is ``features.relu4``, the last conv block's
  ReLU output (N, 64, 8, 8). The head is non-trivial for DeepLIFT:
  ``MaxPool2d(2) -> Flatten -> Linear(1024, 128) -> ReLU -> Linear(128, C)``.
- :class:`ResNetDemo`: ResNet-style. A stride-2 stem and three residual basic
  blocks (16, 32, 64 channels); the target layer is ``layer3`` (the last block's
  output after its add + ReLU, (N, 64, 8, 8)); the head is linear:
  ``AdaptiveAvgPool2d(1) -> Flatten -> Linear(64, C)``.

Input normalisation (both models): RGB, ``x = (pixel / 255 - 0.5) / 0.5`` per
channel, i.e. ``mean = std = (0.5, 0.5, 0.5)`` on [0, 1] pixels; see
:data:`PREPROCESSING` (in the format of :func:`liftcam.engine.images.preprocess`).

Each model class carries ``TARGET_LAYER`` (a dotted module name for
``model.get_submodule``), ``forward_features(x) -> A`` and ``forward_head(A) -> logits``
with ``forward_head(forward_features(x)) == forward(x)``.

Training (deterministic, CPU, ~minutes on two cores)::

    python -m liftcam.export.demo.models train --out DIR [--seed 0] [--epochs E]

writes ``DIR/vgg_demo.pt``, ``DIR/resnet_demo.pt`` (state_dicts) and
``DIR/metrics.json``. The committed weights live in ``export/demo/weights/``
and are what :func:`build_demo_model` loads by default.
"""
from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from liftcam.export.demo import shapes

__all__ = [
    "VGGDemo",
    "ResNetDemo",
    "MODELS",
    "MEAN",
    "STD",
    "INPUT_SIZE",
    "PREPROCESSING",
    "WEIGHTS_DIR",
    "build_demo_model",
    "to_input",
    "train",
    "evaluate",
    "main",
]

NUM_CLASSES = len(shapes.CLASSES)
INPUT_SIZE = 64
MEAN = (0.5, 0.5, 0.5)
STD = (0.5, 0.5, 0.5)
#: Preprocessing for these models in the dict format of liftcam.engine.images.preprocess.
PREPROCESSING = {
    "resize": [INPUT_SIZE, INPUT_SIZE],
    "mean": list(MEAN),
    "std": list(STD),
    "scale": 255.0,
    "channel_order": "RGB",
    "resize_mode": "bilinear",
}
WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"

# Seeds of the generated data: training uses TRAIN_SEED_BASE + seed, the test set
# used for metrics.json TEST_SEED_BASE + seed. Tests use a seed outside both.
TRAIN_SEED_BASE = 1000
TEST_SEED_BASE = 2000


def _conv_bn_relu(cin, cout, idx):
    return [
        (f"conv{idx}", nn.Conv2d(cin, cout, 3, padding=1, bias=False)),
        (f"bn{idx}", nn.BatchNorm2d(cout)),
        (f"relu{idx}", nn.ReLU(inplace=False)),
    ]


class VGGDemo(nn.Module):
    """VGG-style: Conv-BN-ReLU blocks with max-pools, then max-pool + ReLU MLP head."""

    TARGET_LAYER = "features.relu4"

    def __init__(self, num_classes: int = NUM_CLASSES, widths=(16, 32, 64, 64), hidden: int = 128):
        super().__init__()
        w1, w2, w3, w4 = widths
        layers = []
        layers += _conv_bn_relu(3, w1, 1) + [("pool1", nn.MaxPool2d(2))]    # 64 -> 32
        layers += _conv_bn_relu(w1, w2, 2) + [("pool2", nn.MaxPool2d(2))]   # 32 -> 16
        layers += _conv_bn_relu(w2, w3, 3) + [("pool3", nn.MaxPool2d(2))]   # 16 -> 8
        layers += _conv_bn_relu(w3, w4, 4)                                  # 8x8, target
        self.features = nn.Sequential(OrderedDict(layers))
        self.pool = nn.MaxPool2d(2)                                          # 8 -> 4
        self.classifier = nn.Sequential(OrderedDict([
            ("flatten", nn.Flatten()),
            ("fc1", nn.Linear(w4 * 4 * 4, hidden)),
            ("relu", nn.ReLU(inplace=False)),
            ("fc2", nn.Linear(hidden, num_classes)),
        ]))

    def forward_features(self, x):
        return self.features(x)

    def forward_head(self, a):
        return self.classifier(self.pool(a))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


class BasicBlock(nn.Module):
    """The ResNet basic block: conv-bn-relu-conv-bn + shortcut, then ReLU."""

    def __init__(self, cin, cout, stride=1):
        super().__init__()
        self.conv1 = nn.Conv2d(cin, cout, 3, stride=stride, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(cout)
        self.relu1 = nn.ReLU(inplace=False)
        self.conv2 = nn.Conv2d(cout, cout, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(cout)
        self.relu2 = nn.ReLU(inplace=False)
        if stride != 1 or cin != cout:
            self.downsample = nn.Sequential(
                nn.Conv2d(cin, cout, 1, stride=stride, bias=False), nn.BatchNorm2d(cout))
        else:
            self.downsample = nn.Identity()

    def forward(self, x):
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.bn2(self.conv2(out))
        return self.relu2(out + self.downsample(x))


class ResNetDemo(nn.Module):
    """ResNet-style: stem + three basic blocks, global average pooling + one Linear."""

    TARGET_LAYER = "layer3"

    def __init__(self, num_classes: int = NUM_CLASSES, widths=(16, 32, 64)):
        super().__init__()
        w1, w2, w3 = widths
        self.stem = nn.Sequential(OrderedDict([
            ("conv", nn.Conv2d(3, w1, 3, stride=2, padding=1, bias=False)),   # 64 -> 32
            ("bn", nn.BatchNorm2d(w1)),
            ("relu", nn.ReLU(inplace=False)),
        ]))
        self.layer1 = BasicBlock(w1, w1, 1)        # 32
        self.layer2 = BasicBlock(w1, w2, 2)        # 16
        self.layer3 = BasicBlock(w2, w3, 2)        # 8, target
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.fc = nn.Linear(w3, num_classes)

    def forward_features(self, x):
        return self.layer3(self.layer2(self.layer1(self.stem(x))))

    def forward_head(self, a):
        return self.fc(self.flatten(self.avgpool(a)))

    def forward(self, x):
        return self.forward_head(self.forward_features(x))


MODELS = {"vgg_demo": VGGDemo, "resnet_demo": ResNetDemo}


def build_demo_model(name: str, weights_path=None) -> nn.Module:
    """A demo model in eval mode with trained weights.

    ``name`` is "vgg_demo" or "resnet_demo". ``weights_path`` defaults to the
    committed ``export/demo/weights/<name>.pt``; pass ``False`` for random
    initial weights (untrained)."""
    if name not in MODELS:
        raise ValueError(f"unknown demo model {name!r}; choose one of {sorted(MODELS)}")
    model = MODELS[name]()
    if weights_path is not False:
        path = Path(weights_path) if weights_path is not None else WEIGHTS_DIR / f"{name}.pt"
        if not path.is_file():
            raise FileNotFoundError(
                f"no weights for {name} at {path}; train them with "
                f"`python -m liftcam.export.demo.models train --out DIR`")
        state = torch.load(path, map_location="cpu", weights_only=True)
        model.load_state_dict(state)
    return model.eval()


def to_input(images: np.ndarray) -> torch.Tensor:
    """uint8 (N,H,W,3) RGB images -> normalised float32 (N,3,H,W) tensor."""
    x = torch.from_numpy(np.ascontiguousarray(images)).permute(0, 3, 1, 2).float().div_(255.0)
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


@torch.no_grad()
def evaluate(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batch: int = 500) -> float:
    """Top-1 accuracy of ``model`` (switched to eval mode) on normalised inputs."""
    model.eval()
    correct = 0
    for i in range(0, len(x), batch):
        correct += int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
    return correct / max(len(x), 1)


def _augment(xb: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Label-preserving augmentation: every class is closed under rotations by 90
    degrees and mirror images, so apply a random one of the 8 per batch-quarter."""
    out = []
    for chunk in xb.chunk(4):
        k = int(torch.randint(0, 4, (1,), generator=gen))
        flip = bool(torch.randint(0, 2, (1,), generator=gen))
        c = torch.rot90(chunk, k, dims=(2, 3))
        if flip:
            c = torch.flip(c, dims=(3,))
        out.append(c)
    return torch.cat(out)


def _train_one(name, x, y, xt, yt, *, epochs, seed, batch, lr, log):
    torch.manual_seed(seed)
    model = MODELS[name]()
    nparams = sum(p.numel() for p in model.parameters())
    log(f"[{name}] {nparams} parameters, {len(x)} train / {len(xt)} test images, {epochs} epochs")
    opt = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=5e-4)
    steps_per_epoch = (len(x) + batch - 1) // batch
    sched = torch.optim.lr_scheduler.OneCycleLR(
        opt, max_lr=lr, total_steps=epochs * steps_per_epoch, pct_start=0.2)
    gen = torch.Generator().manual_seed(seed)
    t0 = time.time()
    acc = 0.0
    for epoch in range(epochs):
        model.train()
        perm = torch.randperm(len(x), generator=gen)
        total, seen, correct = 0.0, 0, 0
        for i in range(0, len(x), batch):
            idx = perm[i:i + batch]
            xb, yb = _augment(x[idx], gen), y[idx]
            logits = model(xb)
            loss = F.cross_entropy(logits, yb, label_smoothing=0.05)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            total += loss.item() * len(idx)
            seen += len(idx)
            correct += int((logits.argmax(1) == yb).sum())
        acc = evaluate(model, xt, yt)
        log(f"[{name}] epoch {epoch + 1}/{epochs} loss {total / seen:.4f} "
            f"train acc {correct / seen:.4f} test acc {acc:.4f} ({time.time() - t0:.0f}s)")
    return model.eval(), acc, nparams, time.time() - t0


def deterministic_cpu(threads: int = 2) -> None:
    """Deterministic CPU training (shared by every training script of the project)."""
    torch.set_num_threads(threads)
    torch.use_deterministic_algorithms(True)
    # determinism needs no NaN-filling of fresh tensors (that alone costs ~5x on CPU)
    torch.utils.deterministic.fill_uninitialized_memory = False


def training_tensors(n: int, seed: int):
    """``n`` generated shape images as model input (N,3,H,W) and their labels (N,)."""
    images, labels, _ = shapes.make_dataset(n, seed=seed)
    return to_input(images), torch.from_numpy(labels)


def train(out, seed: int = 0, epochs: int = 10, n_train: int = 10000, n_test: int = 1000,
          batch: int = 64, lr: float = 3e-3, models=("vgg_demo", "resnet_demo"), log=print):
    """Train the demo models deterministically and save them under ``out``.

    Returns the metrics dict also written to ``out/metrics.json``."""
    deterministic_cpu()
    np.random.seed(seed)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    x, y = training_tensors(n_train, TRAIN_SEED_BASE + seed)
    xt, yt = training_tensors(n_test, TEST_SEED_BASE + seed)
    log(f"generated data in {time.time() - t0:.1f}s")
    metrics = {
        "classes": list(shapes.CLASSES),
        "preprocessing": PREPROCESSING,
        "seed": seed, "epochs": epochs, "n_train": n_train, "n_test": n_test,
        "train_seed": TRAIN_SEED_BASE + seed, "test_seed": TEST_SEED_BASE + seed,
        "torch": torch.__version__,
        "models": {},
    }
    for name in models:
        model, acc, nparams, secs = _train_one(
            name, x, y, xt, yt, epochs=epochs, seed=seed, batch=batch, lr=lr, log=log)
        path = out / f"{name}.pt"
        tmp = out / f".{name}.pt.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, path)
        metrics["models"][name] = {
            "test_accuracy": acc, "parameters": nparams, "train_seconds": round(secs, 1),
            "target_layer": MODELS[name].TARGET_LAYER,
        }
    metrics["total_seconds"] = round(time.time() - t0, 1)
    (out / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    log(json.dumps({k: v["test_accuracy"] for k, v in metrics["models"].items()}))
    return metrics


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m liftcam.export.demo.models",
                                description="Demo classifiers for the procedural shapes set.")
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train", help="train both demo models deterministically")
    t.add_argument("--out", required=True, help="output directory")
    t.add_argument("--seed", type=int, default=0)
    t.add_argument("--epochs", type=int, default=10)
    t.add_argument("--n-train", type=int, default=10000)
    t.add_argument("--n-test", type=int, default=1000)
    t.add_argument("--models", nargs="+", default=["vgg_demo", "resnet_demo"],
                   choices=sorted(MODELS))
    args = p.parse_args(argv)
    if args.cmd == "train":
        train(args.out, seed=args.seed, epochs=args.epochs, n_train=args.n_train,
              n_test=args.n_test, models=tuple(args.models),
              log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
