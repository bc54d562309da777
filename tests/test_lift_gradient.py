"""gradient rule == torch autograd of logit[target] w.r.t. the activation."""
import pytest
import torch.nn as nn
from lift_heads import (
    ACTIVATIONS,
    BNHead,
    ShapeOpsHead,
    assert_close,
    conv_act_head,
    draw_activation,
    lift,
    pool_head,
    torch_grad,
    torchvision_runner,
)

TV_SPLITS = [
    ("vgg16", "features.29"),
    ("resnet50", "layer4"),
    ("resnet50", "layer3"),
    ("mobilenet_v2", "features"),
    ("mobilenet_v2", "features.13"),
    ("densenet121", "features"),
    ("densenet121", "features.transition3"),
    ("efficientnet_b0", "features"),
    ("efficientnet_b0", "features.5"),
]


def _check(head, A, targets, rtol=1e-5):
    run = lift(head, A, "gradient")
    y, M = run(A.numpy(), targets)
    assert_close(y, head(A).detach().numpy(), rtol=1e-4)
    assert_close(M, torch_grad(head, A, targets), rtol=rtol)


@pytest.mark.parametrize("name,cut", TV_SPLITS, ids=[f"{n}@{c}" for n, c in TV_SPLITS])
def test_torchvision_heads(name, cut):
    head, shape, run = torchvision_runner(name, cut, "gradient")
    A = draw_activation((2, *shape), seed=11)
    y, M = run(A.numpy(), [3, 917])
    assert_close(y, head(A).detach().numpy(), rtol=1e-4)
    assert_close(M, torch_grad(head, A, [3, 917]), rtol=1e-5)


@pytest.mark.parametrize("act", sorted(ACTIVATIONS))
@pytest.mark.parametrize("kind", ["relu", "normal"])
def test_activations(act, kind):
    head = conv_act_head(ACTIVATIONS[act]())
    A = draw_activation((3, 6, 5, 5), seed=5, kind=kind) * 2.0
    _check(head, A, [0, 2, 4])


POOLS = {
    "max2": lambda: nn.MaxPool2d(2),
    "max3s2p1": lambda: nn.MaxPool2d(3, 2, 1),
    "max3s1p1": lambda: nn.MaxPool2d(3, 1, 1),
    "max2s1": lambda: nn.MaxPool2d(2, 1),
    "max3s2_ceil": lambda: nn.MaxPool2d(3, 2, ceil_mode=True),
    "avg2": lambda: nn.AvgPool2d(2),
    "avg3s2p1": lambda: nn.AvgPool2d(3, 2, 1),
    "avg3s2p1_nopad": lambda: nn.AvgPool2d(3, 2, 1, count_include_pad=False),
    "avg3s1p1_nopad": lambda: nn.AvgPool2d(3, 1, 1, count_include_pad=False),
    "avg2s3": lambda: nn.AvgPool2d(2, 3),
    "zeropad": lambda: nn.ZeroPad2d((1, 2, 0, 1)),
}


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("hw", [6, 7])
def test_pooling(pool, hw):
    head = pool_head(POOLS[pool](), hw=hw)
    A = draw_activation((2, 6, hw, hw), seed=7, kind="normal")
    _check(head, A, [1, 3])


def test_maxpool_ties_break_like_torch():
    # post-ReLU zeros make whole windows tie: the gradient must go to the first element
    head = nn.Sequential(nn.ReLU(), nn.MaxPool2d(3, 2, 1), nn.Flatten(),
                         nn.Linear(6 * 3 * 3, 4)).eval()
    A = draw_activation((2, 6, 6, 6), seed=8, kind="normal") - 0.8
    A[:, :, :3, :3] = 0.25  # exact ties of positive values too
    _check(head, A, [0, 2])


@pytest.mark.parametrize("head_cls", [ShapeOpsHead, BNHead])
def test_shape_ops_bn_and_gates(head_cls):
    head = head_cls().eval()
    A = draw_activation((3, 6, 6, 6), seed=9, kind="normal")
    _check(head, A, [0, 1, 4])
