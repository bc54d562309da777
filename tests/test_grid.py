"""The demo's comparison grid (liftcam.cli.grid): size, captions off the tiles, title and
colour bar."""
import numpy as np
import pytest
from PIL import Image

from liftcam.cli import grid as G
from liftcam.engine.errors import InputError
from liftcam.engine.maps import colormap_jet

FLAT = (200, 30, 60)          # a tile colour that no text or background pixel has
WHITE = np.array(G.BACKGROUND)


def _flat(size=64, color=FLAT):
    return Image.new("RGB", (size, size), color)


def _grid(rows=3, cols=4, tile=G.TILE, title="vgg_demo", captions=None, **kw):
    if captions is None:
        captions = [["pred triangle 97%", "true triangle"]] + [[]] * (cols - 1)
    table = [[(_flat(), captions[c]) for c in range(cols)] for _ in range(rows)]
    names = ["input"] + [f"method{c}" for c in range(1, cols)]
    return np.asarray(G.make_grid(names, table, tile=tile, title=title, **kw)).astype(int)


def _crop(a, box):
    left, top, right, bottom = box
    return a[top:bottom, left:right]


def _has_ink(a, box):
    """Some pixel in box is darker than the background (text was drawn)."""
    return bool((_crop(a, box).sum(axis=-1) < 3 * 160).any())


@pytest.mark.parametrize("rows, cols, tile, lines, title", [
    (8, 10, 128, 2, "vgg_demo"), (1, 1, 128, 2, "m"), (2, 3, 48, 1, None),
    (3, 2, 64, 0, "resnet_demo"), (1, 5, 16, 3, None)])
def test_size_is_grid_size(rows, cols, tile, lines, title):
    captions = [["a"] * lines] * cols
    a = _grid(rows, cols, tile, title, captions, caption_lines=lines)
    size = G.grid_size(rows, cols, tile, caption_lines=lines, titled=title is not None)
    assert (a.shape[1], a.shape[0]) == size
    layout = G.GridLayout(rows, cols, tile, lines, title is not None)
    # every tile is inside the image and lies where tile_box says
    for r in range(rows):
        for c in range(cols):
            box = layout.tile_box(r, c)
            assert box == G.tile_box(r, c, tile, lines, title is not None)
            assert box[2] <= size[0] and box[3] <= size[1]
            assert (_crop(a, box) == FLAT).all()
    assert layout.colorbar_box()[3] <= size[1] - G.GAP


def test_default_size_is_the_demo_layout():
    # what run_demo draws: titled, two caption lines per row
    assert G.grid_size(8, 10) == (10 * 128 + 11 * G.GAP,
                                  G.GAP + G.TITLE + G.HEADER + G.GAP
                                  + 8 * (128 + G.caption_height(2) + G.GAP)
                                  + G.COLORBAR + G.GAP)
    assert G.grid_size(8, 10, titled=False)[1] == G.grid_size(8, 10)[1] - G.GAP - G.TITLE


def test_captions_lie_outside_every_tile():
    long = ["pred a-class-with-a-very-long-name 100%", "true a-class-with-a-very-long-name"]
    rows, cols = 3, 4
    a = _grid(rows, cols, captions=[long] * cols)
    layout = G.GridLayout(rows, cols)
    for r in range(rows):
        for c in range(cols):
            assert (_crop(a, layout.tile_box(r, c)) == FLAT).all(), (r, c)
            assert _has_ink(a, layout.caption_box(r, c)), (r, c)
            # each caption stays in its column: the gap to the next column is background
            left, top, right, bottom = layout.caption_box(r, c)
            assert (a[top:bottom, right:right + G.GAP] == WHITE).all()


def test_caption_runs_on_under_captionless_neighbours():
    long = ["pred a-class-with-a-very-long-name 100%", "true a-class-with-a-very-long-name"]
    a = _grid(2, 3, captions=[long, [], []])
    layout = G.GridLayout(2, 3)
    for r in range(2):
        assert _has_ink(a, layout.caption_box(r, 1))       # the text continues there
        for c in range(3):
            assert (_crop(a, layout.tile_box(r, c)) == FLAT).all()


def test_title_and_header_are_drawn():
    a = _grid(2, 3, title="vgg_demo")
    layout = G.GridLayout(2, 3)
    assert _has_ink(a, layout.title_box())
    for c in range(3):
        assert _has_ink(a, layout.header_box(c))
    # no title: no title line, and the header moves up
    b = _grid(2, 3, title=None)
    untitled = G.GridLayout(2, 3, titled=False)
    assert untitled.title_box() is None
    assert b.shape[0] == a.shape[0] - G.GAP - G.TITLE
    assert _has_ink(b, untitled.header_box(0))


def test_colour_bar_is_jet_from_0_to_1():
    a = _grid(2, 3)
    left, top, right, bottom = G.GridLayout(2, 3).colorbar_box()
    bar = a[top:bottom, left:right]
    assert right - left == G.BAR_MAX_WIDTH and bottom - top == G.BAR_HEIGHT
    assert (bar == bar[:1]).all()                          # the same ramp on every line
    lo, hi = colormap_jet(np.array([0.0, 1.0])).astype(int)
    assert np.abs(bar[:, 0] - lo).max() <= 2
    assert np.abs(bar[:, -1] - hi).max() <= 2
    ramp = colormap_jet(np.linspace(0.0, 1.0, right - left)).astype(int)
    assert np.abs(bar[0] - ramp).max() <= 2
    # tick labels "0" left and "1" right of the bar
    assert _has_ink(a, (left - G.TICK_WIDTH, top, left, bottom))
    assert _has_ink(a, (right, top, right + G.TICK_WIDTH, bottom))


def test_narrow_grid_keeps_a_colour_bar_inside():
    a = _grid(1, 1, tile=48, captions=[["x"]])
    layout = G.GridLayout(1, 1, 48)
    left, top, right, bottom = layout.colorbar_box()
    assert 1 <= right - left and right + G.TICK_WIDTH <= a.shape[1]
    assert np.abs(a[top, left] - colormap_jet(np.array([0.0]))[0]).max() <= 2


def test_small_images_are_enlarged_crisply():
    checker = np.indices((8, 8)).sum(0) % 2
    img = Image.fromarray((checker * 255).astype(np.uint8)).convert("RGB")
    a = np.asarray(G.make_grid(["in"], [[(img, [])]], tile=32))
    tile = _crop(a, G.GridLayout(1, 1, 32, titled=False).tile_box(0, 0))
    assert set(np.unique(tile)) == {0, 255}                # no blended edge pixels
    blocks = tile[..., 0].reshape(8, 4, 8, 4)
    assert (blocks == blocks[:, :1, :, :1]).all()          # each source pixel is a 4x4 block
    assert (blocks[:, 0, :, 0] == checker * 255).all()


def test_bad_input():
    with pytest.raises(InputError, match="caption_lines=1"):
        G.make_grid(["a"], [[(_flat(), ["one", "two"])]], caption_lines=1)
    with pytest.raises(InputError, match="2 tiles for 1 columns"):
        G.make_grid(["a"], [[(_flat(), []), (_flat(), [])]])
    with pytest.raises(InputError, match="at least one"):
        G.make_grid([], [])
    with pytest.raises(InputError, match="tile"):
        G.grid_size(1, 1, tile=0)
