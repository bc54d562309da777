"""Image loading (every mode to RGB, EXIF, errors), preprocessing, jet, overlays, atomic files."""
import io
import os

import numpy as np
import pytest
from PIL import Image

from liftcam.engine import images as li
from liftcam.engine.atomic import (
    save_npy_atomic,
    save_png_atomic,
    write_bytes_atomic,
)
from liftcam.engine.errors import InputError
from liftcam.engine.images import load_image, preprocess
from liftcam.engine.maps import colormap_jet, overlay, resize_map


@pytest.fixture
def rgb():
    return np.random.default_rng(0).integers(0, 256, size=(20, 30, 3), dtype=np.uint8)


def _load(tmp_path, img, name, **save_kw):
    path = tmp_path / name
    img.save(path, **save_kw)
    out = load_image(path)
    assert isinstance(out, Image.Image) and out.mode == "RGB"
    assert out.size == img.size
    return np.asarray(out)


# ----------------------------------------------------------------------------- modes

def test_rgb_png_exact(tmp_path, rgb):
    np.testing.assert_array_equal(_load(tmp_path, Image.fromarray(rgb), "a.png"), rgb)


def test_grayscale_L(tmp_path, rgb):
    g = rgb[..., 0]
    out = _load(tmp_path, Image.fromarray(g), "g.png")
    np.testing.assert_array_equal(out, np.repeat(g[..., None], 3, axis=2))


def _composite_ref(color, alpha, bg):
    a = alpha.astype(np.float64)[..., None] / 255.0
    return color.astype(np.float64) * a + np.asarray(bg, np.float64) * (1 - a)


@pytest.mark.parametrize("bg", [(0, 0, 0), (255, 255, 255)])
def test_rgba_composited_on_background(tmp_path, rgb, bg):
    alpha = np.random.default_rng(1).integers(0, 256, size=rgb.shape[:2], dtype=np.uint8)
    alpha[0, 0], alpha[0, 1] = 0, 255
    path = tmp_path / "a.png"
    Image.fromarray(np.dstack([rgb, alpha])).save(path)
    out = np.asarray(load_image(path, background=bg)).astype(np.float64)
    np.testing.assert_allclose(out, _composite_ref(rgb, alpha, bg), atol=1.0)
    np.testing.assert_array_equal(out[0, 0], bg)          # fully transparent → background
    np.testing.assert_array_equal(out[0, 1], rgb[0, 1])   # opaque → itself


def test_default_background_is_black(tmp_path, rgb):
    path = tmp_path / "clear.png"
    Image.fromarray(np.dstack([rgb, np.zeros(rgb.shape[:2], np.uint8)])).save(path)
    assert np.asarray(load_image(path)).max() == 0


def test_LA(tmp_path, rgb):
    g, alpha = rgb[..., 0], rgb[..., 1]
    path = tmp_path / "la.png"
    Image.merge("LA", [Image.fromarray(g), Image.fromarray(alpha)]).save(path)
    assert Image.open(path).mode == "LA"
    out = np.asarray(load_image(path)).astype(np.float64)
    ref = _composite_ref(np.repeat(g[..., None], 3, 2), alpha, (0, 0, 0))
    np.testing.assert_allclose(out, ref, atol=1.0)


def test_cmyk_jpeg(tmp_path, rgb):
    cmyk = Image.fromarray(rgb).convert("CMYK")
    path = tmp_path / "c.jpg"
    cmyk.save(path, quality=95)
    assert Image.open(path).mode == "CMYK"
    out = load_image(path)
    assert out.mode == "RGB" and out.size == (30, 20)
    ref = np.asarray(Image.open(path).convert("RGB")).astype(int)
    np.testing.assert_array_equal(np.asarray(out).astype(int), ref)
    # and roughly the original colours (lossy JPEG)
    assert np.abs(np.asarray(out).astype(int) - rgb.astype(int)).mean() < 40


def test_palette(tmp_path, rgb):
    p = Image.fromarray(rgb).quantize(16)
    path = tmp_path / "p.png"
    p.save(path)
    out = _load(tmp_path, p, "p.png")
    np.testing.assert_array_equal(out, np.asarray(p.convert("RGB")))


def test_palette_with_transparency(tmp_path):
    p = Image.new("P", (4, 2))
    p.putpalette([255, 0, 0, 0, 255, 0] + [0] * 762)
    p.putdata([0, 1, 0, 1, 1, 0, 1, 0])
    path = tmp_path / "pt.png"
    p.save(path, transparency=1)
    out = np.asarray(load_image(path, background=(0, 0, 255)))
    np.testing.assert_array_equal(out[0, 0], [255, 0, 0])
    np.testing.assert_array_equal(out[0, 1], [0, 0, 255])  # transparent index → background


def test_16bit_png_scaled(tmp_path):
    v = np.array([[0, 1, 128, 129, 257, 32767], [32768, 65279, 65280, 65534, 65535, 4000]],
                 dtype=np.uint16)
    path = tmp_path / "i16.png"
    Image.fromarray(v).save(path)
    assert Image.open(path).mode in ("I;16", "I")
    out = np.asarray(load_image(path))
    ref = np.round(v.astype(np.float64) / 257.0).astype(np.uint8)
    np.testing.assert_array_equal(out[..., 0], ref)
    np.testing.assert_array_equal(out[..., 0], out[..., 2])
    assert out[1, 4, 0] == 255 and out[0, 0, 0] == 0


def test_32bit_I_and_float_tiff(tmp_path):
    v = np.array([[0, 65535, -5, 70000]], dtype=np.int32)
    path = tmp_path / "i32.tif"
    Image.fromarray(v, "I").save(path)
    out = np.asarray(load_image(path))[..., 0]
    np.testing.assert_array_equal(out, [[0, 255, 0, 255]])
    f = np.array([[0.0, 0.5, 1.0, np.nan]], dtype=np.float32)
    path = tmp_path / "f.tif"
    Image.fromarray(f).save(path)
    out = np.asarray(load_image(path))[..., 0]
    np.testing.assert_array_equal(out, [[0, 128, 255, 0]])


def test_1bit(tmp_path):
    b = np.zeros((8, 8), dtype=bool)
    b[2:5, 3:7] = True
    img = Image.fromarray(b)
    assert img.mode == "1"
    for name in ("b.png", "b.bmp"):
        out = _load(tmp_path, img, name)
        np.testing.assert_array_equal(out[..., 0], np.where(b, 255, 0))


@pytest.mark.parametrize("name,kw", [("a.webp", {"lossless": True}), ("a.tif", {}),
                                     ("a.tiff", {"compression": "tiff_lzw"}), ("a.bmp", {}),
                                     ("a.png", {})])
def test_lossless_formats(tmp_path, rgb, name, kw):
    np.testing.assert_array_equal(_load(tmp_path, Image.fromarray(rgb), name, **kw), rgb)


def test_lossy_webp_and_jpeg(tmp_path, rgb):
    smooth = np.asarray(Image.fromarray(rgb).resize((3, 2)).resize((30, 20), Image.BILINEAR))
    for name in ("a.webp", "a.jpg"):
        out = _load(tmp_path, Image.fromarray(smooth), name, quality=95)
        assert np.abs(out.astype(int) - smooth.astype(int)).mean() < 8


def test_exif_orientation(tmp_path):
    # 40 wide x 20 high: left half red, right half blue
    a = np.zeros((20, 40, 3), dtype=np.uint8)
    a[:, :20] = (255, 0, 0)
    a[:, 20:] = (0, 0, 255)
    img = Image.fromarray(a)
    exif = Image.Exif()
    exif[0x0112] = 6  # Orientation: rotate 90 CW to display
    path = tmp_path / "rot.jpg"
    img.save(path, quality=95, exif=exif.tobytes())
    out = load_image(path)
    assert out.size == (20, 40)  # width, height swapped
    ref = np.rot90(a, k=-1)      # 90 degrees clockwise: red ends on top
    assert np.abs(np.asarray(out).astype(int) - ref.astype(int)).mean() < 6
    o = np.asarray(out).astype(int)
    assert o[5, 10, 0] > 200 and o[5, 10, 2] < 60      # top is red
    assert o[35, 10, 2] > 200 and o[35, 10, 0] < 60    # bottom is blue
    # the same file without the tag is not rotated
    path2 = tmp_path / "norot.jpg"
    img.save(path2, quality=95)
    assert load_image(path2).size == (40, 20)


# ----------------------------------------------------------------------------- errors

def _err(path, *words):
    with pytest.raises(InputError) as ei:
        load_image(path)
    msg = str(ei.value)
    assert os.path.basename(str(path)) in msg
    for w in words:
        assert w in msg.lower(), msg
    return msg


def test_zero_byte(tmp_path):
    p = tmp_path / "empty.png"
    p.write_bytes(b"")
    _err(p, "empty")


def test_text_file(tmp_path):
    p = tmp_path / "notes.jpg"
    p.write_text("this is not an image\n" * 10)
    _err(p, "not an image")


def test_missing_and_directory(tmp_path):
    _err(tmp_path / "nope.png", "does not exist")
    d = tmp_path / "adir.png"
    d.mkdir()
    _err(d, "not a regular file")


def test_corrupt(tmp_path, rgb):
    buf = io.BytesIO()
    Image.fromarray(rgb).save(buf, format="PNG")
    data = bytearray(buf.getvalue())
    # keep the signature and IHDR, scramble the image data
    rng = np.random.default_rng(0)
    data[60:] = rng.integers(0, 256, size=len(data) - 60, dtype=np.uint8).tobytes()
    p = tmp_path / "corrupt.png"
    p.write_bytes(bytes(data))
    _err(p)


@pytest.mark.parametrize("fmt,name", [("PNG", "trunc.png"), ("JPEG", "trunc.jpg"),
                                      ("WEBP", "trunc.webp")])
def test_truncated(tmp_path, fmt, name):
    a = np.random.default_rng(1).integers(0, 256, size=(64, 64, 3), dtype=np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format=fmt)
    p = tmp_path / name
    p.write_bytes(buf.getvalue()[: len(buf.getvalue()) // 2])
    _err(p)


def test_decompression_bomb(tmp_path, monkeypatch, rgb):
    p = tmp_path / "bomb.png"
    Image.fromarray(rgb).save(p)          # 600 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 100)  # error above 2x = 200
    msg = _err(p, "too large")
    assert "MAX_IMAGE_PIXELS" in msg


def test_bad_path_type():
    with pytest.raises(InputError):
        load_image(123)


# ----------------------------------------------------------------------------- preprocessing

def _ref(pils, resize=None, crop=None, mean=(0, 0, 0), std=(1, 1, 1), scale=255.0, bgr=False):
    out = []
    for im in pils:
        im = im.convert("RGB")
        if resize is not None:
            im = im.resize((resize[1], resize[0]), Image.BILINEAR)
        a = np.asarray(im).astype(np.float64)
        if crop is not None:
            h, w = a.shape[:2]
            top, left = int(round((h - crop[0]) / 2.0)), int(round((w - crop[1]) / 2.0))
            a = a[top:top + crop[0], left:left + crop[1]]
        if bgr:
            a = a[..., ::-1]
        a = (a / scale - np.asarray(mean)) / np.asarray(std)
        out.append(a.transpose(2, 0, 1))
    return np.stack(out)


IMNET = {"mean": [0.485, 0.456, 0.406], "std": [0.229, 0.224, 0.225]}


def test_preprocess_resize_vs_float64(rgb):
    pils = [Image.fromarray(rgb), Image.fromarray(rgb[::-1, :25].copy())]
    pp = {"resize": [16, 12], "scale": 255.0, "channel_order": "RGB", "resize_mode": "bilinear",
          **IMNET}
    x = preprocess(pils, pp)
    assert x.dtype == np.float32 and x.shape == (2, 3, 16, 12) and x.flags.c_contiguous
    np.testing.assert_allclose(x, _ref(pils, resize=(16, 12), **IMNET), rtol=1e-6, atol=1e-6)


def test_preprocess_bgr_and_scale(rgb):
    pil = Image.fromarray(rgb)
    pp = {"mean": [100.0, 110.0, 120.0], "std": [2.0, 3.0, 4.0], "scale": 1.0,
          "channel_order": "BGR"}
    x = preprocess([pil], pp)
    ref = _ref([pil], mean=(100, 110, 120), std=(2, 3, 4), scale=1.0, bgr=True)
    np.testing.assert_allclose(x, ref, rtol=1e-6, atol=1e-5)
    np.testing.assert_allclose(x[0, 0], (rgb[..., 2] - 100.0) / 2.0, atol=1e-5)


def test_preprocess_shorter_and_crop(rgb):
    pil = Image.fromarray(rgb)                      # 30 x 20 (w x h)
    x = preprocess([pil], {"resize_shorter": 10, "center_crop": [8, 8]})
    resized = pil.resize((15, 10), Image.BILINEAR)  # int(10 * 30 / 20) = 15
    ref = _ref([resized], crop=(8, 8))
    np.testing.assert_allclose(x, ref, atol=1e-6)


def test_preprocess_matches_torchvision(rgb):
    T = pytest.importorskip("torchvision.transforms")
    pil = Image.fromarray(np.random.default_rng(3).integers(0, 256, (37, 51, 3), dtype=np.uint8))
    tf = T.Compose([T.Resize(24), T.CenterCrop(20), T.ToTensor(), T.Normalize(**IMNET)])
    ref = tf(pil).numpy()[None]
    x = preprocess([pil], {"resize_shorter": 24, "center_crop": [20, 20], **IMNET})
    np.testing.assert_allclose(x, ref, atol=1e-5)
    # a crop larger than the image pads with zeros, as CenterCrop does
    tf = T.Compose([T.CenterCrop([41, 56]), T.ToTensor()])
    ref = tf(pil).numpy()[None]
    x = preprocess([pil], {"center_crop": [41, 56]})
    np.testing.assert_allclose(x, ref, atol=1e-6)


def test_preprocess_converts_modes():
    g = Image.fromarray(np.full((4, 4), 51, dtype=np.uint8))
    x = preprocess([g], {})
    np.testing.assert_allclose(x, np.full((1, 3, 4, 4), 0.2), atol=1e-7)


@pytest.mark.parametrize("pp", [
    {"resize": [8, 8], "colour": "RGB"},
    {"resize": 8},
    {"resize": [8, 0]},
    {"resize": [8, 8], "resize_shorter": 8},
    {"resize_shorter": -1},
    {"center_crop": [8]},
    {"std": [1, 0, 1]},
    {"mean": [0, 0]},
    {"mean": [0, float("nan"), 0]},
    {"scale": 0},
    {"channel_order": "RGBA"},
    {"resize_mode": "cubic"},
    "not a dict",
])
def test_preprocess_rejects_bad_dicts(rgb, pp):
    with pytest.raises(InputError):
        preprocess([Image.fromarray(rgb)], pp)


def test_preprocess_bad_images(rgb):
    with pytest.raises(InputError):
        preprocess([], {"resize": [4, 4]})
    with pytest.raises(InputError):
        preprocess([rgb], {"resize": [4, 4]})
    with pytest.raises(InputError, match="different sizes"):
        preprocess([Image.fromarray(rgb), Image.fromarray(rgb[:10])], {})


# ----------------------------------------------------------------------------- jet and overlay

def test_jet_matches_opencv():
    cv2 = pytest.importorskip("cv2")
    rng = np.random.default_rng(0)
    for dtype in (np.float32, np.float64):
        x = rng.random((50, 60)).astype(dtype)
        x[0, :3] = (0.0, 1.0, 0.5)
        ref = cv2.applyColorMap(np.uint8(255 * x), cv2.COLORMAP_JET)[..., ::-1]
        out = colormap_jet(x)
        assert out.dtype == np.uint8 and out.shape == (50, 60, 3)
        np.testing.assert_array_equal(out, ref)
    ramp = np.arange(256, dtype=np.uint8)[None]
    np.testing.assert_array_equal(
        colormap_jet(ramp.astype(np.float64) / 255.0 + 1e-9),
        cv2.applyColorMap(ramp, cv2.COLORMAP_JET)[..., ::-1])
    # out of range / NaN are clipped
    np.testing.assert_array_equal(colormap_jet(np.array([[-1.0, 2.0, np.nan]])),
                                  colormap_jet(np.array([[0.0, 1.0, 0.0]])))


def test_resize_map_matches_cv2_when_enlarging():
    cv2 = pytest.importorskip("cv2")
    cam = np.random.default_rng(0).random((7, 9)).astype(np.float32)
    out = resize_map(cam, (37, 53))
    ref = cv2.resize(cam, (53, 37), interpolation=cv2.INTER_LINEAR)
    assert out.shape == (37, 53) and out.dtype == np.float32
    np.testing.assert_allclose(out, ref, atol=1e-5)


@pytest.mark.parametrize("alpha", [0.5, 0.3, 0.0, 1.0])
def test_overlay_matches_pytorch_grad_cam(alpha):
    gc = pytest.importorskip("pytorch_grad_cam.utils.image")
    rng = np.random.default_rng(1)
    img = rng.integers(0, 256, size=(37, 53, 3), dtype=np.uint8)
    cam = rng.random((7, 9)).astype(np.float32)
    cam = (cam - cam.min()) / (cam.max() - cam.min())
    out = overlay(Image.fromarray(img), cam, alpha=alpha)
    assert out.mode == "RGB" and out.size == (53, 37)     # the image's original size
    ref = gc.show_cam_on_image(np.float32(img) / 255, resize_map(cam, (37, 53)), use_rgb=True,
                               image_weight=1 - alpha)
    np.testing.assert_array_equal(np.asarray(out), ref)


def test_overlay_with_cv2_resized_map_is_close():
    cv2 = pytest.importorskip("cv2")
    gc = pytest.importorskip("pytorch_grad_cam.utils.image")
    rng = np.random.default_rng(2)
    img = rng.integers(0, 256, size=(64, 48, 3), dtype=np.uint8)
    cam = rng.random((8, 6)).astype(np.float32)
    ref = gc.show_cam_on_image(np.float32(img) / 255, cv2.resize(cam, (48, 64)), use_rgb=True)
    out = np.asarray(overlay(Image.fromarray(img), cam)).astype(int)
    diff = np.abs(out - ref.astype(int))
    assert (diff > 0).mean() < 0.02 and diff.max() <= 8


def test_overlay_bad_input(rgb):
    with pytest.raises(InputError):
        overlay(Image.fromarray(rgb), np.zeros((2, 2, 2)))
    with pytest.raises(InputError):
        overlay(Image.fromarray(rgb), np.array([[np.nan, 0.0]]))
    with pytest.raises(InputError):
        overlay(Image.fromarray(rgb), np.zeros((2, 2)), alpha=1.5)
    with pytest.raises(InputError):
        overlay(rgb, np.zeros((2, 2)))


# ----------------------------------------------------------------------------- atomic files

def test_save_png_and_npy(tmp_path, rgb):
    p = tmp_path / "o.png"
    save_png_atomic(Image.fromarray(rgb), p)
    np.testing.assert_array_equal(np.asarray(Image.open(p)), rgb)
    save_png_atomic(rgb[..., 0], p)  # overwrite, from an array
    np.testing.assert_array_equal(np.asarray(Image.open(p)), rgb[..., 0])
    q = tmp_path / "map.bin"
    arr = np.random.default_rng(0).random((3, 4)).astype(np.float32)
    save_npy_atomic(arr, q)
    assert q.exists() and not (tmp_path / "map.bin.npy").exists()
    np.testing.assert_array_equal(np.load(q), arr)
    assert sorted(os.listdir(tmp_path)) == ["map.bin", "o.png"]


def test_atomic_write_leaves_nothing_on_error(tmp_path, monkeypatch):
    p = tmp_path / "keep.txt"
    write_bytes_atomic(p, b"old")
    with pytest.raises(TypeError):
        write_bytes_atomic(p, "not bytes")
    assert p.read_bytes() == b"old"

    def boom(src, dst):
        raise OSError("disk full")
    monkeypatch.setattr(li.os, "replace", boom)
    with pytest.raises(OSError):
        write_bytes_atomic(p, b"new")
    monkeypatch.undo()
    assert p.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["keep.txt"]
    with pytest.raises(InputError):
        write_bytes_atomic(tmp_path / "no" / "dir.bin", b"x")


# ---------------------------------------------------------------- without cv2 / grad-cam
# (CI's fresh venv has neither; these pin the same behaviour without them)

def test_jet_table_pinned():
    import hashlib
    lut = colormap_jet(np.arange(256, dtype=np.float64)[None] / 255.0 + 1e-9)[0]
    # sha256 of cv2.applyColorMap(arange(256), COLORMAP_JET)[..., ::-1] (OpenCV 5.0)
    assert hashlib.sha256(np.ascontiguousarray(lut).tobytes()).hexdigest() == \
        "661fa696672fecb0ffa3e76bff80e0119d8308227c361c0043f705d8c867faad"
    known = {0: (0, 0, 128), 31: (0, 0, 252), 32: (0, 0, 255), 96: (2, 255, 254),
             128: (130, 255, 126), 160: (255, 252, 0), 224: (252, 0, 0), 255: (128, 0, 0)}
    for i, c in known.items():
        assert tuple(lut[i]) == c


def test_overlay_formula_without_grad_cam():
    rng = np.random.default_rng(4)
    img = rng.integers(0, 256, size=(10, 12, 3), dtype=np.uint8)
    cam = rng.random((10, 12)).astype(np.float32)
    alpha = 0.25
    # show_cam_on_image(img/255, cam, use_rgb=True, image_weight=1-alpha), transcribed
    heat = np.float32(colormap_jet(cam)) / 255
    w = 1 - alpha
    ref = (1 - w) * heat + w * (np.float32(img) / 255)
    ref = np.uint8(255 * (ref / np.max(ref)))
    np.testing.assert_array_equal(np.asarray(overlay(Image.fromarray(img), cam, alpha)), ref)


def test_decode_image_decodes_like_load_image(tmp_path, rgb):
    """The in-memory loader shares load_image's decoding and its errors."""
    path = tmp_path / "a.png"
    Image.fromarray(rgb).save(path)
    data = path.read_bytes()
    assert np.array_equal(np.asarray(li.decode_image(data)), np.asarray(load_image(path)))
    assert np.array_equal(np.asarray(li.decode_image(memoryview(data))), rgb)
    for bad, why in ((b"", "empty"), (b"not an image" * 10, "not an image"),
                     (data[:len(data) // 2], "truncated|corrupt"), ("a.png", "must be bytes")):
        with pytest.raises(InputError, match=why):
            li.decode_image(bad, name="row 3")
    with pytest.raises(InputError, match="over the limit"):
        li.decode_image(data, max_pixels=100)
