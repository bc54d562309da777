"""deeplift rule == captum.attr.DeepLift(head, multiply_by_inputs=False), reference A0 = 0."""
import pytest
import torch.nn as nn
from lift_heads import (
    ACTIVATIONS,
    CAPTUM_ACTIVATIONS,
    assert_close,
    captum_deeplift,
    conv_act_head,
    draw_activation,
    lift,
    pool_head,
    torchvision_runner,
)

RTOL = 1e-4


def _check(head, A, targets, accumulate_unpool=False):
    run = lift(head, A, "deeplift")
    _, M = run(A.numpy(), targets)
    assert_close(M, captum_deeplift(head, A, targets, accumulate_unpool), rtol=RTOL)


@pytest.mark.parametrize("kind", ["relu", "normal"])
@pytest.mark.parametrize("name,cut", [("vgg16", "features.29"), ("resnet50", "layer3")])
def test_torchvision_heads(name, cut, kind):
    head, shape, run = torchvision_runner(name, cut, "deeplift")
    A = draw_activation((2, *shape), seed=21, kind=kind)
    _, M = run(A.numpy(), [3, 917])
    assert_close(M, captum_deeplift(head, A, [3, 917]), rtol=RTOL)


@pytest.mark.parametrize("act", CAPTUM_ACTIVATIONS)
@pytest.mark.parametrize("kind", ["relu", "normal"])
def test_activations(act, kind):
    head = conv_act_head(ACTIVATIONS[act]())
    A = draw_activation((2, 6, 5, 5), seed=22, kind=kind) * 2.0
    _check(head, A, [0, 3])


POOLS = {"max2": lambda: nn.MaxPool2d(2), "max3s3": lambda: nn.MaxPool2d(3),
         "max2_ceil": lambda: nn.MaxPool2d(2, ceil_mode=True)}
OVERLAPPING = {"max3s2p1": lambda: nn.MaxPool2d(3, 2, 1), "max2s1": lambda: nn.MaxPool2d(2, 1),
               "max3s2_ceil": lambda: nn.MaxPool2d(3, 2, ceil_mode=True)}


@pytest.mark.parametrize("pool", sorted(POOLS))
@pytest.mark.parametrize("kind", ["relu", "normal"])
def test_maxpool(pool, kind):
    head = pool_head(POOLS[pool](), hw=7)
    A = draw_activation((2, 6, 7, 7), seed=23, kind=kind)
    _check(head, A, [1, 4])


@pytest.mark.parametrize("pool", sorted(OVERLAPPING))
@pytest.mark.parametrize("kind", ["relu", "normal"])
def test_overlapping_maxpool(pool, kind):
    # Captum's max_unpool2d overwrites where overlapping windows share an argmax; the graph
    # accumulates (the adjoint of pooling, as the gradient does): compare with that variant.
    head = pool_head(OVERLAPPING[pool](), hw=7)
    A = draw_activation((2, 6, 7, 7), seed=23, kind=kind)
    _check(head, A, [1, 4], accumulate_unpool=True)


def test_maxpool_on_activation_with_ties():
    # max-pool right on a post-ReLU activation: all-zero windows tie, argmax must be the first
    torch_head = nn.Sequential(nn.MaxPool2d(2), nn.Conv2d(6, 8, 1), nn.Tanh(), nn.Conv2d(8, 8, 1),
                               nn.MaxPool2d(3, 2, 1), nn.Flatten(), nn.Linear(8 * 2 * 2, 4)).eval()
    A = draw_activation((2, 6, 8, 8), seed=24, kind="normal") - 0.7
    A = A.clamp(min=0)
    _check(torch_head, A, [0, 2], accumulate_unpool=True)
