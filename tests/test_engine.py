"""Explainer and the CAM methods against float64 references computed with PyTorch/numpy.

The references never go through liftcam's graphs: gradients come from torch autograd on the
PyTorch head, method formulas are written out in float64 numpy, upsampling is torch's
``F.interpolate(bilinear, align_corners=False)``.
"""
import itertools
import math
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import torch
import torch.nn.functional as F

import liftcam
from liftcam.engine.errors import InputError

H = W = 16


class Net(torch.nn.Module):
    """features (K channels at 8×8) then a head: non-linear (max-pool + ReLU MLP) or linear."""

    def __init__(self, K, linear, classes=5):
        super().__init__()
        self.features = torch.nn.Sequential(
            torch.nn.Conv2d(3, 8, 3, padding=1), torch.nn.ReLU(),
            torch.nn.MaxPool2d(2),
            torch.nn.Conv2d(8, K, 3, padding=1), torch.nn.ReLU())
        if linear:
            self.head = torch.nn.Sequential(torch.nn.AdaptiveAvgPool2d(1), torch.nn.Flatten(),
                                            torch.nn.Linear(K, classes))
        else:
            self.head = torch.nn.Sequential(torch.nn.MaxPool2d(2), torch.nn.Flatten(),
                                            torch.nn.Linear(K * 16, 24), torch.nn.ReLU(),
                                            torch.nn.Linear(24, classes))

    def forward(self, x):
        return self.head(self.features(x))


def _make(tmp_path_factory, K, linear, seed):
    torch.manual_seed(seed)
    net = Net(K, linear).eval()
    with torch.no_grad():   # spread the logits so targets differ between images
        for p in net.parameters():
            p.mul_(2.0)
        net.head[-1].bias.zero_()
    path = liftcam.export(net, "features", input_shape=(3, H, W),
                          out_dir=tmp_path_factory.mktemp("b") / "net.liftcam")
    return net.double(), liftcam.Explainer(path)


@pytest.fixture(scope="module")
def mlp(tmp_path_factory):
    return _make(tmp_path_factory, K=6, linear=False, seed=1)


@pytest.fixture(scope="module")
def linear(tmp_path_factory):
    return _make(tmp_path_factory, K=6, linear=True, seed=2)


def _images(n, seed=0):
    return np.random.default_rng(seed).standard_normal((n, 3, H, W)).astype(np.float32)


# ----------------------------------------------------------------- float64 references
def _ref_grad(net, A, targets):
    A = torch.tensor(A, dtype=torch.float64, requires_grad=True)
    y = net.head(A)
    y[torch.arange(len(targets)), torch.as_tensor(targets)].sum().backward()
    return y.detach().numpy(), A.grad.numpy()


def _ref_tail(S):
    low = np.maximum(S, 0)
    up = F.interpolate(torch.tensor(low)[:, None], size=(H, W), mode="bilinear",
                       align_corners=False)[:, 0].numpy()
    lo = up.min(axis=(1, 2), keepdims=True)
    rng = up.max(axis=(1, 2), keepdims=True) - lo
    const = (low.max(axis=(1, 2)) == low.min(axis=(1, 2)))[:, None, None]
    return low, np.where(const | (rng <= 0), 0.0, (up - lo) / np.where(rng > 0, rng, 1))


def _head_logits(net, A):
    with torch.no_grad():
        return net.head(torch.tensor(A, dtype=torch.float64)).numpy()


def _head_scores(net, A, target):
    return _head_logits(net, A)[:, target]


def _ref_weights(method, net, x, A, t):
    A = A.astype(np.float64)
    _, G = _ref_grad(net, A, t)
    sA = A.sum(axis=(2, 3))
    if method == "gradcam":
        return G.mean(axis=(2, 3)), None
    if method == "gradcam++":
        g2 = G ** 2
        a = np.where(G != 0, g2 / (2 * g2 + sA[:, :, None, None] * g2 * G + 1e-6), 0)
        return (np.maximum(G, 0) * a).sum(axis=(2, 3)), None
    if method == "xgradcam":
        return (G * A).sum(axis=(2, 3)) / (sA + 1e-7), None
    if method == "layercam":
        P = np.maximum(G, 0) * A
        return P.sum(axis=(2, 3)), P.sum(axis=1)
    if method == "hirescam":
        return (G * A).sum(axis=(2, 3)), (G * A).sum(axis=1)
    if method == "ablationcam":
        w = np.empty(A.shape[:2])
        for n in range(len(A)):
            y = _head_scores(net, A[n:n + 1], t[n])[0]
            for k in range(A.shape[1]):
                Ak = A[n:n + 1].copy()
                Ak[:, k] = 0
                w[n, k] = (y - _head_scores(net, Ak, t[n])[0]) / y
        return w, None
    if method == "scorecam":
        w = np.empty(A.shape[:2])
        for n in range(len(A)):
            up = F.interpolate(torch.tensor(A[n])[:, None], size=(H, W), mode="bilinear",
                               align_corners=False)[:, 0].numpy()
            lo = up.min(axis=(1, 2), keepdims=True)
            m = (up - lo) / (up.max(axis=(1, 2), keepdims=True) - lo + 1e-8)
            with torch.no_grad():
                s = net(torch.tensor(x[n][None].astype(np.float64) * m[:, None])).numpy()[:, t[n]]
            e = np.exp(s - s.max())
            w[n] = e / e.sum()
        return w, None
    raise AssertionError(method)


@pytest.mark.parametrize("method", ["gradcam", "gradcam++", "xgradcam", "layercam", "hirescam",
                                    "ablationcam", "scorecam"])
def test_method_matches_float64_reference(mlp, method):
    net, ex = mlp
    x = _images(4, seed=3)
    e = ex.explain(x, method=method, progress=False)
    A = ex.features(x)
    w_ref, S_ref = _ref_weights(method, net, x, A, e.targets)
    scale = np.abs(w_ref).max()
    np.testing.assert_allclose(e.weights, w_ref, rtol=1e-4, atol=1e-5 * scale)
    if S_ref is None:
        S_ref = np.einsum("nk,nkij->nij", w_ref, A.astype(np.float64))
    low_ref, maps_ref = _ref_tail(S_ref)
    np.testing.assert_allclose(e.low_res, low_ref, rtol=1e-4, atol=1e-5 * np.abs(low_ref).max())
    np.testing.assert_allclose(e.maps, maps_ref, atol=1e-4)
    assert e.maps.min() >= 0 and e.maps.max() <= 1


def test_scorecam_evaluates_the_zero_image_once_for_dead_channels(tmp_path):
    """Channels that are zero everywhere have the all-zero mask: one run of the zero image
    serves them all, and the weights still equal the float64 reference that runs each one."""
    torch.manual_seed(4)
    net = Net(6, linear=False).eval()
    with torch.no_grad():
        for p in net.parameters():
            p.mul_(2.0)
        net.features[3].bias[[0, 3]] = -1e4            # channels 0 and 3: always zero
    ex = liftcam.Explainer(liftcam.export_model(net, "features", input_shape=(3, H, W),
                                                out_dir=tmp_path / "dead.liftcam"))
    net = net.double()
    x = _images(3, seed=6)
    rows = []
    predict = ex.predict
    ex.predict = lambda xs: rows.append(len(xs)) or predict(xs)
    e = ex.explain(x, method="scorecam", progress=False)
    A = ex.features(x)
    assert not A[:, [0, 3]].any() and A[:, [1, 2, 4, 5]].reshape(3, 4, -1).any(axis=2).all()
    assert sum(rows) == 3 * 4 + 1                      # 4 live channels per image + one zero image
    w_ref, _ = _ref_weights("scorecam", net, x, A, e.targets)
    np.testing.assert_allclose(e.weights, w_ref, rtol=1e-4, atol=1e-6)


def test_targets_default_to_predicted_class_and_logits_match_torch(mlp):
    net, ex = mlp
    x = _images(6, seed=4)
    e = ex.explain(x)
    with torch.no_grad():
        y = net(torch.tensor(x, dtype=torch.float64)).numpy()
    np.testing.assert_allclose(e.logits, y, rtol=1e-4, atol=1e-5 * np.abs(y).max())
    np.testing.assert_array_equal(e.targets, y.argmax(axis=1))
    assert len(set(e.targets.tolist())) > 1, "test images should not all predict one class"
    explicit = ex.explain(x, targets=e.targets)
    np.testing.assert_array_equal(explicit.weights, e.weights)
    other = ex.explain(x, targets=(e.targets + 1) % 5)
    assert not np.allclose(other.weights, e.weights)


def test_liftcam_completeness_and_batching(mlp):
    net, ex = mlp
    x = _images(7, seed=5)
    e = ex.explain(x)
    A = ex.features(x).astype(np.float64)
    y = _head_logits(net, A)
    y0 = _head_logits(net, np.zeros_like(A[:1]))
    delta = y[np.arange(7), e.targets] - y0[0, e.targets]
    np.testing.assert_allclose(e.weights.sum(axis=1), delta, rtol=1e-4, atol=1e-4)
    chunked = ex.explain(x, batch_size=3)
    for k in ("logits", "targets", "weights", "low_res", "maps"):
        np.testing.assert_allclose(getattr(chunked, k), getattr(e, k), rtol=1e-5, atol=1e-6)


def test_liftcam_equals_cam_on_linear_head(linear):
    net, ex = linear
    x = _images(5, seed=6)
    lift = ex.explain(x, method="liftcam")
    cam = ex.explain(x, method="cam")
    A = ex.features(x).astype(np.float64)
    Wfc = net.head[2].weight.detach().numpy()
    np.testing.assert_allclose(cam.weights, Wfc[lift.targets], rtol=1e-5, atol=1e-6)
    # LIFT-CAM's alpha on a GAP→FC head is W_ck · mean_ij A_k, the exact SHAP value, and its
    # map is CAM's map (the two weightings differ by the per-channel factor mean_ij A_k only
    # through the map, so compare the maps of CAM with LIFT-CAM's weighted sum)
    np.testing.assert_allclose(lift.weights, Wfc[lift.targets] * A.mean(axis=(2, 3)),
                               rtol=1e-4, atol=1e-6)
    shap = ex.explain(x, method="shap")
    np.testing.assert_allclose(lift.weights, shap.weights, rtol=1e-4, atol=1e-5)


def test_cam_refuses_a_nonlinear_head(mlp):
    _, ex = mlp
    with pytest.raises(InputError, match="linear head"):
        ex.explain(_images(1), method="cam")


def _brute_force_shap(net, A_n, target):
    """Average marginal contribution over all K! orderings (independent of the subset formula)."""
    K = A_n.shape[0]
    cache = {}

    def v(present):
        key = frozenset(present)
        if key not in cache:
            mask = np.zeros(K)
            mask[list(present)] = 1
            cache[key] = _head_scores(net, (A_n * mask[:, None, None])[None], target)[0]
        return cache[key]

    phi = np.zeros(K)
    perms = list(itertools.permutations(range(K)))
    for order in perms:
        present = []
        for k in order:
            before = v(present)
            present.append(k)
            phi[k] += v(present) - before
    return phi / len(perms)


def test_shap_exact_equals_brute_force(mlp):
    net, ex = mlp
    x = _images(2, seed=7)
    e = ex.explain(x, method="shap")
    assert e.extra["shap_exact"]
    A = ex.features(x).astype(np.float64)
    for n in range(2):
        ref = _brute_force_shap(net, A[n], e.targets[n])
        np.testing.assert_allclose(e.weights[n], ref, rtol=1e-4, atol=1e-5 * np.abs(ref).max())
        # efficiency: Shapley values sum to v(all) - v(none)
        full = _head_scores(net, A[n:n + 1], e.targets[n])[0]
        empty = _head_scores(net, np.zeros_like(A[:1]), e.targets[n])[0]
        assert math.isclose(ref.sum(), full - empty, rel_tol=1e-9, abs_tol=1e-9)


def test_sampled_shap_converges_within_its_standard_error(mlp):
    _, ex = mlp
    x = _images(1, seed=8)
    exact = ex.explain(x, method="shap").weights[0]
    sampled = ex.explain(x, method="shap", n_samples=400, seed=1)
    err = sampled.extra["shap_stderr"][0]
    assert not sampled.extra["shap_exact"]
    varies = err > 0          # a dead channel (A_k = 0) contributes exactly 0 in every sample
    assert varies.sum() >= 3
    np.testing.assert_allclose(sampled.weights[0][~varies], exact[~varies], atol=1e-6)
    z = np.abs(sampled.weights[0] - exact)[varies] / err[varies]
    assert np.all(z < 4.5), z
    few = ex.explain(x, method="shap", n_samples=25, seed=1).extra["shap_stderr"][0]
    assert np.all(few[varies] > err[varies]), "the standard error must shrink with more samples"


def test_explain_onnx_runs_in_plain_onnxruntime(mlp, tmp_path):
    _, ex = mlp
    x = _images(3, seed=9)
    np.save(tmp_path / "x.npy", x)
    for method, onnx_name in (("liftcam", "explain.onnx"), ("gradcam", "explain_gradcam.onnx")):
        e = ex.explain(x, method=method)
        script = textwrap.dedent(f"""
            import sys, numpy as np, onnxruntime as ort
            s = ort.InferenceSession({str(ex.bundle.path / onnx_name)!r},
                                     providers=["CPUExecutionProvider"])
            x = np.load({str(tmp_path / "x.npy")!r})
            logits, w, m = s.run(["logits", "weights", "map"],
                                 {{"image": x, "target": np.full(len(x), -1, np.int64)}})
            assert "liftcam" not in sys.modules and "torch" not in sys.modules
            np.savez({str(tmp_path / "out.npz")!r}, logits=logits, w=w, m=m)
        """)
        subprocess.run([sys.executable, "-c", script], check=True, cwd=tmp_path)
        out = np.load(tmp_path / "out.npz")
        np.testing.assert_allclose(out["logits"], e.logits, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(out["w"], e.weights, rtol=1e-5,
                                   atol=1e-5 * np.abs(e.weights).max())
        np.testing.assert_allclose(out["m"], e.maps, atol=1e-5)


@pytest.mark.parametrize("bad, match", [
    (np.zeros((2, 3, H), np.float32), "shape"),
    (np.zeros((2, 3, H + 1, W), np.float32), "shape"),
    (np.zeros((2, 3, H, W), np.float64), "float32"),
    (np.zeros((0, 3, H, W), np.float32), "empty"),
    ([[1.0]], "numpy array"),
])
def test_bad_images_are_refused(mlp, bad, match):
    _, ex = mlp
    with pytest.raises(InputError, match=match):
        ex.explain(bad)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf])
def test_non_finite_images_are_refused(mlp, value):
    _, ex = mlp
    x = _images(3)
    x[1, 0, 2, 2] = value
    with pytest.raises(InputError, match=r"NaN or Inf values \(images \[1\]\)"):
        ex.explain(x)


@pytest.mark.parametrize("targets, match", [
    (5, "out of range"), (-1, "out of range"), ([0, 1, 2], "sequence of 2"),
    ([0.5, 1.0], "integers"), ([[0, 1]], "sequence of 2"),
])
def test_bad_targets_are_refused(mlp, targets, match):
    _, ex = mlp
    with pytest.raises(InputError, match=match):
        ex.explain(_images(2), targets=targets)


def test_unknown_method_option_and_provider_are_refused(mlp):
    _, ex = mlp
    with pytest.raises(InputError, match="unknown method 'gradcamm'.*liftcam"):
        ex.explain(_images(1), method="gradcamm")
    with pytest.raises(InputError, match="unknown option"):
        ex.explain(_images(1), n_sample=3)
    with pytest.raises(InputError, match="not available"):
        liftcam.Explainer(ex.bundle, providers=["FooExecutionProvider"])
    with pytest.raises(InputError, match="batch_size"):
        ex.explain(_images(1), batch_size=0)
    with pytest.raises(InputError, match="rule"):
        ex.multipliers(ex.features(_images(1)), rule="lrp")


def test_engine_imports_without_torch_or_onnx():
    code = ("import sys; sys.modules['torch'] = None; sys.modules['onnx'] = None; "
            "import liftcam, liftcam.engine.explainer, liftcam.engine.methods, "
            "liftcam.engine.bundle, liftcam.engine.tail, liftcam.metrics, "
            "liftcam.kernels; print('ok')")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip() == "ok", out.stderr


def test_kernel_asked_for_without_cuda_is_refused(mlp):
    _, ex = mlp
    assert ex.use_kernel is False and ex.on_device is False
    with pytest.raises(InputError, match="use_kernel=True needs the CUDA execution provider"):
        liftcam.Explainer(ex.bundle, use_kernel=True)


def test_cpu_liftcam_alpha_graph_equals_sum_of_a_times_m(mlp):
    _, ex = mlp
    assert "alpha_deeplift" in ex.bundle.manifest["graphs"]   # max-pool + MLP head: §5 applies
    x = _images(4, seed=11)
    A = ex.features(x)
    _, M = ex.multipliers(A)
    np.testing.assert_allclose(ex.explain(x).weights, (A.astype(np.float64) * M).sum(axis=(2, 3)),
                               rtol=1e-5, atol=1e-6)
