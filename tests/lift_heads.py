"""Shared helpers for the lift tests: PyTorch heads, ONNX export, references (autograd, Captum)."""
from __future__ import annotations

import contextlib
import copy
import functools
import io
import warnings

import numpy as np
import onnx
import onnxruntime as ort
import torch
import torch.nn as nn
import torch.nn.functional as F

from liftcam.export.lift import DEVICE_OPS, build_multipliers_model

torch.set_num_threads(1)


# ----------------------------------------------------------------------------- export / run
def export_head(head: nn.Module, A: torch.Tensor, opset: int = 17) -> onnx.ModelProto:
    f = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.onnx.export(head, A, f, dynamo=False, opset_version=opset, input_names=["activation"],
                          output_names=["logits"],
                          dynamic_axes={"activation": {0: "N"}, "logits": {0: "N"}})
    return onnx.load_from_string(f.getvalue())


def check_device_ops(model: onnx.ModelProto) -> None:
    bad = sorted({n.op_type for n in model.graph.node} - DEVICE_OPS)
    assert not bad, f"ops outside DEVICE_OPS: {bad}"


def multipliers_model(head_onnx: onnx.ModelProto, rule: str) -> onnx.ModelProto:
    """build_multipliers_model plus the checks every generated graph must pass."""
    m = build_multipliers_model(head_onnx, rule)
    if m.ByteSize() < 100_000_000:
        onnx.checker.check_model(m, full_check=True)
    assert [i.name for i in m.graph.input] == ["activation", "target"]
    assert [o.name for o in m.graph.output] == ["logits", "multipliers"]
    check_device_ops(m)
    return m


class Runner:
    """An onnxruntime session over a multipliers graph."""

    def __init__(self, model: onnx.ModelProto):
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        so.log_severity_level = 3
        self.sess = ort.InferenceSession(model.SerializeToString(), so,
                                         providers=["CPUExecutionProvider"])

    def __call__(self, A, target):
        A = np.ascontiguousarray(np.asarray(A, np.float32))
        t = np.asarray(target, np.int64).reshape(-1)
        if t.size == 1 and A.shape[0] > 1:
            t = np.full(A.shape[0], int(t[0]), np.int64)
        return self.sess.run(None, {"activation": A, "target": t})


def lift(head: nn.Module, A: torch.Tensor, rule: str) -> Runner:
    return Runner(multipliers_model(export_head(head, A), rule))


# ----------------------------------------------------------------------------- references
def torch_grad(head: nn.Module, A: torch.Tensor, target) -> np.ndarray:
    """d logit[target_i] / dA for every image i (target: int or sequence)."""
    A = A.detach().clone().requires_grad_(True)
    y = head(A)
    t = torch.as_tensor(np.broadcast_to(np.asarray(target), (A.shape[0],)).copy())
    (g,) = torch.autograd.grad(y.gather(1, t.view(-1, 1)).sum(), A)
    return g.numpy()


def _unpool_add(x, indices, kernel_size, stride, padding, output_size):
    """max_unpool2d that *accumulates* where windows share an argmax (max-pooling's adjoint)."""
    n, c, h, w = output_size
    out = torch.zeros(n, c, h * w, dtype=x.dtype)
    out.scatter_add_(2, indices.flatten(2), x.flatten(2))
    return out.view(n, c, h, w)


@contextlib.contextmanager
def captum_accumulating_unpool():
    """Captum's max-pool rule with max_unpool2d (which *overwrites* where overlapping windows
    pick the same element, so the last window wins) replaced by the accumulating scatter, which
    is what the generated graph computes (and what the plain gradient does)."""
    import captum.attr._core.deep_lift as dlm

    def maxpool2d_add(module, inputs, outputs, grad_input, grad_output, eps=1e-10):
        return dlm.maxpool(module, F.max_pool2d, _unpool_add, inputs, outputs, grad_input,
                           grad_output, eps=eps)
    saved = dlm.SUPPORTED_NON_LINEAR[nn.MaxPool2d]
    dlm.SUPPORTED_NON_LINEAR[nn.MaxPool2d] = maxpool2d_add
    try:
        yield
    finally:
        dlm.SUPPORTED_NON_LINEAR[nn.MaxPool2d] = saved


def captum_deeplift(head: nn.Module, A: torch.Tensor, target,
                    accumulate_unpool: bool = False) -> np.ndarray:
    """Captum DeepLift multipliers against A0 = 0, image by image (captum issue #1276)."""
    from captum.attr import DeepLift
    dl = DeepLift(head, multiply_by_inputs=False)
    ts = np.broadcast_to(np.asarray(target), (A.shape[0],))
    out = []
    ctx = captum_accumulating_unpool() if accumulate_unpool else contextlib.nullcontext()
    with ctx:
        for i in range(A.shape[0]):
            a = A[i:i + 1].detach().clone()
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out.append(dl.attribute(a, torch.zeros_like(a), target=int(ts[i])).detach().numpy())
    return np.concatenate(out)


def assert_close(got, ref, rtol):
    ref = np.asarray(ref, np.float64)
    atol = rtol * max(float(np.abs(ref).max()), 1e-30)
    np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol)


# ----------------------------------------------------------------------------- inputs
def draw_activation(shape, seed: int, kind: str = "relu") -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    a = torch.randn(*shape, generator=g)
    return torch.relu(a) if kind == "relu" else a


def randomize_bn(model: nn.Module, seed: int = 0) -> nn.Module:
    """Random running statistics and affine parameters so BatchNorm is not the identity."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, nn.modules.batchnorm._BatchNorm):
                c = m.num_features
                m.running_mean.copy_(0.2 * torch.randn(c, generator=g))
                m.running_var.copy_(0.5 + torch.rand(c, generator=g))
                m.weight.copy_(0.8 + 0.4 * torch.rand(c, generator=g))
                m.bias.copy_(0.1 * torch.randn(c, generator=g))
    return model.eval()


# ----------------------------------------------------------------------------- torchvision heads
class SplitReluBottleneck(nn.Module):
    """torchvision's Bottleneck with one nn.ReLU per call (Captum refuses a reused module)."""

    def __init__(self, blk):
        super().__init__()
        self.conv1, self.bn1, self.conv2, self.bn2 = blk.conv1, blk.bn1, blk.conv2, blk.bn2
        self.conv3, self.bn3, self.downsample = blk.conv3, blk.bn3, blk.downsample
        self.relu1, self.relu2, self.relu3 = nn.ReLU(), nn.ReLU(), nn.ReLU()

    def forward(self, x):
        idt = x if self.downsample is None else self.downsample(x)
        out = self.relu1(self.bn1(self.conv1(x)))
        out = self.relu2(self.bn2(self.conv2(out)))
        out = self.bn3(self.conv3(out))
        return self.relu3(out + idt)


class FunctionalTail(nn.Module):
    """relu? -> adaptive_avg_pool2d(1) -> flatten -> classifier (densenet / mobilenet forward)."""

    def __init__(self, body, classifier, relu: bool):
        super().__init__()
        self.body, self.classifier, self.relu = body, classifier, relu

    def forward(self, x):
        x = self.body(x)
        if self.relu:
            x = F.relu(x)
        return self.classifier(torch.flatten(F.adaptive_avg_pool2d(x, (1, 1)), 1))


@functools.lru_cache(maxsize=None)
def torchvision_runner(name: str, cut: str, rule: str):
    """(head, activation shape, Runner) built once per test process (VGG-16 export is slow)."""
    head, shape = torchvision_head(name, cut)
    onnx_head = _torchvision_onnx(name, cut)
    return head, shape, Runner(multipliers_model(onnx_head, rule))


@functools.lru_cache(maxsize=None)
def _torchvision_onnx(name: str, cut: str):
    head, shape = torchvision_head(name, cut)
    return export_head(head, torch.zeros(1, *shape))


@functools.lru_cache(maxsize=None)
def torchvision_head(name: str, cut: str):
    """(head module, activation shape without batch) for a named split of a torchvision model."""
    import torchvision.models as tvm
    torch.manual_seed(0)
    if name == "vgg16":
        m = tvm.vgg16().eval()
        assert cut == "features.29"
        head = nn.Sequential(m.features[30], m.avgpool, nn.Flatten(), m.classifier)
        return head.eval(), (512, 14, 14)
    if name == "resnet50":
        m = randomize_bn(tvm.resnet50())
        tail = [m.avgpool, nn.Flatten(), m.fc]
        if cut == "layer4":
            return nn.Sequential(*tail).eval(), (2048, 4, 4)
        assert cut == "layer3"
        layer4 = nn.Sequential(*[SplitReluBottleneck(b) for b in m.layer4])
        return nn.Sequential(layer4, *tail).eval(), (1024, 8, 8)
    if name == "mobilenet_v2":
        m = randomize_bn(tvm.mobilenet_v2())
        if cut == "features":
            return FunctionalTail(nn.Identity(), m.classifier, relu=False).eval(), (1280, 4, 4)
        assert cut == "features.13"
        return FunctionalTail(m.features[14:], m.classifier, relu=False).eval(), (96, 8, 8)
    if name == "densenet121":
        m = randomize_bn(tvm.densenet121())
        if cut == "features":
            return FunctionalTail(nn.Identity(), m.classifier, relu=True).eval(), (1024, 4, 4)
        assert cut == "features.transition3"
        body = nn.Sequential(m.features.denseblock4, m.features.norm5)
        return FunctionalTail(body, m.classifier, relu=True).eval(), (512, 4, 4)
    if name == "efficientnet_b0":
        m = randomize_bn(tvm.efficientnet_b0())
        tail = [m.avgpool, nn.Flatten(), m.classifier]
        if cut == "features":
            return nn.Sequential(*tail).eval(), (1280, 4, 4)
        assert cut == "features.5"
        return nn.Sequential(m.features[6:], *tail).eval(), (112, 8, 8)
    raise KeyError(name)


# ----------------------------------------------------------------------------- small custom heads
def conv_act_head(act: nn.Module, k: int = 6, c: int = 5) -> nn.Module:
    """Conv -> act -> Conv -> act -> GAP -> Linear, fresh activation modules (Captum-friendly)."""
    torch.manual_seed(1)
    return nn.Sequential(nn.Conv2d(k, 8, 3, padding=1), act, nn.Conv2d(8, 8, 3, padding=1),
                         copy.deepcopy(act), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(8, c)).eval()


def pool_head(pool: nn.Module, k: int = 6, c: int = 5, hw: int = 6) -> nn.Module:
    """Conv -> ReLU -> Conv1x1 -> pool -> Flatten -> Linear (pool output size by a dry run).

    The 1x1 conv keeps the ReLU and the pool from being adjacent: Captum's DeepLift hooks the
    output tensor of one module and the input tensor of the next, so when two hooked modules
    touch, the upstream one records the gradient *before* the downstream rule replaces it and
    Captum's max-pool rule is silently lost. All-zero ReLU windows still tie after the 1x1 conv.
    """
    torch.manual_seed(2)
    body = nn.Sequential(nn.Conv2d(k, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 1), pool)
    with torch.no_grad():
        n = body(torch.zeros(1, k, hw, hw)).numel()
    return nn.Sequential(*body, nn.Flatten(), nn.Linear(n, c)).eval()


class ShapeOpsHead(nn.Module):
    """cat / split / slice / transpose / squeeze / unsqueeze / pad / mean / matmul / sub / div."""

    def __init__(self, k=6, c=5):
        super().__init__()
        torch.manual_seed(3)
        self.conv = nn.Conv2d(k, 8, 3, padding=1)
        self.w = nn.Parameter(torch.randn(8, c) * 0.3)
        self.fc = nn.Linear(8 * 7, c)

    def forward(self, x):
        x = torch.relu(self.conv(x))                       # (N,8,6,6)
        x = torch.cat([x, 2.0 * x[:, :, 1:5, :]], dim=2)   # (N,8,10,6)
        a, b = torch.split(x, [4, 6], dim=2)
        x = a.transpose(2, 3)[:, :, :, :3] - b[:, :, :, 1:4] / 3.0   # (N,8,6,3)
        x = F.pad(x, (1, 0, 0, 2), value=0.5)              # (N,8,8,4)
        x = x.unsqueeze(1).squeeze(1)
        m = x.mean(dim=(2, 3))                             # (N,8)
        y1 = m @ self.w
        z = torch.tanh(x[:, :, :7, 0])                     # (N,8,7) slice + gather
        y2 = self.fc(z.reshape(z.shape[0], -1))
        return y1 - y2 + (-m).sum(dim=1, keepdim=True)


class BNHead(nn.Module):
    """ReLU -> BatchNorm (not fused into a conv) -> SE-style gate (Mul of two tensors) -> Linear."""

    def __init__(self, k=6, c=5):
        super().__init__()
        torch.manual_seed(4)
        self.bn = nn.BatchNorm2d(k)
        self.fc1, self.fc2 = nn.Conv2d(k, 3, 1), nn.Conv2d(3, k, 1)
        self.fc = nn.Linear(k, c)
        randomize_bn(self)

    def forward(self, x):
        x = self.bn(torch.relu(x))
        s = torch.sigmoid(self.fc2(F.silu(self.fc1(F.adaptive_avg_pool2d(x, 1)))))
        x = x * s
        return self.fc(torch.flatten(F.adaptive_avg_pool2d(x, 1), 1))


ACTIVATIONS = {
    "relu": nn.ReLU, "sigmoid": nn.Sigmoid, "tanh": nn.Tanh,
    "leaky_relu": lambda: nn.LeakyReLU(0.1), "elu": lambda: nn.ELU(0.7),
    "softplus": nn.Softplus, "relu6": nn.ReLU6, "hardsigmoid": nn.Hardsigmoid,
    "hardswish": nn.Hardswish, "gelu": nn.GELU, "gelu_tanh": lambda: nn.GELU(approximate="tanh"),
    "silu": nn.SiLU, "prelu": lambda: nn.PReLU(8, 0.2),
}
CAPTUM_ACTIVATIONS = ["relu", "sigmoid", "tanh", "leaky_relu", "elu", "softplus"]
