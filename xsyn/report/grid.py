"""Contact sheets: scans with class-coloured boxes, labels and optional heat maps.

Reused by ``xsyn show`` and by the synthesis stage to show attention maps next to the
generated scan. :func:`draw_grid` takes plain data (arrays, boxes, strings), so callers
need not know anything about datasets.

Box styles: ``boxes`` are drawn solid (the label that counts: ground truth, refined box);
``dashed`` boxes are drawn dashed in the same class colour (e.g. the box requested from
the generator before CAR refined it).
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from functools import lru_cache

import numpy as np
from PIL import Image, ImageDraw, ImageFont

# Tab20-like palette: distinct, readable on white and on saturated scan colours.
PALETTE: tuple[tuple[int, int, int], ...] = (
    (230, 25, 75), (60, 180, 75), (255, 140, 0), (0, 130, 200), (145, 30, 180), (70, 240, 240),
    (240, 50, 230), (128, 128, 0), (0, 128, 128), (170, 110, 40), (128, 0, 0), (0, 0, 128),
    (255, 225, 25), (170, 255, 195), (250, 190, 212), (128, 128, 128),
)

Box = Sequence[float]  # COCO [x, y, w, h] in pixels of the item's image


@dataclass
class GridItem:
    """One tile: an RGB scan, its boxes (box, label), optional dashed boxes and heat maps."""

    image: np.ndarray | Image.Image
    boxes: list[tuple[Box, str]] = field(default_factory=list)
    dashed: list[tuple[Box, str]] = field(default_factory=list)
    heatmaps: list[tuple[str, np.ndarray]] = field(default_factory=list)
    title: str | None = None


def colour_for(label: str, labels: Sequence[str] | None = None) -> tuple[int, int, int]:
    """Stable class colour: by position in ``labels`` if given, else by a hash of the name."""
    if labels is not None and label in labels:
        return PALETTE[list(labels).index(label) % len(PALETTE)]
    return PALETTE[zlib.crc32(label.encode()) % len(PALETTE)]


@lru_cache(maxsize=8)
def _font(size: int) -> ImageFont.ImageFont:
    try:
        import matplotlib

        path = f"{matplotlib.get_data_path()}/fonts/ttf/DejaVuSans.ttf"
        return ImageFont.truetype(path, size)
    except (ImportError, OSError):
        return ImageFont.load_default()


def _dashed_rect(draw: ImageDraw.ImageDraw, xyxy: Sequence[float], colour, width: int, dash: int) -> None:
    x0, y0, x1, y1 = xyxy
    for (ax, ay), (bx, by) in (((x0, y0), (x1, y0)), ((x1, y0), (x1, y1)),
                               ((x1, y1), (x0, y1)), ((x0, y1), (x0, y0))):
        length = max(abs(bx - ax), abs(by - ay))
        n = max(int(length // (2 * dash)), 1)
        for i in range(n + 1):
            f0, f1 = min(2 * i * dash / max(length, 1e-6), 1.0), min((2 * i + 1) * dash / max(length, 1e-6), 1.0)
            if f0 >= 1.0:
                break
            draw.line([(ax + (bx - ax) * f0, ay + (by - ay) * f0), (ax + (bx - ax) * f1, ay + (by - ay) * f1)],
                      fill=colour, width=width)


def heatmap_tile(scan: Image.Image, heat: np.ndarray, size: tuple[int, int]) -> Image.Image:
    """A heat map (any HxW floats) normalised, coloured and blended over the grey scan."""
    from matplotlib import colormaps

    h = np.asarray(heat, np.float32)
    h = np.nan_to_num(h - h.min())
    h = h / h.max() if h.max() > 0 else h
    hm = Image.fromarray((h * 255).astype(np.uint8)).resize(size, Image.BILINEAR)
    rgb = (colormaps["inferno"](np.asarray(hm) / 255.0)[..., :3] * 255).astype(np.uint8)
    grey = np.asarray(scan.convert("L").convert("RGB").resize(size, Image.BILINEAR), np.float32)
    return Image.fromarray((0.35 * grey + 0.65 * rgb).astype(np.uint8))


def draw_item(item: GridItem, cell: int = 256, labels: Sequence[str] | None = None) -> Image.Image:
    """One tile (scan plus its heat maps side by side), boxes scaled to ``cell`` px."""
    scan = item.image if isinstance(item.image, Image.Image) else Image.fromarray(np.asarray(item.image))
    scan = scan.convert("RGB")
    sx, sy = cell / scan.width, cell / scan.height
    base = scan.resize((cell, cell), Image.BILINEAR)
    draw = ImageDraw.Draw(base)
    font = _font(max(9, cell // 22))
    lw = max(1, cell // 128)
    for boxes, dashed in ((item.dashed, True), (item.boxes, False)):
        for box, label in boxes:
            x, y, w, h = (float(v) for v in box)
            xyxy = (x * sx, y * sy, (x + w) * sx - 1, (y + h) * sy - 1)
            col = colour_for(label, labels)
            if dashed:
                _dashed_rect(draw, xyxy, col, lw, dash=max(3, cell // 64))
                continue
            draw.rectangle(xyxy, outline=col, width=lw)
            tb = draw.textbbox((0, 0), label, font=font)
            tw, th = tb[2] - tb[0] + 4, tb[3] - tb[1] + 4
            ty = xyxy[1] - th if xyxy[1] - th >= 0 else xyxy[1]
            tx = min(max(xyxy[0], 0), cell - tw)
            draw.rectangle((tx, ty, tx + tw, ty + th), fill=col)
            draw.text((tx + 2, ty + 2 - tb[1]), label, fill=(255, 255, 255), font=font)
    tiles = [base]
    for name, heat in item.heatmaps:
        tile = heatmap_tile(scan, heat, (cell, cell))
        ImageDraw.Draw(tile).text((3, 2), name, fill=(255, 255, 255), font=font)
        tiles.append(tile)
    out = Image.new("RGB", (cell * len(tiles), cell + (font.size + 6 if item.title else 0)), (255, 255, 255))
    for i, t in enumerate(tiles):
        out.paste(t, (i * cell, 0))
    if item.title:
        ImageDraw.Draw(out).text((3, cell + 2), item.title, fill=(0, 0, 0), font=font)
    return out


def draw_grid(items: Sequence[GridItem], cols: int = 4, cell: int = 256,
              labels: Sequence[str] | None = None, gap: int = 4) -> Image.Image:
    """Tiles in ``cols`` columns on a white sheet; ``labels`` fixes the class colours."""
    if not items:
        raise ValueError("draw_grid: no items to draw")
    if cols < 1:
        raise ValueError(f"draw_grid: cols must be ≥ 1, got {cols}")
    tiles = [draw_item(it, cell, labels) for it in items]
    tw = max(t.width for t in tiles)
    th = max(t.height for t in tiles)
    cols = min(cols, len(tiles))
    rows = -(-len(tiles) // cols)
    sheet = Image.new("RGB", (cols * tw + (cols + 1) * gap, rows * th + (rows + 1) * gap), (255, 255, 255))
    for i, t in enumerate(tiles):
        r, c = divmod(i, cols)
        sheet.paste(t, (gap + c * (tw + gap), gap + r * (th + gap)))
    return sheet
