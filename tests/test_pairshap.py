"""pairshap: the two-marginal channel SHAP estimator (engine/methods/pairshap.py).

- On a game with at most pairwise interactions it IS the Shapley value: checked on numpy heads
  that are degree-2 polynomials of the channel presences (closed form a_k + ½ Σ_j b_jk and the
  exact 2^K SHAP of engine/methods/shap.py, K = 1 … 12), and on an exported ONNX bundle whose
  head is a degree-2 polynomial of the channels' mean activations (through Explainer).
- On a head with higher-order interactions (a cubic term) it is not: the test shows the error.
- Through Explainer on a max-pool + ReLU-MLP head: its two marginals equal brute-force head
  evaluations in float64 torch; eval_batch does not change the result; progress ticks add up to
  the registry record's evaluation count (2K + 1 per image).
"""
import numpy as np
import pytest

from liftcam.engine.methods import METHODS, pairshap, shap
from liftcam.engine.methods.base import Batch


class PolyHead:
    """A fake explainer whose head's logit c is c0 + Σ a_k m_k + Σ_{j<k} b_jk m_j m_k
    (+ t Σ_{i<j<k} m_i m_j m_k), m_k = 1 when channel k is present (not all zero)."""

    def __init__(self, K, classes=3, seed=0, cubic=0.0, eval_batch=7):
        rng = np.random.default_rng(seed)
        self.c0 = rng.normal(size=classes)
        self.a = rng.normal(size=(classes, K))
        b = np.triu(rng.normal(size=(classes, K, K)), 1)
        self.B = b + b.transpose(0, 2, 1)            # symmetric, zero diagonal
        self.cubic, self.eval_batch, self.calls = cubic, eval_batch, []

    def head(self, A):
        self.calls.append(len(A))
        assert len(A) <= self.eval_batch
        m = (A != 0).any(axis=(2, 3)).astype(np.float64)           # (R, K)
        y = self.c0 + m @ self.a.T + 0.5 * np.einsum("rj,cjk,rk->rc", m, self.B, m)
        if self.cubic:
            s1, s2, s3 = m.sum(1), (m ** 2).sum(1), (m ** 3).sum(1)
            y = y + self.cubic * ((s1 ** 3 - 3 * s1 * s2 + 2 * s3) / 6)[:, None]
        return y.astype(np.float32)

    def closed_form(self, c):
        return self.a[c] + 0.5 * self.B[c].sum(axis=1)


def _batch(ex, K, N=2, seed=1):
    rng = np.random.default_rng(seed)
    A = (rng.random((N, K, 3, 3)) + 0.1).astype(np.float32)   # every channel present
    ticks = []
    return Batch(ex, None, A, np.array([0, 2][:N], np.int64), progress=ticks.append), ticks


@pytest.mark.parametrize("K", [1, 2, 3, 5, 8, 12])
def test_exact_on_degree_two_polynomial_games(K):
    ex = PolyHead(K, seed=K)
    b, ticks = _batch(ex, K)
    w, S, extra = pairshap.pairshap(b)
    exact, _, _ = shap.shap(Batch(ex, None, b.A, b.targets))
    for n, c in enumerate(b.targets):
        np.testing.assert_allclose(w[n], ex.closed_form(c), rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(w[n], exact[n], rtol=1e-5, atol=1e-5)
        # the two marginals are the ends: a_k and a_k + Σ_j b_jk
        np.testing.assert_allclose(extra["pairshap_first"][n], ex.a[c], atol=1e-5)
        np.testing.assert_allclose(extra["pairshap_last"][n], ex.a[c] + ex.B[c].sum(1),
                                   atol=1e-4)
    assert S.shape == (2, 3, 3)
    assert sum(ticks) == METHODS["pairshap"].count(2, K) == 2 * (2 * K + 1)
    assert max(ex.calls[1:]) <= ex.eval_batch      # chunked by eval_batch (first: logits)


def test_not_exact_beyond_pairwise_interactions():
    K = 6
    ex = PolyHead(K, seed=3, cubic=1.0)
    b, _ = _batch(ex, K)
    w, _, _ = pairshap.pairshap(b)
    exact, _, _ = shap.shap(Batch(ex, None, b.A, b.targets))
    # a symmetric 3-way term t·Σ m_i m_j m_k: Shapley adds t·C(K−1,2)/3, pairshap t·C(K−1,2)/2
    np.testing.assert_allclose(w - exact, 10 / 2 - 10 / 3, rtol=1e-4)


# ----------------------------------------------------------------------------- bundles


torch = pytest.importorskip("torch")
liftcam = pytest.importorskip("liftcam")


class QuadNet(torch.nn.Module):
    """features (K channels, ReLU) then a head y = g·a_c + g^T B_c g with g = GAP(A): zeroing
    channel k zeroes g_k, so the channel game is pairwise and pairshap must equal exact SHAP."""

    def __init__(self, K, classes=4):
        super().__init__()
        self.features = torch.nn.Sequential(torch.nn.Conv2d(3, K, 3, padding=1),
                                            torch.nn.ReLU())
        self.lin = torch.nn.Linear(K, classes)
        self.quad = torch.nn.Linear(K, classes * K, bias=False)
        self.K, self.classes = K, classes

    def forward(self, x):
        g = self.features(x).mean(dim=(2, 3))
        q = (self.quad(g).view(-1, self.classes, self.K) * g.unsqueeze(1)).sum(-1)
        return self.lin(g) + q


@pytest.fixture(scope="module")
def quad(tmp_path_factory):
    torch.manual_seed(0)
    net = QuadNet(10).eval()
    with torch.no_grad():
        net.quad.weight.mul_(4.0)
    path = liftcam.export_model(net, "features", input_shape=(3, 8, 8),
                                out_dir=tmp_path_factory.mktemp("q") / "quad.liftcam")
    return liftcam.Explainer(path, eval_batch=5)


def test_exported_pairwise_head_pairshap_equals_exact_shap(quad):
    x = np.random.default_rng(0).normal(size=(3, 3, 8, 8)).astype(np.float32)
    ticks = []
    e = quad.explain(x, method="pairshap", progress=ticks.append)
    ref = quad.explain(x, method="shap")
    scale = np.abs(ref.weights).max()
    np.testing.assert_allclose(e.weights, ref.weights, atol=2e-5 * scale)
    assert sum(ticks) == 3 * 21
    # (LIFT-CAM is exact here too: DeepLIFT's Shapley split of a product of two linear
    # functions of g is exact; the max-pool + ReLU-MLP heads of the benchmarks are where they
    # differ, see benchmarks/shap_closeness.py)


def test_marginals_match_torch_brute_force_and_eval_batch(tmp_path):
    from test_engine import Net, _head_scores

    torch.manual_seed(5)
    net = Net(6, linear=False).eval()
    path = liftcam.export_model(net, "features", input_shape=(3, 16, 16),
                                out_dir=tmp_path / "net.liftcam")
    net = net.double()
    x = np.random.default_rng(2).random((2, 3, 16, 16)).astype(np.float32)
    e1 = liftcam.Explainer(path, eval_batch=1).explain(x, method="pairshap", progress=False)
    e64 = liftcam.Explainer(path).explain(x, method="pairshap", progress=False)
    np.testing.assert_allclose(e1.weights, e64.weights, rtol=1e-6, atol=1e-7)
    A = liftcam.Explainer(path).features(x).astype(np.float64)
    for n in range(2):
        c = e1.targets[n]
        full = _head_scores(net, A[n:n + 1], c)[0]
        empty = _head_scores(net, np.zeros_like(A[:1]), c)[0]
        for k in range(6):
            only, drop = A[n:n + 1].copy() * 0, A[n:n + 1].copy()
            only[:, k], drop[:, k] = A[n, k], 0
            ref = 0.5 * ((_head_scores(net, only, c)[0] - empty)
                         + (full - _head_scores(net, drop, c)[0]))
            assert abs(e1.weights[n, k] - ref) <= 1e-4 * max(1.0, abs(ref))
