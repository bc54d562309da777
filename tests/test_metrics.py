"""Tests of liftcam.metrics on hand-built cases with known answers."""
import math
import warnings

import numpy as np
import pytest

from liftcam import metrics as M
from liftcam.engine.errors import InputError


def sigmoid(z):
    return 1.0 / (1.0 + math.exp(-z))


class SumModel:
    """Two classes: logits = [Σ w·x, 0], so p(class 0) = sigmoid(Σ w·x).

    Computes row by row (so results cannot depend on the batch size) and records
    the batch sizes it was called with."""

    def __init__(self, w=None):
        self.w = None if w is None else np.asarray(w, dtype=np.float64)
        self.calls = []

    def __call__(self, x):
        assert x.dtype == np.float32 and x.ndim == 4
        self.calls.append(x.shape[0])
        rows = []
        for xi in x.astype(np.float64):
            s = (xi * self.w).sum() if self.w is not None else xi.sum()
            rows.append([s, 0.0])
        return np.array(rows, dtype=np.float32)


class FractionModel:
    """p(class 0) = mean over pixels of x[0] (images of ones / zeros): logits
    [log a, log(1 − a)] so that softmax gives exactly [a, 1 − a]."""

    def __call__(self, x):
        a = x[:, 0].reshape(x.shape[0], -1).astype(np.float64).mean(axis=1)
        a = np.clip(a, 1e-300, 1.0)
        b = np.clip(1.0 - a, 1e-300, 1.0)
        return np.stack([np.log(a), np.log(b)], axis=1)


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        yield


# ----------------------------------------------------------------------- softmax


def test_softmax_is_stable(no_warnings):
    p = M.softmax(np.array([[1000.0, 0.0, -1000.0], [1.0, 1.0, 1.0]]))
    np.testing.assert_allclose(p[0], [1.0, 0.0, 0.0])
    np.testing.assert_allclose(p[1], [1 / 3] * 3)


# ------------------------------------------------------------------ pointing games


def test_map_equal_to_mask_hits_with_full_energy():
    mask = np.zeros((2, 6, 7), dtype=bool)
    mask[0, 1:3, 2:5] = True
    mask[1, 4:, :2] = True
    maps = mask.astype(np.float32)
    pg = M.pointing_game(maps, mask)
    assert pg.hits.tolist() == [True, True] and pg.accuracy == 1.0
    en = M.energy_pointing_game(maps, mask)
    np.testing.assert_allclose(en.per_image, [1.0, 1.0])
    assert en.mean == 1.0


def test_peak_outside_mask_is_a_miss_and_tolerance_is_euclidean():
    mask = np.zeros((1, 9, 9), dtype=bool)
    mask[0, 0:3, 0:3] = True  # rows/cols 0..2
    maps = np.zeros((1, 9, 9))
    maps[0, 2, 4] = 1.0  # 2 columns right of the mask edge
    assert M.pointing_game(maps, mask).hits.tolist() == [False]
    assert M.pointing_game(maps, mask, tolerance=1).hits.tolist() == [False]
    assert M.pointing_game(maps, mask, tolerance=2).hits.tolist() == [True]
    np.testing.assert_array_equal(M.pointing_game(maps, mask).points, [[2, 4]])
    # diagonal: (4, 4) is sqrt(8) ≈ 2.83 from the corner (2, 2)
    diag = np.zeros((1, 9, 9))
    diag[0, 4, 4] = 1.0
    assert M.pointing_game(diag, mask, tolerance=2).hits.tolist() == [False]
    assert M.pointing_game(diag, mask, tolerance=3).hits.tolist() == [True]


def test_pointing_ties_take_first_pixel_in_raster_order():
    mask = np.zeros((2, 4, 4), dtype=bool)
    mask[0, 0, 0] = True
    mask[1, 3, 3] = True
    maps = np.ones((2, 4, 4))
    pg = M.pointing_game(maps, mask)
    np.testing.assert_array_equal(pg.points, [[0, 0], [0, 0]])
    assert pg.hits.tolist() == [True, False]
    assert pg.accuracy == 0.5


def test_energy_by_hand_and_zero_map(no_warnings):
    mask = np.zeros((2, 2, 2), dtype=np.uint8)
    mask[:, 0, :] = 1
    maps = np.array([[[0.5, 0.25], [1.0, 0.25]], [[0.0, 0.0], [0.0, 0.0]]])
    en = M.energy_pointing_game(maps, mask)
    np.testing.assert_allclose(en.per_image, [0.75 / 2.0, 0.0])
    assert en.empty.tolist() == [False, True]
    assert en.mean == pytest.approx(0.1875)


# ------------------------------------------------------------ AUC and the curves


def test_trapezoid_auc_of_known_curves():
    x = np.linspace(0, 1, 11)
    assert M.trapezoid_auc(1 - x, x) == pytest.approx(0.5)
    for s in (1, 4, 32):
        xs = np.linspace(0, 1, s + 1)
        # trapezoid on (1−x)²: 1/3 + 1/(6 S²)
        assert M.trapezoid_auc((1 - xs) ** 2, xs) == pytest.approx(1 / 3 + 1 / (6 * s * s))


@pytest.mark.parametrize("steps", [4, 7, 30])  # 30 pixels: 7 does not divide them
def test_linear_fall_gives_exact_half(steps):
    images = np.ones((2, 3, 5, 6), dtype=np.float32)
    maps = np.random.default_rng(0).random((2, 5, 6))
    de = M.deletion_auc(FractionModel(), images, maps, 0, steps=steps)
    np.testing.assert_allclose(de.auc, [0.5, 0.5], atol=1e-12)
    np.testing.assert_allclose(de.curves, np.broadcast_to(1 - de.fractions, (2, steps + 1)),
                               atol=1e-12)
    ins = M.insertion_auc(FractionModel(), images, maps, 0, steps=steps, baseline="zero")
    np.testing.assert_allclose(ins.auc, [0.5, 0.5], atol=1e-12)
    assert de.fractions[0] == 0 and de.fractions[-1] == 1
    np.testing.assert_allclose(de.fractions * 30, np.round(np.arange(steps + 1) * 30 / steps))


def _linear_case(seed=1, n=2, h=6, w=6):
    rng = np.random.default_rng(seed)
    images = rng.uniform(0.1, 1.0, (n, 3, h, w)).astype(np.float32)
    weight = rng.uniform(-0.3, 0.3, (3, h, w))
    # (N,H,W) per-pixel share of the logit
    contrib = (images.astype(np.float64) * weight).sum(axis=1)
    return images, weight, contrib


def test_deletion_curve_on_linear_model_is_exact():
    images, weight, contrib = _linear_case()
    steps = 9  # 36 pixels, 4 per step
    res = M.deletion_auc(SumModel(weight), images, contrib, 0, steps=steps)
    for i in range(2):
        order = np.sort(contrib[i].ravel())[::-1]
        removed = np.concatenate([[0.0], np.cumsum(order)])[np.arange(steps + 1) * 4]
        expect = [sigmoid(contrib[i].sum() - r) for r in removed]
        np.testing.assert_allclose(res.curves[i], expect, rtol=1e-5)


def test_perfect_order_beats_every_random_order():
    images, weight, contrib = _linear_case(seed=2)
    model = SumModel(weight)
    rng = np.random.default_rng(3)
    best_del = M.deletion_auc(model, images, contrib, 0, steps=12)
    best_ins = M.insertion_auc(model, images, contrib, 0, steps=12, baseline="zero")
    worst_del = M.deletion_auc(model, images, -contrib, 0, steps=12)
    assert (best_del.auc < worst_del.auc).all()
    for _ in range(20):
        random_map = rng.random(contrib.shape)
        d = M.deletion_auc(model, images, random_map, 0, steps=12)
        ins = M.insertion_auc(model, images, random_map, 0, steps=12, baseline="zero")
        assert (best_del.auc < d.auc).all()
        assert (best_ins.auc > ins.auc).all()


def test_ties_are_broken_in_raster_order():
    # Only pixel (0, 0) counts. A constant map removes it first (raster order).
    weight = np.zeros((3, 2, 2))
    weight[:, 0, 0] = 10.0
    images = np.ones((1, 3, 2, 2), dtype=np.float32)
    res = M.deletion_auc(SumModel(weight), images, np.zeros((1, 2, 2)), 0, steps=4)
    np.testing.assert_allclose(res.curves[0], [sigmoid(30), 0.5, 0.5, 0.5, 0.5], rtol=1e-6)
    flipped = np.zeros((3, 2, 2))
    flipped[:, 1, 1] = 10.0
    res = M.deletion_auc(SumModel(flipped), images, np.zeros((1, 2, 2)), 0, steps=4)
    np.testing.assert_allclose(res.curves[0], [sigmoid(30)] * 4 + [0.5], rtol=1e-6)


def test_blur_baseline():
    const = np.full((1, 3, 5, 5), 2.5)
    np.testing.assert_allclose(M.gaussian_blur(const, sigma=5.0), const)
    delta = np.zeros((1, 1, 15, 15))
    delta[0, 0, 7, 7] = 1.0
    b = M.gaussian_blur(delta, sigma=1.0, radius=3)
    k = np.exp(-0.5 * np.arange(-3, 4) ** 2)
    k /= k.sum()
    np.testing.assert_allclose(b[0, 0, 4:11, 4:11], np.outer(k, k), atol=1e-12)
    assert b.sum() == pytest.approx(1.0)
    # insertion from a blurred start: the first point is the model on the blurred image
    images, weight, contrib = _linear_case(seed=4, n=1)
    res = M.insertion_auc(SumModel(weight), images, contrib, 0, steps=6, baseline="blur",
                          blur_sigma=2.0)
    blurred = M.gaussian_blur(images, sigma=2.0)
    assert res.curves[0, 0] == pytest.approx(sigmoid((blurred[0] * weight).sum()), rel=1e-5)
    assert res.curves[0, -1] == pytest.approx(sigmoid(contrib.sum()), rel=1e-5)


# ---------------------------------------------------- Average Drop, IC and ADD


def test_average_drop_ic_add_by_hand():
    images = np.ones((2, 3, 2, 2), dtype=np.float32)
    images[1, :, 0, :] = -1.0  # image 1: half its pixels push the logit down; sum = 0
    maps = np.zeros((2, 2, 2))
    maps[0] = 0.5  # keep half of every pixel: logit 12 → 6
    maps[1, 1, :] = 1.0  # keep only the positive row: logit 0 → 6
    y = np.array([sigmoid(12), sigmoid(0)])
    o = np.array([sigmoid(6), sigmoid(6)])
    d = np.array([sigmoid(6), sigmoid(-6)])  # x·(1 − map)

    ad = M.average_drop(SumModel(), images, maps, [0, 0])
    np.testing.assert_allclose(ad.original, y, rtol=1e-7)
    np.testing.assert_allclose(ad.perturbed, o, rtol=1e-7)
    np.testing.assert_allclose(ad.per_image, [(y[0] - o[0]) / y[0] * 100, 0.0], rtol=1e-6)
    assert ad.value == pytest.approx((y[0] - o[0]) / y[0] * 50, rel=1e-6)

    ic = M.increase_in_confidence(SumModel(), images, maps, [0, 0])
    np.testing.assert_array_equal(ic.per_image, [0.0, 100.0])
    assert ic.value == 50.0

    add = M.average_drop_in_deletion(SumModel(), images, maps, [0, 0])
    np.testing.assert_allclose(add.perturbed, d, rtol=1e-6)
    np.testing.assert_allclose(add.per_image, (y - d) / y * 100, rtol=1e-6)

    both = M.confidence_metrics(SumModel(), images, maps, [0, 0])
    assert both["average_drop"].value == pytest.approx(ad.value)
    assert both["increase_in_confidence"].value == ic.value
    assert both["average_drop_in_deletion"].value == pytest.approx(add.value)

    # class 1 (logit fixed at 0): on image 0, y = 1 − sigmoid(12), o = 1 − sigmoid(6)
    ic1 = M.increase_in_confidence(SumModel(), images, maps, 1)
    assert ic1.per_image[0] == 100.0


def test_baseline_scalar_and_per_channel():
    images = np.ones((1, 3, 2, 2), dtype=np.float32)
    maps = np.zeros((1, 2, 2))  # everything "absent": the perturbed image is the baseline
    ad = M.average_drop(SumModel(), images, maps, 0, baseline=0.5)
    assert ad.perturbed[0] == pytest.approx(sigmoid(6.0))
    ad = M.average_drop(SumModel(), images, maps, 0, baseline=np.array([1.0, -1.0, 2.0]))
    assert ad.perturbed[0] == pytest.approx(sigmoid(4 * 2.0))
    full = np.full((1, 3, 2, 2), -0.25)
    ad = M.average_drop(SumModel(), images, maps, 0, baseline=full)
    assert ad.perturbed[0] == pytest.approx(sigmoid(-3.0))


# ------------------------------------------------------------------------ batching


def test_batch_size_does_not_change_results_and_bounds_calls():
    images, weight, contrib = _linear_case(seed=5, n=3, h=4, w=5)
    maps = (contrib - contrib.min()) / (contrib.max() - contrib.min())
    targets = np.array([0, 1, 0])
    results = {}
    for bs in (1, 7, 1000):
        model = SumModel(weight)
        r = (
            M.deletion_auc(model, images, maps, targets, steps=5, batch_size=bs),
            M.insertion_auc(model, images, maps, targets, steps=5, batch_size=bs),
            M.confidence_metrics(model, images, maps, targets, batch_size=bs),
        )
        # deletion 3·6 = 18, insertion 18, confidence 3·3 = 9 evaluations
        expect_calls = 2 * math.ceil(18 / bs) + math.ceil(9 / bs)
        assert len(model.calls) == expect_calls and max(model.calls) <= bs
        results[bs] = r
    for bs in (7, 1000):
        np.testing.assert_array_equal(results[bs][0].curves, results[1][0].curves)
        np.testing.assert_array_equal(results[bs][1].curves, results[1][1].curves)
        for key in results[1][2]:
            np.testing.assert_array_equal(results[bs][2][key].per_image,
                                          results[1][2][key].per_image)


# ------------------------------------------------------------- SHAP agreement


def test_rankdata_average_ties():
    np.testing.assert_array_equal(M.rankdata([10, 20, 20, 30]), [1, 2.5, 2.5, 4])
    np.testing.assert_array_equal(M.rankdata([[3, 1, 2], [5, 5, 5]], axis=1),
                                  [[3, 1, 2], [2, 2, 2]])


def test_correlations_known_values(no_warnings):
    c = np.array([
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [1.0, 2.0, 3.0, 4.0, 5.0],
        [1.0, 2.0, 3.0, 4.0, 5.0],
    ])
    s = np.array([
        [1.0, 8.0, 27.0, 64.0, 125.0],  # monotone, not linear
        [5.0, 4.0, 3.0, 2.0, 1.0],  # reversed
        [2.0, 1.0, 4.0, 3.0, 5.0],  # Spearman 1 − 6·4/(5·24) = 0.8
        [1.0, 3.0, 2.0, 4.0, 5.0],
    ])
    r = M.coefficient_agreement(c, s, top_k=2)
    assert r.spearman[0] == pytest.approx(1.0) and r.pearson[0] < 0.99
    # Pearson of (1..5) and cubes, by hand
    sc = s[0] - s[0].mean()
    assert r.pearson[0] == pytest.approx(
        (np.arange(-2, 3) * sc).sum() / math.sqrt(10 * (sc * sc).sum()))
    assert r.spearman[1] == pytest.approx(-1.0) and r.pearson[1] == pytest.approx(-1.0)
    assert r.spearman[2] == pytest.approx(0.8) and r.pearson[2] == pytest.approx(0.8)
    assert r.spearman[3] == pytest.approx(0.9)
    assert not r.degenerate.any()
    assert r.mean["spearman"] == pytest.approx((1 - 1 + 0.8 + 0.9) / 4)


def test_constant_vectors_give_zero_correlation_and_a_flag(no_warnings):
    c = np.array([[1.0, 1.0, 1.0], [0.0, 0.0, 0.0], [1.0, 2.0, 3.0]])
    s = np.array([[1.0, 2.0, 3.0], [0.0, 0.0, 0.0], [3.0, 2.0, 1.0]])
    r = M.coefficient_agreement(c, s, top_k=1)
    assert r.pearson.tolist()[:2] == [0.0, 0.0] and r.spearman.tolist()[:2] == [0.0, 0.0]
    assert r.degenerate.tolist() == [True, True, False]
    assert r.l2_normalised[1] == 0.0 and r.l2_relative[1] == 0.0
    assert np.isfinite(r.l2_normalised).all()
    r = M.coefficient_agreement([[1.0, 2.0]], [[0.0, 0.0]], top_k=1)
    assert (r.l2_relative[0] == np.inf and r.l2_normalised[0] == pytest.approx(1.0)
            and r.degenerate[0])


def test_l2_errors_and_topk_by_hand():
    r = M.coefficient_agreement([[2.0, 4.0, 6.0], [1.0, 0.0, 0.0]],
                                [[1.0, 2.0, 3.0], [0.0, 1.0, 0.0]], top_k=1)
    np.testing.assert_allclose(r.l2_normalised, [0.0, math.sqrt(2)])
    np.testing.assert_allclose(r.l2_relative, [1.0, math.sqrt(2)])
    np.testing.assert_array_equal(r.topk_overlap, [1.0, 0.0])

    c = np.array([[9.0, 8.0, 7.0, 1.0, 0.0, -10.0]])
    s = np.array([[9.0, 0.0, 7.0, 8.0, 1.0, -20.0]])
    # top-3 by value: c {0,1,2}, s {0,3,2} → 2/3; by |.|: c {5,0,1}, s {5,0,3} → 2/3
    assert M.coefficient_agreement(c, s, top_k=3).topk_overlap[0] == pytest.approx(2 / 3)
    assert M.coefficient_agreement(c, s, top_k=2).topk_overlap[0] == pytest.approx(1 / 2)
    assert M.coefficient_agreement(c, s, top_k=1, by="abs").topk_overlap[0] == 1.0
    assert M.coefficient_agreement(c, s, top_k=3, by="abs").topk_overlap[0] == pytest.approx(2 / 3)
    assert M.coefficient_agreement(c, s, top_k=6).topk_overlap[0] == 1.0


def test_shap_stderr():
    c = np.array([[1.0, 2.0, 3.0, 4.0]])
    s = np.array([[1.1, 2.0, 2.5, 4.0]])
    se = np.array([[0.1, 0.1, 0.1, 0.0]])
    r = M.coefficient_agreement(c, s, shap_stderr=se, top_k=2)
    np.testing.assert_allclose(r.within_2se, [0.75])  # |−0.1| ≤ 0.2, 0 ≤ 0.2, 0.5 > 0.2, 0 ≤ 0
    np.testing.assert_allclose(r.noise_floor, [math.sqrt(0.03) / np.linalg.norm(s)])
    assert "noise_floor" in r.mean and r.mean["within_2se"] == pytest.approx(0.75)


def test_against_scipy_on_random_data():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(6)
    c = rng.normal(size=(5, 12))
    s = np.round(c + rng.normal(scale=0.7, size=c.shape), 1)  # rounding makes ties
    r = M.coefficient_agreement(c, s)
    for i in range(5):
        assert r.pearson[i] == pytest.approx(stats.pearsonr(c[i], s[i])[0])
        assert r.spearman[i] == pytest.approx(stats.spearmanr(c[i], s[i])[0])
        np.testing.assert_allclose(M.rankdata(s[i]), stats.rankdata(s[i]))


# ---------------------------------------------------------------------- validation


def test_validation_errors():
    model = SumModel()
    img = np.ones((2, 3, 4, 4), dtype=np.float32)
    maps = np.full((2, 4, 4), 0.5)

    def raises(match, fn, *a, **k):
        with pytest.raises(InputError, match=match):
            fn(*a, **k)

    raises("shape", M.average_drop, model, img[0], maps, 0)
    raises("empty batch", M.average_drop, model, img[:0], maps[:0], 0)
    raises("floating", M.average_drop, model, img.astype(np.int64), maps, 0)
    bad = img.copy()
    bad[1, 0, 0, 0] = np.nan
    raises(r"NaN or Inf \(items \[1\]\)", M.average_drop, model, bad, maps, 0)
    raises("match the images", M.average_drop, model, img, maps[:, :3], 0)
    raises(r"\[0, 1\]", M.average_drop, model, img, maps * 3, 0)
    raises("out of range: the model has 2 classes", M.average_drop, model, img, maps, [0, 2])
    raises(">= 0", M.deletion_auc, model, img, maps, [0, -1])
    raises("integer class", M.deletion_auc, model, img, maps, [0.0, 1.0])
    raises(r"shape \(N,\)", M.deletion_auc, model, img, maps, [0, 1, 0])
    raises("batch_size", M.deletion_auc, model, img, maps, 0, batch_size=0)
    raises("steps", M.deletion_auc, model, img, maps, 0, steps=17)
    raises("baseline must be", M.deletion_auc, model, img, maps, 0, baseline="black")
    raises("broadcast", M.deletion_auc, model, img, maps, 0, baseline=np.zeros((2, 3)))
    raises("logits of shape", M.deletion_auc, lambda x: np.zeros(len(x)), img, maps, 0)
    raises("NaN or Inf logits", M.deletion_auc, lambda x: np.full((len(x), 2), np.nan),
           img, maps, 0)
    raises("callable", M.deletion_auc, "model.onnx", img, maps, 0)

    mask = np.zeros((2, 4, 4), dtype=bool)
    mask[:, 0, 0] = True
    raises("binary", M.pointing_game, maps, mask * 2)
    raises("empty", M.pointing_game, maps, np.zeros_like(mask))
    raises("shape", M.pointing_game, maps, mask[:, :2])
    raises(r"x\[None\]", M.pointing_game, maps[0], mask[0])
    raises("tolerance", M.pointing_game, maps, mask, tolerance=-1)
    raises("non-negative", M.energy_pointing_game, -maps, mask)

    raises("same shape", M.coefficient_agreement, np.ones((2, 3)), np.ones((2, 4)))
    raises("top_k", M.coefficient_agreement, np.ones((2, 3)), np.ones((2, 3)), top_k=4)
    raises(r"\(N, K\)", M.coefficient_agreement, np.ones(3), np.ones(3))
    raises("non-negative", M.coefficient_agreement, np.ones((1, 3)), np.ones((1, 3)),
           -np.ones((1, 3)), top_k=1)
    raises("real numbers", M.coefficient_agreement, np.ones((1, 3), dtype=bool), np.ones((1, 3)),
           top_k=1)
    raises("'value' or 'abs'", M.coefficient_agreement, np.ones((1, 3)), np.ones((1, 3)),
           top_k=1, by="rank")


def test_inputs_are_not_modified():
    images, weight, contrib = _linear_case(seed=7)
    maps = (contrib - contrib.min()) / (contrib.max() - contrib.min())
    img0, maps0 = images.copy(), maps.copy()
    M.confidence_metrics(SumModel(weight), images, maps, 0)
    M.deletion_auc(SumModel(weight), images, maps, 0, steps=4)
    M.insertion_auc(SumModel(weight), images, maps, 0, steps=4)
    np.testing.assert_array_equal(images, img0)
    np.testing.assert_array_equal(maps, maps0)


def test_default_steps_and_channel_axis_maps():
    images = np.ones((1, 3, 4, 4), dtype=np.float32)
    maps = np.random.default_rng(8).random((1, 1, 4, 4))  # (N, 1, H, W) is accepted
    res = M.deletion_auc(FractionModel(), images, maps, 0)
    assert res.curves.shape == (1, 17)  # min(32, 16 pixels) steps
    res = M.deletion_auc(FractionModel(), np.ones((1, 3, 8, 8), dtype=np.float32),
                         np.zeros((1, 8, 8)), 0)
    assert res.curves.shape == (1, 33)
