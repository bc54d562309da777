"""engine/tail.py against references it does not share code with:
torch.nn.functional.interpolate, cv2.resize and float64 brute-force loops."""
import itertools

import numpy as np
import pytest
from kernel_vectors import SMALL_TAIL_CASES, TAIL_CASES, make_constant_case, make_tail_inputs

from liftcam.engine import tail
from liftcam.engine.errors import InputError

torch = pytest.importorskip("torch")
F = torch.nn.functional


def torch_resize(L, H, W):
    t = torch.from_numpy(np.ascontiguousarray(L))[:, None]
    return F.interpolate(t, size=(H, W), mode="bilinear", align_corners=False)[:, 0].numpy()


def loop_coefficients(A, M):
    N, K, h, w = A.shape
    out = np.zeros((N, K))
    for n, k, i, j in itertools.product(range(N), range(K), range(h), range(w)):
        out[n, k] += float(A[n, k, i, j]) * float(M[n, k, i, j])
    return out


def loop_weighted_sum(A, wts):
    N, K, h, w = A.shape
    out = np.zeros((N, h, w))
    for n, k in itertools.product(range(N), range(K)):
        out[n] += float(wts[n, k]) * A[n, k].astype(np.float64)
    return out


def loop_bilinear(L, H, W):
    """Half-pixel bilinear, written from the OpenCV/PyTorch documentation formula."""
    N, h, w = L.shape
    out = np.zeros((N, H, W))
    for n, y, x in itertools.product(range(N), range(H), range(W)):
        sy = max((y + 0.5) * h / H - 0.5, 0.0)
        sx = max((x + 0.5) * w / W - 0.5, 0.0)
        y0, x0 = min(int(np.floor(sy)), h - 1), min(int(np.floor(sx)), w - 1)
        y1, x1 = min(y0 + 1, h - 1), min(x0 + 1, w - 1)
        ly, lx = sy - y0, sx - x0
        out[n, y, x] = ((1 - ly) * ((1 - lx) * L[n, y0, x0] + lx * L[n, y0, x1])
                        + ly * ((1 - lx) * L[n, y1, x0] + lx * L[n, y1, x1]))
    return out


def loop_minmax(maps):
    out = np.zeros_like(maps, dtype=np.float64)
    for n in range(maps.shape[0]):
        lo, hi = float(np.min(maps[n])), float(np.max(maps[n]))
        if hi > lo:
            out[n] = (maps[n] - lo) / (hi - lo)
    return out


def random_shapes(count=40, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(count):
        N = int(rng.integers(1, 4))
        h, w = (int(v) for v in rng.integers(1, 20, size=2))
        H, W = (int(v) for v in rng.integers(1, 70, size=2))
        yield N, h, w, H, W, int(rng.integers(0, 2**31))


# ----------------------------------------------------------------------------- coefficients
@pytest.mark.parametrize("case", SMALL_TAIL_CASES[:4], ids=lambda c: c.id)
def test_coefficients_and_weighted_sum_vs_loops(case):
    if case.K * case.h * case.w * case.N > 20000:
        pytest.skip("too big for a Python loop")
    d = make_tail_inputs(case)
    A, M = d["A"], d["M"]
    ref = loop_coefficients(A.astype(np.float64), M.astype(np.float64))
    a64 = tail.liftcam_coefficients(A.astype(np.float64), M.astype(np.float64))
    assert a64.dtype == np.float64
    np.testing.assert_allclose(a64, ref, rtol=1e-12, atol=1e-12)
    a32 = tail.liftcam_coefficients(A, M)
    assert a32.dtype == np.float32 and a32.shape == (case.N, case.K)
    np.testing.assert_allclose(a32, ref, rtol=1e-5,
                               atol=1e-5 * np.abs(A * M).sum(axis=(2, 3)).max())

    S = tail.weighted_sum(A, a32)
    assert S.dtype == np.float32 and S.shape == (case.N, case.h, case.w)
    np.testing.assert_allclose(S, loop_weighted_sum(A, a32), rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", TAIL_CASES, ids=lambda c: c.id)
def test_coefficients_vs_einsum64(case):
    d = make_tail_inputs(case)
    A, M = d["A"], d["M"]
    ref = np.einsum("nkij,nkij->nk", A.astype(np.float64), M.astype(np.float64))
    scale = np.abs(A.astype(np.float64) * M).sum(axis=(2, 3))
    got = tail.liftcam_coefficients(A, M)
    assert np.all(np.abs(got - ref) <= 1e-5 * scale + 1e-6)
    S = tail.weighted_sum(A, d["weights"])
    ref_S = np.einsum("nk,nkij->nij", d["weights"].astype(np.float64), A.astype(np.float64))
    scale_S = np.einsum("nk,nkij->nij", np.abs(d["weights"]).astype(np.float64), A)
    assert np.all(np.abs(S - ref_S) <= 1e-5 * scale_S + 1e-6)


# ----------------------------------------------------------------------------- bilinear
@pytest.mark.parametrize("case", TAIL_CASES, ids=lambda c: c.id)
def test_upsample_vs_torch(case):
    rng = np.random.default_rng(case.seed)
    L = rng.random((case.N, case.h, case.w))
    got64 = tail.upsample_bilinear(L, (case.H, case.W))
    assert got64.dtype == np.float64 and got64.shape == (case.N, case.H, case.W)
    np.testing.assert_allclose(got64, torch_resize(L, case.H, case.W), rtol=0, atol=1e-12)
    L32 = L.astype(np.float32)
    got32 = tail.upsample_bilinear(L32, (case.H, case.W))
    assert got32.dtype == np.float32
    np.testing.assert_allclose(got32, torch_resize(L32, case.H, case.W), rtol=0, atol=5e-6)


def test_upsample_random_shapes_vs_torch_and_cv2():
    cv2 = pytest.importorskip("cv2")
    for N, h, w, H, W, seed in random_shapes():
        L = np.random.default_rng(seed).random((N, h, w)).astype(np.float32)
        got = tail.upsample_bilinear(L, (H, W))
        np.testing.assert_allclose(got, torch_resize(L, H, W), rtol=0, atol=5e-6,
                                   err_msg=f"{(N, h, w, H, W)}")
        for n in range(N):
            ref = cv2.resize(L[n], (W, H), interpolation=cv2.INTER_LINEAR)
            np.testing.assert_allclose(got[n], ref.reshape(H, W), rtol=0, atol=1e-5,
                                       err_msg=f"cv2 {(h, w, H, W)}")


@pytest.mark.parametrize("case", TAIL_CASES, ids=lambda c: c.id)
def test_upsample_vs_cv2(case):
    cv2 = pytest.importorskip("cv2")
    L = np.random.default_rng(case.seed).random((case.N, case.h, case.w)).astype(np.float32)
    got = tail.upsample_bilinear(L, (case.H, case.W))
    for n in range(case.N):
        ref = cv2.resize(L[n], (case.W, case.H), interpolation=cv2.INTER_LINEAR)
        np.testing.assert_allclose(got[n], ref.reshape(case.H, case.W), rtol=0, atol=1e-5)


@pytest.mark.parametrize("case", SMALL_TAIL_CASES, ids=lambda c: c.id)
def test_upsample_vs_loop(case):
    L = np.random.default_rng(case.seed).random((case.N, case.h, case.w))
    np.testing.assert_allclose(tail.upsample_bilinear(L, (case.H, case.W)),
                               loop_bilinear(L, case.H, case.W), rtol=0, atol=1e-12)


def test_interpolation_matrix_cached_and_rows_sum_to_one():
    R1 = tail.interpolation_matrix(7, 224)
    assert R1 is tail.interpolation_matrix(7, 224)
    assert not R1.flags.writeable
    np.testing.assert_allclose(R1.sum(axis=1), 1.0, atol=1e-6)
    assert tail.upsample_bilinear(np.ones((1, 7, 7), np.float32), 224).shape == (1, 224, 224)


# ----------------------------------------------------------------------------- minmax / finish
def test_minmax_basic_and_constant():
    rng = np.random.default_rng(3)
    maps = rng.random((3, 9, 11)).astype(np.float32) * 5 + 2
    maps[1] = 4.25                       # constant image
    out = tail.minmax(maps)
    assert out.dtype == np.float32
    assert np.all(out[1] == 0)
    for n in (0, 2):
        assert out[n].min() == 0 and out[n].max() == 1
    np.testing.assert_allclose(out, loop_minmax(maps.astype(np.float64)), atol=1e-6)


def test_minmax_never_nan():
    maps = np.zeros((4, 3, 3), np.float32)
    maps[1, 0, 0] = np.nan
    maps[2, 1, 1] = np.inf
    maps[3] = np.float32(3e38)
    maps[3, 0, 0] = -np.float32(3e38)  # range overflows to inf
    out = tail.minmax(maps)
    assert not np.isnan(out).any()
    assert np.all(out[:] == 0)
    tiny = np.zeros((1, 2, 2), np.float32)
    tiny[0, 0, 0] = np.float32(1e-45)   # a denormal range still normalises
    assert tail.minmax(tiny)[0, 0, 0] == 1


@pytest.mark.parametrize("case", TAIL_CASES, ids=lambda c: c.id)
def test_finish_vs_torch_pipeline(case):
    d = make_tail_inputs(case)
    alpha = tail.liftcam_coefficients(d["A"], d["M"])
    S = tail.weighted_sum(d["A"], alpha)
    low, maps = tail.finish(S, (case.H, case.W))
    assert low.shape == (case.N, case.h, case.w) and maps.shape == (case.N, case.H, case.W)
    assert low.dtype == np.float32 and maps.dtype == np.float32
    assert not np.isnan(maps).any() and maps.min() >= 0 and maps.max() <= 1
    # independent pipeline: torch float64
    St = torch.from_numpy(S.astype(np.float64))
    lowt = torch.relu(St)
    up = F.interpolate(lowt[:, None], size=(case.H, case.W), mode="bilinear",
                       align_corners=False)[:, 0]
    lo = up.amin(dim=(1, 2), keepdim=True)
    hi = up.amax(dim=(1, 2), keepdim=True)
    flat = lowt.reshape(lowt.shape[0], -1)
    varies = (flat.amax(dim=1) > flat.amin(dim=1))[:, None, None]
    ref = torch.where((hi > lo) & varies, (up - lo) / (hi - lo).clamp_min(1e-300),
                      torch.zeros_like(up))
    np.testing.assert_allclose(low, lowt.numpy(), rtol=1e-6, atol=0)
    np.testing.assert_allclose(maps, ref.numpy(), rtol=0, atol=1e-5)


def test_finish_constant_map_gives_zeros():
    d = make_constant_case()
    S = tail.weighted_sum(d["A"], d["weights"])
    low, maps = tail.finish(S, (17, 19))
    assert np.all(low == 0) and not np.signbit(low).any()
    assert maps.shape == (2, 17, 19) and np.all(maps == 0)


def test_relu_nan_to_zero():
    S = np.array([[[np.nan, -0.0, -1.0, 2.0]]], np.float32)
    r = tail.relu(S)
    assert r.tolist() == [[[0.0, 0.0, 0.0, 2.0]]] and not np.signbit(r).any()


# ----------------------------------------------------------------------------- errors
def test_input_errors():
    A = np.zeros((1, 2, 3, 3), np.float32)
    with pytest.raises(InputError, match="M: expected the shape of A"):
        tail.liftcam_coefficients(A, np.zeros((1, 2, 3, 4), np.float32))
    with pytest.raises(InputError, match="4-d"):
        tail.liftcam_coefficients(A[0], A[0])
    with pytest.raises(InputError, match=r"w: expected shape \(N, K\)"):
        tail.weighted_sum(A, np.zeros((1, 3), np.float32))
    with pytest.raises(InputError, match="must be > 0"):
        tail.weighted_sum(np.zeros((0, 2, 3, 3), np.float32), np.zeros((0, 2), np.float32))
    with pytest.raises(InputError, match="size"):
        tail.upsample_bilinear(np.zeros((1, 3, 3), np.float32), (0, 5))
    with pytest.raises(InputError, match="size"):
        tail.upsample_bilinear(np.zeros((1, 3, 3), np.float32), (1, 2, 3))
    with pytest.raises(InputError, match="3-d"):
        tail.finish(np.zeros((3, 3), np.float32), 5)
    with pytest.raises(InputError, match="dtype"):
        tail.minmax(np.array([[["a"]]]))
