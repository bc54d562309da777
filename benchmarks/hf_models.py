"""transformers CNN classifiers with random weights, for the zoo sweep and tests/test_hf.py.

``build(name, size)`` returns ``(model, inner_layer)``: a ``*ForImageClassification`` from its
config class (never ``from_pretrained``: no download). ``tiny=True`` shrinks the config (two
stages of 16/32 channels) for the test suite. The weights are re-drawn by
:func:`lively_weights`: transformers initialises convolutions with std 0.02 and BatchNorm to the
identity, and through a dozen blocks the logits of such a model underflow to 0 (EfficientNet:
exactly 0), which would make every comparison vacuous.
"""
from __future__ import annotations

#: zoo name -> (config class, model class, family)
FAMILIES = {
    "hf:resnet": ("ResNetConfig", "ResNetForImageClassification", "ResNet (transformers)"),
    "hf:regnet": ("RegNetConfig", "RegNetForImageClassification", "RegNet (transformers)"),
    "hf:convnext": ("ConvNextConfig", "ConvNextForImageClassification",
                    "ConvNeXt (transformers)"),
    "hf:convnextv2": ("ConvNextV2Config", "ConvNextV2ForImageClassification",
                      "ConvNeXt-V2 (transformers)"),
    "hf:mobilenet_v1": ("MobileNetV1Config", "MobileNetV1ForImageClassification",
                        "MobileNet V1 (transformers)"),
    "hf:mobilenet_v2": ("MobileNetV2Config", "MobileNetV2ForImageClassification",
                        "MobileNet V2 (transformers)"),
    "hf:efficientnet": ("EfficientNetConfig", "EfficientNetForImageClassification",
                        "EfficientNet (transformers, TF same pad)"),
    "hf:bit": ("BitConfig", "BitForImageClassification", "BiT (transformers, GroupNorm)"),
}


def _config_args(name: str, size: int, tiny: bool) -> dict:
    two = {"hidden_sizes": [16, 32], "depths": [1, 1]}
    if name in ("hf:resnet", "hf:regnet", "hf:bit"):
        args = dict(two, embedding_size=16) if tiny else {}
        if name == "hf:regnet" and tiny:
            args["groups_width"] = 8
        if name == "hf:bit" and tiny:
            args["num_groups"] = 8
        return args
    if name in ("hf:convnext", "hf:convnextv2"):
        return dict(two, num_stages=2) if tiny else {}
    if name in ("hf:mobilenet_v1", "hf:mobilenet_v2"):
        return {"image_size": size, "depth_multiplier": 0.35 if tiny else 1.0}
    if name == "hf:efficientnet":   # B0's widths; hidden_dim is the top conv's width
        w = 0.25 if tiny else 1.0
        return {"image_size": size, "width_coefficient": w, "depth_coefficient": w if tiny else 1.0,
                "hidden_dim": int(1280 * w)}
    raise KeyError(name)


def lively_weights(model, seed: int = 0) -> None:
    """Re-draw the weights so activations keep their scale through depth: He-normal
    convolutions, 1/sqrt(fan_in) linear layers, random norm affine parameters and
    BatchNorm running statistics."""
    import torch

    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, torch.nn.Conv2d):
                fan_in = m.weight[0].numel()
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) * (2 / fan_in) ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.Linear):
                m.weight.copy_(torch.randn(m.weight.shape, generator=g) / m.in_features ** 0.5)
                if m.bias is not None:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
            elif isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
                n = m.num_features
                m.running_mean.copy_(torch.randn(n, generator=g) * 0.1)
                m.running_var.copy_(torch.rand(n, generator=g) * 0.5 + 0.75)
            if isinstance(m, (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm,
                              torch.nn.GroupNorm)) or (
                    hasattr(m, "weight") and hasattr(m, "bias") and "Norm" in type(m).__name__):
                if getattr(m, "weight", None) is not None and m.weight.dim() == 1:
                    m.weight.copy_(torch.rand(m.weight.shape, generator=g) * 0.5 + 0.75)
                if getattr(m, "bias", None) is not None and m.bias.dim() == 1:
                    m.bias.copy_(torch.randn(m.bias.shape, generator=g) * 0.1)
        for name, p in model.named_parameters():
            # ConvNeXt's layer scale (1e-6 at init) would hide the blocks behind the shortcut
            if "layer_scale" in name:
                p.copy_(torch.full_like(p, 0.5))


def build(name: str, size: int = 128, num_labels: int = 10, tiny: bool = False):
    """``(model, inner_layer)`` for a zoo name (``hf:resnet``, ...), eval mode, random weights."""
    import torch
    import transformers

    cfg_cls, model_cls, _ = FAMILIES[name]
    torch.manual_seed(0)
    config = getattr(transformers, cfg_cls)(num_labels=num_labels,
                                           **_config_args(name, size, tiny))
    model = getattr(transformers, model_cls)(config).eval()
    lively_weights(model)
    stages = [n for n, _ in model.named_modules() if n.count(".") == 3 and ".stages." in n]
    inner = stages[-2] if len(stages) > 1 else None
    return model, inner
