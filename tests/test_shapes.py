"""The procedural shapes data set: determinism, exact masks, balance, separability."""
import numpy as np
import pytest

from liftcam.export.demo import shapes
from liftcam.export.demo.shapes import CLASSES, make_dataset, make_image, object_mask


@pytest.fixture(scope="module")
def data():
    return make_dataset(240, seed=123)


def test_shapes_and_dtypes(data):
    images, labels, masks = data
    assert images.shape == (240, 64, 64, 3) and images.dtype == np.uint8
    assert labels.shape == (240,) and labels.dtype == np.int64
    assert masks.shape == (240, 64, 64) and masks.dtype == np.bool_
    assert 6 <= len(CLASSES) <= 10 and len(set(CLASSES)) == len(CLASSES)
    assert labels.min() >= 0 and labels.max() < len(CLASSES)


def test_other_size():
    images, labels, masks = make_dataset(8, seed=0, size=96)
    assert images.shape == (8, 96, 96, 3) and masks.shape == (8, 96, 96)
    img, mask = make_image(np.random.default_rng(0), 3, 32)
    assert img.shape == (32, 32, 3) and mask.shape == (32, 32) and mask.any()


def test_deterministic(data):
    images, labels, masks = data
    images2, labels2, masks2 = make_dataset(240, seed=123)
    np.testing.assert_array_equal(images, images2)
    np.testing.assert_array_equal(labels, labels2)
    np.testing.assert_array_equal(masks, masks2)
    images3, labels3, _ = make_dataset(240, seed=124)
    assert not np.array_equal(images, images3)
    a = make_image(np.random.default_rng(7), 2)
    b = make_image(np.random.default_rng(7), 2)
    np.testing.assert_array_equal(a[0], b[0])
    np.testing.assert_array_equal(a[1], b[1])


def test_balanced(data):
    _, labels, _ = data
    counts = np.bincount(labels, minlength=len(CLASSES))
    assert counts.max() - counts.min() <= 1
    _, labels, _ = make_dataset(803, seed=5)
    counts = np.bincount(labels, minlength=len(CLASSES))
    assert counts.max() - counts.min() <= 1
    # shuffled, not sorted
    assert not np.all(np.diff(labels) >= 0)


def test_mask_fraction_plausible(data):
    _, _, masks = data
    frac = masks.reshape(len(masks), -1).mean(axis=1)
    assert frac.min() > 0.02 and frac.max() < 0.4
    # the object never touches the border (it is drawn fully inside)
    assert not masks[:, 0, :].any() and not masks[:, -1, :].any()
    assert not masks[:, :, 0].any() and not masks[:, :, -1].any()


@pytest.mark.parametrize("label", range(len(CLASSES)))
def test_mask_is_where_object_was_drawn(label):
    rng = np.random.default_rng(1000 + label)
    for _ in range(10):
        img, mask, spec = make_image(rng, label, 64, return_spec=True)
        assert spec.label == label
        # redrawing the object alone gives the same mask
        np.testing.assert_array_equal(object_mask(spec, 64), mask)
        # inside the mask every pixel is the object's colour (up to the small noise)
        col = np.asarray(spec.color, dtype=np.int64)
        diff = np.abs(img[mask].astype(np.int64) - col)
        assert diff.max() <= shapes.NOISE_AMPLITUDE
        # the object's colour stands out from what surrounds it: a 2-pixel ring just
        # outside the mask differs from the object colour on average by a lot
        from PIL import Image, ImageFilter
        grown = np.asarray(Image.fromarray(mask.astype(np.uint8) * 255).filter(
            ImageFilter.MaxFilter(5))) > 0
        border = grown & ~mask
        outside = np.abs(img[border].astype(np.int64) - col).sum(axis=1)
        assert np.median(outside) > 60


def test_clutter_is_present_and_off_the_object():
    rng = np.random.default_rng(3)
    for label in range(len(CLASSES)):
        img, mask, spec = make_image(rng, label, 64, return_spec=True)
        # redraw the same image's object on its own: pixels outside the mask hold
        # background + clutter only, so a plain object-coloured pixel outside is rare
        col = np.asarray(spec.color, dtype=np.int64)
        close = (np.abs(img.astype(np.int64) - col) <= shapes.NOISE_AMPLITUDE).all(axis=2)
        assert (close & ~mask).sum() < 0.25 * mask.sum()


def _features(m):
    ys, xs = np.nonzero(m)
    cy, cx = ys.mean(), xs.mean()
    d = np.hypot(ys - cy, xs - cx)
    rmax = d.max()
    hist = np.histogram(d / rmax, bins=10, range=(0, 1))[0] / len(d)
    a = np.arctan2(ys - cy, xs - cx)
    bins = ((a + np.pi) / (2 * np.pi) * 36).astype(int) % 36
    prof = np.zeros(36)
    np.maximum.at(prof, bins, d / rmax)
    ff = np.abs(np.fft.rfft(prof))[1:8] / 36
    return np.concatenate([hist, [len(d) / (np.pi * rmax ** 2)], ff])


def test_classes_distinguishable_from_masks():
    """A nearest-centroid classifier on rotation-invariant mask descriptors separates
    the classes: the class really is decided by the object's shape."""
    _, l_train, m_train = make_dataset(400, seed=11)
    _, l_test, m_test = make_dataset(200, seed=12)
    f_train = np.stack([_features(m) for m in m_train])
    f_test = np.stack([_features(m) for m in m_test])
    mu, sd = f_train.mean(0), f_train.std(0) + 1e-9
    f_train, f_test = (f_train - mu) / sd, (f_test - mu) / sd
    cent = np.stack([f_train[l_train == c].mean(0) for c in range(len(CLASSES))])
    pred = np.argmin(((f_test[:, None] - cent[None]) ** 2).sum(-1), axis=1)
    assert (pred == l_test).mean() >= 0.95


def test_bad_arguments():
    rng = np.random.default_rng(0)
    with pytest.raises(ValueError):
        make_image(rng, len(CLASSES))
    with pytest.raises(ValueError):
        make_image(rng, -1)
    with pytest.raises(ValueError):
        make_image(rng, 0, size=8)
    with pytest.raises(ValueError):
        make_dataset(-1, seed=0)
    images, labels, masks = make_dataset(0, seed=0)
    assert images.shape == (0, 64, 64, 3) and labels.shape == (0,) and masks.shape == (0, 64, 64)
