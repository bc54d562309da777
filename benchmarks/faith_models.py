"""Small classifiers with few target channels (K <= 16), so exact channel SHAP is computable.

Used by ``benchmarks/faithfulness.py``. Both take 64x64 RGB shape images normalised like the
demo models (``liftcam.export.demo.models.PREPROCESSING``: mean = std = 0.5) and share one
feature extractor; they differ in K and in the head after the target layer ``features``
(output (N, K, 8, 8), the last Conv-BN-ReLU):

- ``mlp16``: K = 16, a non-linear head like VGG's:
  ``MaxPool2d(2) -> Flatten -> Linear(16*4*4, 64) -> ReLU -> Linear(64, 8)``.
  LIFT-CAM's DeepLIFT coefficients are only an approximation of SHAP here.
- ``gap12``: K = 12, a linear head like ResNet's:
  ``AdaptiveAvgPool2d(1) -> Flatten -> Linear(12, 8)``.
  LIFT-CAM = CAM = exact SHAP here (a sanity row).

Both reuse the trained VGG demo model's first three blocks (frozen) as their backbone; only
the new K-channel block and the head are trained, on cached backbone features. Training is
deterministic (fixed seeds, ``torch.use_deterministic_algorithms``, 2 threads) and small
(4000 generated images, 20 epochs over cached features: well under a minute of CPU). The
trained weights are committed under ``benchmarks/faith_weights/<name>.pt`` (tens of KB);
:func:`load_or_train` falls back to training into a cache directory when they are missing.

    python benchmarks/faith_models.py train [--out benchmarks/faith_weights]
"""
from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from collections import OrderedDict
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from liftcam.export.demo import shapes
from liftcam.export.demo.models import WEIGHTS_DIR as DEMO_WEIGHTS_DIR
from liftcam.export.demo.models import (
    VGGDemo,
    build_demo_model,
    deterministic_cpu,
    training_tensors,
)

NUM_CLASSES = len(shapes.CLASSES)
WEIGHTS_DIR = Path(__file__).resolve().parent / "faith_weights"
TARGET_LAYER = "features"
# Data seeds: disjoint from the demo models' (1000+, 2000+) and from the benchmark's eval seed.
TRAIN_SEED = 3100
VAL_SEED = 3200


class SmallCNN(nn.Module):
    """A frozen VGG-demo backbone, one new Conv-BN-ReLU block to K channels (the target), a head.

    ``features`` = the trained ``VGGDemo.features`` blocks 1-3 (conv1 ... pool3, 64 -> 8 pixels,
    64 channels) followed by ``conv4``/``bn4``/``relu4`` with K output channels at 8x8. Training
    such a model from scratch takes tens of CPU minutes; on top of the demo backbone only the new
    block and the head are trained, on cached backbone features, in well under a minute. The
    saved state dict holds every weight (backbone included), so a trained model stands alone.
    """

    def __init__(self, K: int, head: str, num_classes: int = NUM_CLASSES, hidden: int = 64):
        super().__init__()
        self.K, self.head_kind = K, head
        vgg = VGGDemo(num_classes)
        names = [n for n, _ in vgg.features.named_children()]
        backbone = [(n, m) for n, m in vgg.features.named_children()][:names.index("pool3") + 1]
        cin = vgg.features.conv4.in_channels
        layers = backbone + [("conv4", nn.Conv2d(cin, K, 3, padding=1, bias=False)),
                             ("bn4", nn.BatchNorm2d(K)), ("relu4", nn.ReLU())]
        self.n_backbone = len(backbone)
        self.features = nn.Sequential(OrderedDict(layers))
        if head == "mlp":
            self.head = nn.Sequential(OrderedDict([
                ("pool", nn.MaxPool2d(2)), ("flatten", nn.Flatten()),
                ("fc1", nn.Linear(K * 16, hidden)), ("relu", nn.ReLU()),
                ("fc2", nn.Linear(hidden, num_classes))]))
        elif head == "gap":
            self.head = nn.Sequential(OrderedDict([
                ("gap", nn.AdaptiveAvgPool2d(1)), ("flatten", nn.Flatten()),
                ("fc", nn.Linear(K, num_classes))]))
        else:
            raise ValueError(f"head must be 'mlp' or 'gap', got {head!r}")

    def backbone(self, x):
        return self.features[:self.n_backbone](x)

    def top(self, f):
        """From backbone features (N, 64, 8, 8) to logits."""
        return self.head(self.features[self.n_backbone:](f))

    def forward(self, x):
        return self.head(self.features(x))


#: name -> (K, head kind)
SPECS = {"mlp16": (16, "mlp"), "gap12": (12, "gap")}


def build(name: str) -> SmallCNN:
    if name not in SPECS:
        raise ValueError(f"unknown model {name!r}; choose one of {sorted(SPECS)}")
    K, head = SPECS[name]
    return SmallCNN(K, head)


@torch.no_grad()
def accuracy(model, x, y, batch=500) -> float:
    model.eval()
    hit = sum(int((model(x[i:i + batch]).argmax(1) == y[i:i + batch]).sum())
              for i in range(0, len(x), batch))
    return hit / max(len(x), 1)


@torch.no_grad()
def _backbone_features(model, x, batch=250):
    model.eval()
    return torch.cat([model.backbone(x[i:i + batch]) for i in range(0, len(x), batch)])


def train(names=tuple(SPECS), out=WEIGHTS_DIR, backbone=None, n_train=4000, n_val=500,
          epochs=20, batch=64, lr=1e-2, seed=0, log=print) -> dict:
    """Train the named models deterministically; write ``out/<name>.pt`` and ``out/metrics.json``.

    ``backbone``: the VGG demo weights (default: the committed ``export/demo/weights/vgg_demo.pt``).
    """
    deterministic_cpu()
    backbone = Path(backbone) if backbone is not None else DEMO_WEIGHTS_DIR / "vgg_demo.pt"
    demo = build_demo_model("vgg_demo", backbone)
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    x, y = training_tensors(n_train, TRAIN_SEED + seed)
    xv, yv = training_tensors(n_val, VAL_SEED + seed)
    log(f"data: {n_train} train / {n_val} val images in {time.time() - t0:.1f}s")
    mpath = out / "metrics.json"
    metrics = json.loads(mpath.read_text()) if mpath.is_file() else {}
    feats = None
    for name in names:
        torch.manual_seed(seed)
        gen = torch.Generator().manual_seed(seed)
        model = build(name)
        frozen = set(list(model.features._modules)[:model.n_backbone])
        own = model.state_dict()
        own.update({k: v for k, v in demo.state_dict().items()
                    if k.startswith("features.") and k.split(".")[1] in frozen})
        model.load_state_dict(own)
        if feats is None:
            t1 = time.time()
            feats = _backbone_features(model, x)
            log(f"backbone features of {len(x)} images in {time.time() - t1:.1f}s")
        params = [p for n, p in model.named_parameters()
                  if not (n.startswith("features.") and n.split(".")[1] in frozen)]
        opt = torch.optim.AdamW(params, lr=lr, weight_decay=5e-4)
        steps = epochs * ((len(x) + batch - 1) // batch)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=lr, total_steps=steps,
                                                    pct_start=0.2)
        t1 = time.time()
        for epoch in range(epochs):
            model.train()
            model.features[:model.n_backbone].eval()   # frozen backbone: BN statistics fixed
            perm = torch.randperm(len(x), generator=gen)
            for i in range(0, len(x), batch):
                idx = perm[i:i + batch]
                loss = F.cross_entropy(model.top(feats[idx]), y[idx], label_smoothing=0.05)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
            if epoch == epochs - 1 or epoch % 5 == 4:
                acc = accuracy(model, xv, yv)
                log(f"[{name}] epoch {epoch + 1}/{epochs} loss {loss.item():.3f} val acc {acc:.3f} "
                    f"({time.time() - t1:.0f}s)")
        model.eval()
        tmp = out / f".{name}.pt.tmp"
        torch.save(model.state_dict(), tmp)
        os.replace(tmp, out / f"{name}.pt")
        K, head = SPECS[name]
        metrics[name] = {"K": K, "head": head, "val_accuracy": acc, "epochs": epochs,
                         "n_train": n_train, "train_seed": TRAIN_SEED + seed,
                         "val_seed": VAL_SEED + seed, "seconds": round(time.time() - t1, 1),
                         "backbone": "VGGDemo conv1..pool3 (frozen), from " + backbone.name,
                         "backbone_sha256": hashlib.sha256(backbone.read_bytes()).hexdigest(),
                         "parameters": sum(p.numel() for p in model.parameters())}
    tmp = out / ".metrics.json.tmp"
    tmp.write_text(json.dumps(metrics, indent=2, sort_keys=True) + "\n")
    os.replace(tmp, mpath)
    return metrics


def load(name: str, path) -> SmallCNN:
    model = build(name)
    model.load_state_dict(torch.load(path, map_location="cpu", weights_only=True))
    return model.eval()


def load_or_train(name: str, cache_dir=None, log=print) -> tuple:
    """``(model, weights_path)``: the committed weights, else ``cache_dir/<name>.pt`` (trained
    there, deterministically, if missing)."""
    committed = WEIGHTS_DIR / f"{name}.pt"
    if committed.is_file():
        return load(name, committed), committed
    if cache_dir is None:
        raise FileNotFoundError(f"no weights at {committed} and no cache directory to train into")
    cached = Path(cache_dir) / f"{name}.pt"
    if not cached.is_file():
        log(f"{committed} missing: training {name} into {cache_dir}")
        train((name,), out=cache_dir, log=log)
    return load(name, cached), cached


def main(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    t = sub.add_parser("train")
    t.add_argument("--out", default=str(WEIGHTS_DIR))
    t.add_argument("--models", nargs="+", default=list(SPECS), choices=sorted(SPECS))
    t.add_argument("--backbone", default=None,
                   help="VGG demo weights (default: export/demo/weights/vgg_demo.pt)")
    t.add_argument("--epochs", type=int, default=20)
    t.add_argument("--n-train", type=int, default=4000)
    a = p.parse_args(argv)
    train(tuple(a.models), out=a.out, backbone=a.backbone, epochs=a.epochs, n_train=a.n_train,
          log=lambda s: print(s, flush=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
