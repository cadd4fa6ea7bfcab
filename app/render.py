"""Pictures of a ``Prediction``: heatmaps, outlines and charts drawn over the model's view.

Pure rendering: every number comes from ``hvl_core`` (``Prediction`` fields); nothing here
computes a probability, an entropy or a selection. Two layers:

- pixel functions on ``(H, W, 3) uint8`` arrays (``draw_grid``, ``paint_cells``,
  ``hatch_cells``, ``outline_cells``, ...), exact and unit-tested pixel by pixel;
- figure functions (``entropy_figure``, ``gain_figure``, ``scales_figure``,
  ``patch_class_figure``) that put those arrays in a matplotlib figure with a title, a colour
  scale and a legend, and return the figure as an RGB array for ``gr.Image``.

Grid geometry: a ``g×g`` grid on a ``size``-pixel side has cell edges ``round(i·size/g)`` for
``i = 0..g`` (so the last edge is the image border); cell ``(row, col)`` spans
``[edge[row], edge[row+1])`` vertically and ``[edge[col], edge[col+1])`` horizontally.
"""
from __future__ import annotations

import math
import textwrap
from typing import Iterable, Sequence

import matplotlib

matplotlib.use("Agg")  # no display; the OO API below is thread-safe per figure
import numpy as np  # noqa: E402
from matplotlib import colormaps, patheffects  # noqa: E402
from matplotlib.backends.backend_agg import FigureCanvasAgg  # noqa: E402
from matplotlib.cm import ScalarMappable  # noqa: E402
from matplotlib.colors import Normalize  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from matplotlib.patches import Patch  # noqa: E402
from PIL import Image  # noqa: E402

#: side (px) of the square overlays drawn over the model's view
DISPLAY_SIZE = 448
GRID_COLOR = (255, 255, 255)
GRID_THICKNESS = 2
HATCH_COLOR = (255, 255, 255)
HATCH_SPACING = 10
HATCH_WIDTH = 2
#: pseudo-OOD outline: a green that none of the ΔH colours (blue–white–red) contains
OUTLINE_COLOR = (0, 230, 0)
OUTLINE_THICKNESS = 4
HEAT_ALPHA = 0.55
ENTROPY_CMAP = "viridis"
GAIN_CMAP = "RdBu_r"
#: series colours of the per-scale chart: p0, p1, p2, p_ID
SCALE_COLORS = ("#8da0cb", "#fc8d62", "#66c2a5", "#222222")
FIG_DPI = 100
#: write numbers into cells up to this grid size
MAX_LABELLED_GRID = 6


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


def hatch_cells(img: np.ndarray, mask: np.ndarray, color=HATCH_COLOR, spacing: int = HATCH_SPACING,
                width: int = HATCH_WIDTH, grey: float = 0.75) -> np.ndarray:
    """Mark the cells where ``mask`` is True: desaturate them by ``grey`` and draw diagonal
    hatching (pixels with ``(x + y) mod spacing < width``)."""
    _check_image(img)
    mask = np.asarray(mask, dtype=bool)
    g = mask.shape[0]
    out = img.copy()
    size = img.shape[0]
    yy, xx = np.mgrid[0:size, 0:size]
    stripes = ((xx + yy) % spacing) < width
    for r, c in zip(*np.nonzero(mask)):
        y0, y1, x0, x1 = cell_box(int(r), int(c), size, g)
        block = out[y0:y1, x0:x1].astype(np.float32)
        luma = block @ np.array([0.299, 0.587, 0.114], dtype=np.float32)
        block = (1 - grey) * block + grey * luma[..., None]
        block = np.clip(np.round(block), 0, 255).astype(np.uint8)
        block[stripes[y0:y1, x0:x1]] = color
        out[y0:y1, x0:x1] = block
    return out


def outline_cells(img: np.ndarray, cells: Iterable[tuple[int, int]], g: int, color=OUTLINE_COLOR,
                  thickness: int = OUTLINE_THICKNESS) -> np.ndarray:
    """Draw a rectangle of ``thickness`` px just inside the border of each listed cell."""
    _check_image(img)
    out = img.copy()
    size = img.shape[0]
    for r, c in cells:
        if not (0 <= r < g and 0 <= c < g):
            raise ValueError(f"cell {(r, c)} is outside a {g}×{g} grid")
        y0, y1, x0, x1 = cell_box(int(r), int(c), size, g)
        t = min(thickness, (y1 - y0) // 2, (x1 - x0) // 2)
        out[y0:y0 + t, x0:x1] = color
        out[y1 - t:y1, x0:x1] = color
        out[y0:y1, x0:x0 + t] = color
        out[y0:y1, x1 - t:x1] = color
    return out


def class_palette(num_classes: int) -> np.ndarray:
    """Distinct RGB uint8 colours for ``num_classes`` classes (tab10, tab20, then evenly spaced hues)."""
    if num_classes <= 10:
        cols = colormaps["tab10"](np.arange(num_classes))
    elif num_classes <= 20:
        cols = colormaps["tab20"](np.arange(num_classes))
    else:
        cols = colormaps["hsv"](np.linspace(0, 1, num_classes, endpoint=False))
    return np.round(cols[:, :3] * 255).astype(np.uint8)


# --------------------------------------------------------------------------- overlays

def entropy_overlay(image: np.ndarray, entropy: np.ndarray, keep: np.ndarray, vmax: float,
                    size: int = DISPLAY_SIZE) -> np.ndarray:
    """Per-patch entropy over the view: colour = H on ``[0, vmax]``, dropped patches greyed and
    hatched, grid lines on every cell."""
    g = entropy.shape[0]
    out = paint_cells(upscale(image, size), value_colors(entropy, ENTROPY_CMAP, 0.0, vmax))
    out = hatch_cells(out, ~np.asarray(keep, dtype=bool))
    return draw_grid(out, g)


def gain_overlay(image: np.ndarray, gain: np.ndarray, cells: Sequence[tuple[int, int]], limit: float,
                 size: int = DISPLAY_SIZE) -> np.ndarray:
    """Entropy gain ΔH over the view on a diverging scale ``[-limit, limit]``, the pseudo-OOD
    cells outlined."""
    g = gain.shape[0]
    out = paint_cells(upscale(image, size), value_colors(gain, GAIN_CMAP, -limit, limit))
    out = draw_grid(out, g)
    return outline_cells(out, cells, g)


def class_overlay(image: np.ndarray, class_map: np.ndarray, palette: np.ndarray,
                  size: int = DISPLAY_SIZE) -> np.ndarray:
    """Each cell tinted with the colour of its predicted class (``class_map``: (g, g) indices)."""
    g = class_map.shape[0]
    out = paint_cells(upscale(image, size), palette[np.asarray(class_map, dtype=int)])
    return draw_grid(out, g)


def gain_limit(gain: np.ndarray) -> float:
    """Symmetric range of the ΔH colour scale: the largest |ΔH| (at least 0.05 nats)."""
    return max(float(np.max(np.abs(gain))), 0.05)


# --------------------------------------------------------------------------- figures

def figure_to_array(fig: Figure) -> np.ndarray:
    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


def _grid_axes(ax, g: int, size: int) -> None:
    centres = (cell_edges(size, g)[:-1] + cell_edges(size, g)[1:]) / 2
    ax.set_xticks(centres, [str(i) for i in range(g)])
    ax.set_yticks(centres, [str(i) for i in range(g)])
    ax.tick_params(length=0, labelsize=8)
    ax.set_xlabel("column", fontsize=8)
    ax.set_ylabel("row", fontsize=8)
    for s in ax.spines.values():
        s.set_visible(False)


def _cell_labels(ax, values: np.ndarray, size: int, fmt: str) -> None:
    g = values.shape[0]
    if g > MAX_LABELLED_GRID:
        return
    e = cell_edges(size, g)
    for r in range(g):
        for c in range(g):
            ax.text((e[c] + e[c + 1]) / 2, (e[r] + e[r + 1]) / 2, format(float(values[r, c]), fmt),
                    ha="center", va="center", color="white", fontsize=11 if g <= 4 else 8, fontweight="bold",
                    path_effects=[patheffects.withStroke(linewidth=2.5, foreground="black")])


def _finish(fig: Figure) -> np.ndarray:
    arr = figure_to_array(fig)
    fig.clear()
    return arr


def entropy_figure(pred, scale: int) -> np.ndarray:
    """Per-patch entropy at the mid (``scale=1``, n×n) or high (``scale=2``, 2n×2n) scale, dropped
    patches hatched, with an entropy colour bar from 0 (certain) to ln C (uniform)."""
    if scale not in (1, 2):
        raise ValueError("scale must be 1 (mid) or 2 (high)")
    h = pred.entropy1 if scale == 1 else pred.entropy2
    keep = pred.keep1 if scale == 1 else pred.keep2
    g = h.shape[0]
    vmax = math.log(len(pred.classes)) if len(pred.classes) > 1 else 1.0
    img = entropy_overlay(pred.image, h, keep, vmax)
    fig = Figure(figsize=(5.4, 5.6), dpi=FIG_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(img, interpolation="antialiased")
    _grid_axes(ax, g, img.shape[0])
    _cell_labels(ax, h, img.shape[0], ".2f")
    name = "Mid" if scale == 1 else "High"
    dropped = int((~keep).sum())
    ax.set_title(f"{name} scale ({g}×{g} patches): entropy H per patch\n"
                 f"mean H̄ = {float(h.mean()):.3f}; {dropped} of {g * g} dropped (H > H̄)", fontsize=10)
    cb = fig.colorbar(ScalarMappable(Normalize(0.0, vmax), ENTROPY_CMAP), ax=ax, fraction=0.046, pad=0.03)
    cb.set_label(f"entropy H (nats): 0 = certain, ln C = {vmax:.2f} = no idea", fontsize=8)
    cb.ax.tick_params(labelsize=8)
    handles = [Patch(facecolor="#9a9a9a", edgecolor="white", hatch="///",
                     label="dropped by the entropy filter (disease-irrelevant)"),
               Patch(facecolor=colormaps[ENTROPY_CMAP](0.5), alpha=HEAT_ALPHA, edgecolor="#666666",
                     label="kept: counts towards p" + ("¹" if scale == 1 else "²"))]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=8, ncol=1, frameon=False)
    return _finish(fig)


def gain_figure(pred) -> np.ndarray:
    """Entropy gain ΔH over the high scale, the top-K pseudo-OOD cells outlined."""
    gain = pred.entropy_gain
    g = gain.shape[0]
    lim = gain_limit(gain)
    img = gain_overlay(pred.image, gain, pred.pseudo_ood, lim)
    fig = Figure(figsize=(5.4, 5.6), dpi=FIG_DPI, layout="constrained")
    ax = fig.add_subplot()
    ax.imshow(img, interpolation="antialiased")
    _grid_axes(ax, g, img.shape[0])
    _cell_labels(ax, gain, img.shape[0], "+.2f")
    ax.set_title(f"Entropy gain ΔH = H(high patch) − H(its mid parent)\n"
                 f"top-{len(pred.pseudo_ood)} pseudo-OOD cells (lesion-boundary candidates) outlined", fontsize=10)
    cb = fig.colorbar(ScalarMappable(Normalize(-lim, lim), GAIN_CMAP), ax=ax, fraction=0.046, pad=0.03)
    cb.set_label("ΔH (nats): red = less certain than the parent", fontsize=8)
    cb.ax.tick_params(labelsize=8)
    handles = [Patch(facecolor="none", edgecolor=np.array(OUTLINE_COLOR) / 255, linewidth=2.5,
                     label=f"pseudo-OOD: the {len(pred.pseudo_ood)} largest ΔH (K = {pred.k})")]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.09), fontsize=8, frameon=False)
    return _finish(fig)


def _wrap(name: str, width: int = 14) -> str:
    return "\n".join(textwrap.wrap(name, width)) or name


def scales_figure(pred) -> np.ndarray:
    """Grouped bars: p⁰, p¹, p², and the fused p_ID for every known class."""
    C = len(pred.classes)
    series = [("p⁰ whole image", pred.p0), ("p¹ mid scale", pred.p1), ("p² high scale", pred.p2),
              ("p_ID = (p⁰+p¹+p²)/3", pred.p_id)]
    width = 0.8 / len(series)
    x = np.arange(C)
    fig = Figure(figsize=(max(5.4, 1.1 * C + 1.5), 4.2), dpi=FIG_DPI, layout="constrained")
    ax = fig.add_subplot()
    for i, ((label, p), color) in enumerate(zip(series, SCALE_COLORS)):
        total = float(np.sum(p))
        ax.bar(x + (i - (len(series) - 1) / 2) * width, p, width, color=color,
               label=f"{label}  (sum {total:.2f})")
    ax.set_xticks(x, [_wrap(c) for c in pred.classes], fontsize=8)
    top = float(max(np.max(p) for _, p in series))
    ax.set_ylim(0, max(1.0, top * 1.05))
    ax.set_ylabel("probability", fontsize=9)
    ax.tick_params(axis="y", labelsize=8)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    ax.set_title("What each scale says, and the fused prediction\n"
                 "(p¹, p² skip dropped patches, so their sums can be below 1)", fontsize=10)
    ax.legend(fontsize=8, loc="upper right", frameon=False)
    for s in ("top", "right"):
        ax.spines[s].set_visible(False)
    return _finish(fig)


def patch_class_figure(pred) -> np.ndarray:
    """Per-patch predicted class (argmax of each patch's distribution) at the mid and high scales."""
    palette = class_palette(len(pred.classes))
    maps = [(f"Mid scale ({pred.p1_patches.shape[0]}×{pred.p1_patches.shape[0]})", pred.p1_patches),
            (f"High scale ({pred.p2_patches.shape[0]}×{pred.p2_patches.shape[0]})", pred.p2_patches)]
    fig = Figure(figsize=(8.6, 4.9), dpi=FIG_DPI, layout="constrained")
    axes = fig.subplots(1, 2)
    for ax, (title, patches) in zip(axes, maps):
        cls = np.argmax(patches, axis=-1)
        img = class_overlay(pred.image, cls, palette, size=DISPLAY_SIZE // 2 * 2)
        ax.imshow(img, interpolation="antialiased")
        _grid_axes(ax, cls.shape[0], img.shape[0])
        ax.set_title(title, fontsize=10)
    fig.suptitle("Predicted class of each patch (before the entropy filter)", fontsize=11)
    handles = [Patch(facecolor=palette[i] / 255, label=name) for i, name in enumerate(pred.classes)]
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=8, frameon=False)
    return _finish(fig)
