"""The labelled comparison grid that ``liftcam demo`` writes (Pillow only).

Layout, top to bottom (every band as wide as the grid, ``GAP`` pixels of border):

- a title line (the model's name) when ``title`` is given;
- a header row with the column names, centred over the columns;
- per row: the tiles, then a caption strip under them (``caption_lines`` lines of text,
  each tile's caption under that tile, running on under captionless neighbours); captions
  are never drawn over image pixels;
- a colour bar of the jet colormap from 0 (left) to 1 (right) with tick labels "0" / "1",
  the scale of the CAM overlays (maps are min-max normalised to [0, 1]).

:class:`GridLayout` is the one place that says where everything goes; :func:`grid_size`,
:func:`tile_box` and :func:`make_grid` all read it, so the written PNG's size is always
``grid_size(rows, cols, tile, caption_lines, titled)``.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from liftcam.engine.errors import InputError
from liftcam.engine.maps import colormap_jet

TILE = 128                 # pixels per tile (square)
GAP = 4                    # pixels between tiles and around the border
TITLE = 22                 # height of the title line (when there is a title)
HEADER = 18                # height of the header row with the column names
LINE = 14                  # height of one caption line
CAPTION_LINES = 2          # caption lines per row by default ("pred ...", "true ...")
COLORBAR = 22              # height of the colour-bar band (bar + tick labels)
BAR_HEIGHT = 12            # height of the bar itself
BAR_MAX_WIDTH = 256        # one pixel per colormap entry at most
TICK_WIDTH = 14            # room for a tick label left and right of the bar
BACKGROUND = (255, 255, 255)
TEXT = (0, 0, 0)
TITLE_FONT, HEADER_FONT, CAPTION_FONT = 15, 12, 11


def caption_height(lines: int) -> int:
    """Height of a row's caption strip holding ``lines`` lines (0 for none)."""
    return lines * LINE + 2 if lines > 0 else 0


@dataclass(frozen=True)
class GridLayout:
    """Pixel boxes ``(left, top, right, bottom)`` (right/bottom exclusive) of a grid."""

    rows: int
    cols: int
    tile: int = TILE
    caption_lines: int = CAPTION_LINES
    titled: bool = True

    def __post_init__(self):
        for name in ("rows", "cols", "tile"):
            v = getattr(self, name)
            if not isinstance(v, int) or isinstance(v, bool) or v < 1:
                raise InputError(f"grid {name} must be an integer >= 1, got {v!r}")
        c = self.caption_lines
        if not isinstance(c, int) or isinstance(c, bool) or c < 0:
            raise InputError(f"caption_lines must be an integer >= 0, got {c!r}")

    @property
    def width(self) -> int:
        return self.cols * self.tile + (self.cols + 1) * GAP

    @property
    def header_top(self) -> int:
        return GAP + TITLE if self.titled else 0

    @property
    def row_pitch(self) -> int:
        return self.tile + caption_height(self.caption_lines) + GAP

    @property
    def rows_bottom(self) -> int:
        """y just below the last row's caption strip and gap."""
        return self.header_top + HEADER + GAP + self.rows * self.row_pitch

    @property
    def size(self) -> tuple:
        return self.width, self.rows_bottom + COLORBAR + GAP

    def title_box(self):
        """The title line, or None without a title."""
        if not self.titled:
            return None
        return GAP, GAP, self.width - GAP, GAP + TITLE

    def header_box(self, col: int) -> tuple:
        left = GAP + col * (self.tile + GAP)
        return left, self.header_top, left + self.tile, self.header_top + HEADER

    def tile_box(self, row: int, col: int) -> tuple:
        left = GAP + col * (self.tile + GAP)
        top = self.header_top + HEADER + GAP + row * self.row_pitch
        return left, top, left + self.tile, top + self.tile

    def caption_box(self, row: int, col: int, span: int = 1) -> tuple:
        """The strip under tile (row, col), ``span`` columns wide."""
        left, _, right, bottom = self.tile_box(row, col)
        right += (span - 1) * (self.tile + GAP)
        return left, bottom, right, bottom + caption_height(self.caption_lines)

    def colorbar_box(self) -> tuple:
        """The bar itself (without its tick labels)."""
        left = GAP + TICK_WIDTH
        width = max(1, min(BAR_MAX_WIDTH, self.width - 2 * (GAP + TICK_WIDTH)))
        top = self.rows_bottom + (COLORBAR - BAR_HEIGHT) // 2
        return left, top, left + width, top + BAR_HEIGHT


def grid_size(rows: int, cols: int, tile: int = TILE, caption_lines: int = CAPTION_LINES,
              titled: bool = True) -> tuple:
    """``(width, height)`` of a grid of ``rows`` x ``cols`` tiles, with the header row, a
    caption strip of ``caption_lines`` lines under each row, the colour bar and (when
    ``titled``) the title line: the size of ``make_grid``'s image."""
    return GridLayout(rows, cols, tile, caption_lines, titled).size


def tile_box(row: int, col: int, tile: int = TILE, caption_lines: int = CAPTION_LINES,
             titled: bool = True) -> tuple:
    """``(left, top, right, bottom)`` of the tile at (row, col)."""
    return GridLayout(row + 1, col + 1, tile, caption_lines, titled).tile_box(row, col)


def _font(size: int):
    try:
        return ImageFont.load_default(size=size)    # scalable font (Pillow >= 10.1 + FreeType)
    except TypeError:
        return ImageFont.load_default()


def _text_width(draw, text, font) -> int:
    left, _, right, _ = draw.textbbox((0, 0), text, font=font)
    return right - left


def _fit(draw, text: str, font, width: int) -> str:
    """``text`` shortened with an ellipsis to fit ``width`` pixels."""
    if _text_width(draw, text, font) <= width:
        return text
    while text and _text_width(draw, text + "…", font) > width:
        text = text[:-1]
    return text + "…"


def _caption(draw, box: tuple, lines, font) -> None:
    """Draw ``lines`` in ``box`` (a caption strip under the tiles), one per LINE pixels."""
    left, top, right, _ = box
    for i, s in enumerate(lines):
        draw.text((left + 1, top + 1 + i * LINE), _fit(draw, s, font, right - left - 2),
                  font=font, fill=TEXT)


def _colorbar(grid: Image.Image, draw, layout: GridLayout, font) -> None:
    left, top, right, bottom = layout.colorbar_box()
    ramp = colormap_jet(np.linspace(0.0, 1.0, right - left))          # (W, 3) uint8
    bar = np.ascontiguousarray(np.broadcast_to(ramp, (bottom - top,) + ramp.shape))
    grid.paste(Image.fromarray(bar, "RGB"), (left, top))
    mid = (top + bottom) // 2
    draw.text((left - 3, mid), "0", font=font, fill=TEXT, anchor="rm")
    draw.text((right + 3, mid), "1", font=font, fill=TEXT, anchor="lm")
    note = "CAM value (normalised)"
    x = right + TICK_WIDTH + 4
    if x + _text_width(draw, note, font) <= layout.width - GAP:
        draw.text((x, mid), note, font=font, fill=TEXT, anchor="lm")


def _to_tile(img: Image.Image, tile: int) -> Image.Image:
    img = img.convert("RGB")
    if img.size != (tile, tile):
        # NEAREST keeps small (pixel-art) images crisp when enlarged; shrink smoothly
        enlarge = img.width <= tile and img.height <= tile
        img = img.resize((tile, tile), Image.NEAREST if enlarge else Image.BILINEAR)
    return img


def make_grid(columns, rows, tile: int = TILE, title=None,
              caption_lines: int = CAPTION_LINES) -> Image.Image:
    """Lay out tiles in a labelled grid (see the module docstring for the layout).

    ``columns``: the column names (header). ``rows``: one list per row of
    ``(image, caption_lines)`` pairs (captions may be empty), one per column; a ``None``
    image leaves its tile blank. Images are resized to ``tile`` x ``tile`` (NEAREST when
    enlarging). Each caption has at most ``caption_lines`` lines; they are written under
    the tile, never on it. ``title`` (e.g. the model's name) goes on a line of its own
    above the header. The image's size is ``grid_size(len(rows), len(columns), tile,
    caption_lines, titled=title is not None)``."""
    columns = list(columns)
    if not columns or not rows:
        raise InputError("make_grid needs at least one column and one row")
    for r, row in enumerate(rows):
        if len(row) != len(columns):
            raise InputError(f"row {r} has {len(row)} tiles for {len(columns)} columns")
        for c, (_, lines) in enumerate(row):
            n = len([s for s in (lines or []) if s])
            if n > caption_lines:
                raise InputError(f"the caption of tile ({r}, {c}) has {n} lines; "
                                 f"make_grid was given caption_lines={caption_lines}")
    layout = GridLayout(len(rows), len(columns), tile, caption_lines, title is not None)
    grid = Image.new("RGB", layout.size, BACKGROUND)
    draw = ImageDraw.Draw(grid)
    small = _font(CAPTION_FONT)
    if title is not None:
        left, top, right, _ = layout.title_box()
        draw.text((left, top + 1), _fit(draw, str(title), _font(TITLE_FONT), right - left),
                  font=_font(TITLE_FONT), fill=TEXT)
    header = _font(HEADER_FONT)
    for c, name in enumerate(columns):
        left, top, right, _ = layout.header_box(c)
        text = _fit(draw, str(name), header, tile)
        tw = _text_width(draw, text, header)
        draw.text((left + (tile - tw) // 2, top + 2), text, font=header, fill=TEXT)
    for r, row in enumerate(rows):
        captions = [[s for s in (lines or []) if s] for _, lines in row]
        for c, (img, _) in enumerate(row):
            if img is not None:
                grid.paste(_to_tile(img, tile), layout.tile_box(r, c)[:2])
            if captions[c]:
                span = 1
                while c + span < len(row) and not captions[c + span]:
                    span += 1
                _caption(draw, layout.caption_box(r, c, span), captions[c], small)
    _colorbar(grid, draw, layout, small)
    return grid
