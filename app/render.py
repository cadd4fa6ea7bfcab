"""Pictures of a ``Prediction`` as pixels: heatmaps, hatching, outlines, cell labels, class chips
and the analysed square, composed in numpy (PIL draws the text, OpenCV encodes the JPEG).

Pure rendering: every number comes from ``hvl_core`` (``Prediction`` fields); nothing here
computes a probability, an entropy or a selection. Each function takes and returns an
``(H, W, 3) uint8`` array, so it is exact and unit-tested pixel by pixel, and cheap enough
(a few milliseconds) to redraw on every re-decision. Titles, colour bars and legends are
HTML beside the picture (``app.figures``), where they stay readable at any zoom.

Grid geometry: a ``g×g`` grid on a ``size``-pixel side has cell edges ``round(i·size/g)`` for
``i = 0..g`` (so the last edge is the image border); cell ``(row, col)`` spans
``[edge[row], edge[row+1])`` vertically and ``[edge[col], edge[col+1])`` horizontally.
"""

from __future__ import annotations

import base64
import functools
import os
from collections.abc import Iterable, Sequence

import cv2
import matplotlib
import numpy as np
from matplotlib import colormaps
from matplotlib.colors import Normalize
from PIL import Image, ImageDraw, ImageFont

# gradio reads matplotlib's backend around every event; left unresolved, the first event pays for
# importing pyplot to resolve it (~0.4 s on the server's event loop, every request waiting)
matplotlib.use("agg")

#: side (px) of the square overlays drawn over the model's view
DISPLAY_SIZE = 448
GRID_COLOR = (255, 255, 255)
GRID_THICKNESS = 2
HATCH_COLOR = (255, 255, 255)
HATCH_SPACING = 10
HATCH_WIDTH = 2
#: pseudo-OOD outline: Okabe–Ito vermillion, which the ΔH scale (cividis: blue–grey–yellow) lacks
OUTLINE_COLOR = (213, 94, 0)
OUTLINE_THICKNESS = 4
HEAT_ALPHA = 0.55
#: colour-blind-safe, perceptually uniform scales: entropy 0 → its maximum (an even split), and ΔH −m → 0 (grey) → +m
ENTROPY_CMAP = "viridis"
GAIN_CMAP = "cividis"
#: Okabe & Ito (2008), the colour-blind-safe qualitative palette, for classes
OKABE_ITO = ("#E69F00", "#56B4E9", "#009E73", "#F0E442", "#0072B2", "#D55E00", "#CC79A7", "#000000")
#: write numbers into cells up to this grid size
MAX_LABELLED_GRID = 6
JPEG_QUALITY = 92
FONT_FILE = os.path.join(matplotlib.get_data_path(), "fonts", "ttf", "DejaVuSans-Bold.ttf")


# --------------------------------------------------------------------------- pixel layer


def cell_edges(size: int, g: int) -> np.ndarray:
    """The ``g + 1`` cell boundaries of a ``g``-cell grid over ``size`` pixels (first 0, last ``size``)."""
    if g < 1 or size < g:
        raise ValueError(f"cannot cut {size} px into {g} cells")
    return np.round(np.arange(g + 1) * size / g).astype(int)


def cell_box(row: int, col: int, size: int, g: int) -> tuple[int, int, int, int]:
    """Pixel box ``(y0, y1, x0, x1)`` (end-exclusive) of cell ``(row, col)``."""
    e = cell_edges(size, g)
    return int(e[row]), int(e[row + 1]), int(e[col]), int(e[col + 1])


def line_span(edge: int, size: int, thickness: int) -> tuple[int, int]:
    """Pixels ``[a, b)`` a grid line at ``edge`` covers: centred on interior edges, kept inside the
    image at the borders (edge 0 → ``[0, t)``, edge ``size`` → ``[size - t, size)``)."""
    a = min(max(edge - thickness // 2, 0), size - thickness)
    return a, a + thickness


def _check_image(img: np.ndarray) -> None:
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an (H, W, 3) uint8 image, got {img.shape} {img.dtype}")
    if img.shape[0] != img.shape[1]:
        raise ValueError(f"expected a square image, got {img.shape[1]}×{img.shape[0]}")


def draw_grid(img: np.ndarray, g: int, color=GRID_COLOR, thickness: int = GRID_THICKNESS) -> np.ndarray:
    """A copy of ``img`` with all ``g + 1`` horizontal and vertical grid lines, borders included."""
    _check_image(img)
    out = img.copy()
    size = out.shape[0]
    for e in cell_edges(size, g):
        a, b = line_span(int(e), size, thickness)
        out[a:b, :] = color
        out[:, a:b] = color
    return out


def upscale(image: np.ndarray, size: int = DISPLAY_SIZE) -> np.ndarray:
    """The model's square view, resized for display (bicubic)."""
    _check_image(image)
    if image.shape[0] == size:
        return image.copy()
    return np.asarray(Image.fromarray(image).resize((size, size), Image.BICUBIC))


def value_colors(values: np.ndarray, cmap: str, vmin: float, vmax: float) -> np.ndarray:
    """Per-cell RGB uint8 colours of ``values`` on the colour scale ``[vmin, vmax]`` (clipped)."""
    norm = Normalize(vmin=vmin, vmax=vmax, clip=True)
    rgba = colormaps[cmap](norm(np.asarray(values, dtype=float)))
    return np.round(rgba[..., :3] * 255).astype(np.uint8)


def paint_cells(img: np.ndarray, colors: np.ndarray, alpha: float = HEAT_ALPHA) -> np.ndarray:
    """Blend each cell of a ``g×g`` grid with its colour: ``(1 - alpha)·img + alpha·colour``."""
    _check_image(img)
    g = colors.shape[0]
    if colors.shape != (g, g, 3):
        raise ValueError(f"expected (g, g, 3) colours, got {colors.shape}")
    size = img.shape[0]
    e = cell_edges(size, g)
    # nearest-cell expansion of the colour grid to pixels, using the same edges as the grid lines
    idx = np.searchsorted(e, np.arange(size), side="right") - 1
    layer = colors[idx][:, idx].astype(np.float32)
    out = (1 - alpha) * img.astype(np.float32) + alpha * layer
    return np.clip(np.round(out), 0, 255).astype(np.uint8)


def hatch_cells(
    img: np.ndarray,
    mask: np.ndarray,
    color=HATCH_COLOR,
    spacing: int = HATCH_SPACING,
    width: int = HATCH_WIDTH,
    grey: float = 0.75,
) -> np.ndarray:
    """Mark the cells where ``mask`` is True: desaturate them by ``grey`` and draw diagonal
    hatching (pixels with ``(x + y) mod spacing < width``)."""
    _check_image(img)
    mask = np.asarray(mask, dtype=bool)
    g = mask.shape[0]
    out = img.copy()
    size = img.shape[0]
    stripes = _stripes(size, spacing, width)
    for r, c in zip(*np.nonzero(mask)):
        y0, y1, x0, x1 = cell_box(int(r), int(c), size, g)
        block = out[y0:y1, x0:x1].astype(np.float32)
        luma = block @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        block = (1 - grey) * block + grey * luma[..., None]
        block = np.clip(np.round(block), 0, 255).astype(np.uint8)
        block[stripes[y0:y1, x0:x1]] = color
        out[y0:y1, x0:x1] = block
    return out


@functools.lru_cache(maxsize=8)
def _stripes(size: int, spacing: int, width: int) -> np.ndarray:
    yy, xx = np.mgrid[0:size, 0:size]
    return ((xx + yy) % spacing) < width


def outline_cells(
    img: np.ndarray, cells: Iterable[tuple[int, int]], g: int, color=OUTLINE_COLOR, thickness: int = OUTLINE_THICKNESS
) -> np.ndarray:
    """Draw a rectangle of ``thickness`` px just inside the border of each listed cell."""
    _check_image(img)
    out = img.copy()
    size = img.shape[0]
    for r, c in cells:
        if not (0 <= r < g and 0 <= c < g):
            raise ValueError(f"cell {(r, c)} is outside a {g}×{g} grid")
        y0, y1, x0, x1 = cell_box(int(r), int(c), size, g)
        t = min(thickness, (y1 - y0) // 2, (x1 - x0) // 2)
        out[y0 : y0 + t, x0:x1] = color
        out[y1 - t : y1, x0:x1] = color
        out[y0:y1, x0 : x0 + t] = color
        out[y0:y1, x1 - t : x1] = color
    return out


def hex_rgb(colour: str) -> tuple[int, int, int]:
    colour = colour.lstrip("#")
    return tuple(int(colour[i : i + 2], 16) for i in (0, 2, 4))


def class_palette(num_classes: int) -> np.ndarray:
    """RGB uint8 colours per class: Okabe–Ito up to 8 classes, then evenly spaced hues (the class
    map also writes each class's number, so colour is never the only cue)."""
    if num_classes <= len(OKABE_ITO):
        return np.array([hex_rgb(c) for c in OKABE_ITO[:num_classes]], np.uint8)
    cols = colormaps["hsv"](np.linspace(0, 1, num_classes, endpoint=False))
    return np.round(cols[:, :3] * 255).astype(np.uint8)


def text_colour(rgb) -> tuple[int, int, int]:
    """Black or white, whichever reads better on ``rgb`` (WCAG relative luminance)."""
    c = np.asarray(rgb, dtype=float) / 255
    lin = np.where(c <= 0.03928, c / 12.92, ((c + 0.055) / 1.055) ** 2.4)
    return (0, 0, 0) if float(lin @ [0.2126, 0.7152, 0.0722]) > 0.179 else (255, 255, 255)


@functools.lru_cache(maxsize=8)
def font(px: int) -> ImageFont.FreeTypeFont:
    """DejaVu Sans Bold (shipped with matplotlib: it has Δ, ², ⁰ and every digit)."""
    return ImageFont.truetype(FONT_FILE, px)


def fit_px(labels: Sequence[Sequence[str]], cell: int, px: int, smallest: int = 8) -> int:
    """The largest font size up to ``px`` at which the widest label, with its outline, fits in
    90% of a ``cell``-wide cell: labels never run into their neighbours."""
    widest = max((s for row in labels for s in row), key=len, default="")
    while px > smallest and font(px).getlength(widest) + 2 * max(2, px // 8) > 0.9 * cell:
        px -= 1
    return px


def label_cells(img: np.ndarray, labels: Sequence[Sequence[str]], px: int | None = None) -> np.ndarray:
    """Write ``labels[row][col]`` at the centre of each cell of a ``g×g`` grid, white on a black
    outline (readable on any colour)."""
    _check_image(img)
    g = len(labels)
    size = img.shape[0]
    e = cell_edges(size, g)
    px = fit_px(labels, int(np.diff(e).min()), px or max(12, min(26, size // (3 * g))))
    canvas = Image.fromarray(img)
    draw = ImageDraw.Draw(canvas)
    for r in range(g):
        for c in range(g):
            draw.text(
                ((e[c] + e[c + 1]) / 2, (e[r] + e[r + 1]) / 2),
                labels[r][c],
                font=font(px),
                fill=(255, 255, 255),
                stroke_width=max(2, px // 8),
                stroke_fill=(0, 0, 0),
                anchor="mm",
            )
    return np.asarray(canvas)


def class_chips(img: np.ndarray, class_map: np.ndarray, palette: np.ndarray) -> np.ndarray:
    """An opaque chip in the centre of each cell in its class's colour, with the class number
    (1-based) written on it: readable where a tint vanishes (H&E pink, colour-blind eyes)."""
    _check_image(img)
    cls = np.asarray(class_map, dtype=int)
    g = cls.shape[0]
    size = img.shape[0]
    e = cell_edges(size, g)
    canvas = Image.fromarray(img)
    draw = ImageDraw.Draw(canvas)
    side = max(10, int(0.42 * size / g))
    px = max(9, int(side * 0.62))
    for r in range(g):
        for c in range(g):
            cy, cx = (e[r] + e[r + 1]) // 2, (e[c] + e[c + 1]) // 2
            fill = tuple(int(v) for v in palette[cls[r, c]])
            box = (cx - side // 2, cy - side // 2, cx + side // 2, cy + side // 2)
            draw.rectangle(
                box, fill=fill, outline=(0, 0, 0) if text_colour(fill) == (255, 255, 255) else (255, 255, 255), width=2
            )
            draw.text((cx, cy), str(cls[r, c] + 1), font=font(px), fill=text_colour(fill), anchor="mm")
    return np.asarray(canvas)


def data_uri(img: np.ndarray, quality: int = JPEG_QUALITY) -> str:
    """``data:image/jpeg;base64,…`` of an RGB array: the picture travels inside the page, so no
    rendered file is written on the server. JPEG at high quality with full-resolution colour
    (4:4:4): ~2 ms for a map where PNG takes ~30 ms, and the edges stay sharp."""
    params = [cv2.IMWRITE_JPEG_QUALITY, quality, cv2.IMWRITE_JPEG_SAMPLING_FACTOR, cv2.IMWRITE_JPEG_SAMPLING_FACTOR_444]
    ok, buf = cv2.imencode(".jpg", np.ascontiguousarray(img[..., ::-1]), params)
    if not ok:
        raise ValueError("could not encode the picture")
    return "data:image/jpeg;base64," + base64.b64encode(buf.tobytes()).decode("ascii")


# --------------------------------------------------------------------------- overlays


def entropy_overlay(
    image: np.ndarray, entropy: np.ndarray, keep: np.ndarray, vmax: float, size: int = DISPLAY_SIZE
) -> np.ndarray:
    """Per-patch entropy over the view: colour = H on ``[0, vmax]``, dropped patches greyed and
    hatched, grid lines on every cell."""
    g = entropy.shape[0]
    out = paint_cells(upscale(image, size), value_colors(entropy, ENTROPY_CMAP, 0.0, vmax))
    out = hatch_cells(out, ~np.asarray(keep, dtype=bool))
    return draw_grid(out, g)


def gain_overlay(
    image: np.ndarray, gain: np.ndarray, cells: Sequence[tuple[int, int]], limit: float, size: int = DISPLAY_SIZE
) -> np.ndarray:
    """Entropy gain ΔH over the view on the scale ``[-limit, limit]`` (0 in the middle), the
    listed cells outlined."""
    g = gain.shape[0]
    out = paint_cells(upscale(image, size), value_colors(gain, GAIN_CMAP, -limit, limit))
    out = draw_grid(out, g)
    return outline_cells(out, cells, g)


def class_overlay(
    image: np.ndarray, class_map: np.ndarray, palette: np.ndarray, size: int = DISPLAY_SIZE
) -> np.ndarray:
    """Each cell tinted with the colour of its predicted class (``class_map``: (g, g) indices),
    with an opaque numbered chip of that colour in its centre."""
    g = class_map.shape[0]
    out = paint_cells(upscale(image, size), palette[np.asarray(class_map, dtype=int)])
    return class_chips(draw_grid(out, g), class_map, palette)


def gain_limit(gain: np.ndarray) -> float:
    """Symmetric range of the ΔH colour scale: the largest |ΔH| (at least 0.05 nats)."""
    return max(float(np.max(np.abs(gain))), 0.05)
