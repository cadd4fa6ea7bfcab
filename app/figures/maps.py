"""The picture figures: the analysed square (thumbnail, or a slide with its tile), the per-patch
entropy maps, the entropy-gain map with the pseudo-OOD cells, and the per-patch class map."""

from __future__ import annotations

import html
import threading
from collections import OrderedDict
from dataclasses import dataclass

import numpy as np

from hvl_core.model import OTHER_LABEL

from .. import render, thumbnails
from ..decision import fmt_num, fmt_signed
from .base import SCALE_NAMES, CellUnits, Figure, array_key, cell_name, colour_bar, figure, grid_labels

# --------------------------------------------------------------------------- thumbnail


def thumbnail_key(loaded, name: str) -> str:
    slide = getattr(loaded, "slide", None)
    return array_key(id(loaded), loaded.original_size, name, slide.tile_center if slide else None)


def thumbnail_html(loaded, name: str, view_size: int) -> str:
    """The whole upload with the central square the model analysed marked; for a whole-slide
    image, its thumbnail with the analysed tile marked (a click there picks another tile)."""
    if getattr(loaded, "slide", None) is not None:
        return slide_html(loaded.slide, name, view_size)
    w, h = loaded.image.size
    x0, y0, x1, y1 = thumbnails.center_square_box(w, h)
    s = x1 - x0
    ow, oh = loaded.original_size
    whole = "the whole image is analysed" if w == h else f"the dimmed {'sides' if w > h else 'top and bottom'} are not"
    alt = f"Your image {name}, {ow}×{oh} px, with the central {s}×{s} px square the model analysed outlined" + (
        "." if w == h else "; the parts outside it are dimmed."
    )
    notes = [
        f"{html.escape(name)} — {ow}×{oh} px. The model sees the outlined central square, resized to "
        f"{view_size}×{view_size} px; {whole}."
    ]
    return figure(
        "thumbnail",
        "Your image and the analysed square",
        [(render.data_uri(thumbnails.thumbnail(loaded.image)), alt)],
        notes,
    )


def slide_html(slide, name: str, view_size: int) -> str:
    """A whole-slide image: its thumbnail with the tile the model analysed ringed. Only the
    slide's size and resolution are written (no other metadata of the file)."""
    thumb = slide.thumbnail
    box = thumbnails.tile_box(slide.size, thumb.size, slide.tile_center, slide.tile_side)
    W, H = slide.size
    x, y = slide.tile_center
    mpp = f"{slide.mpp:.3g} µm/px at full resolution" if slide.mpp else "resolution not recorded (taken as 0.5 µm/px)"
    how = "picked automatically: the most tissue on the thumbnail" if slide.picked else "where you clicked"
    alt = (
        f"Thumbnail of the whole-slide image {name}, {W}×{H} px at full resolution, with the analysed tile "
        f"ringed at ({x}, {y}); click the thumbnail to analyse the tile under the pointer."
    )
    notes = [
        f"{html.escape(name)} — whole-slide image, {W}×{H} px, {mpp}. The model sees the ringed tile "
        f"({slide.tile_side}×{slide.tile_side} px at full resolution, about 0.5 µm/px, resized to "
        f"{view_size}×{view_size}) centred at ({x}, {y}), {how}.",
        "<b>Click the thumbnail</b> to analyse the tile under the pointer.",
    ]
    return figure(
        "thumbnail",
        "Your slide and the analysed tile",
        [(render.data_uri(thumbnails.slide_thumbnail(thumb, box)), alt)],
        notes,
        img_class="hvl-slide",
    )


# --------------------------------------------------------------------------- entropy maps


def entropy_ceiling(pred) -> float:
    """The largest entropy a patch can have: ln of the classes its softmax runs over (the known
    ones and the negatives), an even split; 1 for a single class, to keep a colour scale."""
    return float(pred.entropy_max) if pred.entropy_classes > 1 else 1.0


def even_split_text(pred) -> str:
    """What the top of the entropy scale means, over the classes the softmax really has."""
    C, R = len(pred.classes), pred.entropy_classes
    if R > C:
        return f"{fmt_num(entropy_ceiling(pred))} = ln {R}: evenly split over all {R} classes ({C} known + {R - C} negative)"
    return f"{fmt_num(entropy_ceiling(pred))} = ln {R}: evenly split over the {R} classes"


def entropy_key(pred, scale: int, entropy_filter: bool) -> str:
    h, keep = (pred.entropy1, pred.keep1) if scale == 1 else (pred.entropy2, pred.keep2)
    return array_key(scale, h, keep, bool(entropy_filter), entropy_ceiling(pred), id(pred.image))


def entropy_html(pred, scale: int, entropy_filter: bool = True) -> str:
    """Per-patch entropy at the mid (``scale=1``, n×n) or high (``scale=2``, 2n×2n) scale, the
    patches the entropy filter drops hatched."""
    if scale not in (1, 2):
        raise ValueError("scale must be 1 (mid) or 2 (high)")
    h, keep = (pred.entropy1, pred.keep1) if scale == 1 else (pred.entropy2, pred.keep2)
    g = h.shape[0]
    vmax = entropy_ceiling(pred)
    mean = float(h.mean())
    u = CellUnits.for_values(h, mean)  # tiny entropies: a per-map unit, so labels fit their cells
    img = render.entropy_overlay(pred.image, h, keep, vmax)
    labels = u.labels(h)
    if labels:
        img = render.label_cells(img, labels)
    dropped = int((~keep).sum())
    r, c = np.unravel_index(int(np.argmin(h)), h.shape)
    sym = "¹" if scale == 1 else "²"
    name = SCALE_NAMES[scale]
    if not entropy_filter:
        rule = "Entropy filter off: every patch counts."
        alt_rule = "the entropy filter is off, so no patch is dropped"
    elif dropped:
        rule = (
            f"<b>Hatched</b> = dropped by the entropy filter: H above this scale's mean "
            f"H̄ = {u.text(mean)} ({dropped} of {g * g}); they do not count towards p{sym}."
        )
        alt_rule = f"{dropped} hatched patches have entropy above the mean {u.text(mean)} and were dropped"
    else:
        rule = f"No patch is above the mean H̄ = {u.text(mean)}, so none is dropped."
        alt_rule = "no patch was dropped"
    alt = (
        f"{name}-scale entropy map: the analysed square cut into {g}×{g} patches, each coloured by its entropy "
        f"from 0 (certain, dark purple) to {fmt_num(vmax)} (no idea, yellow); {alt_rule}; the most certain "
        f"patch is {cell_name((r, c))} (H = {u.text(h[r, c])})."
    )
    # the ends stay short (they share one line); what the top means is written under the bar
    bar = colour_bar(
        render.ENTROPY_CMAP, "0 certain", f"{fmt_num(vmax)} no idea", label=f"entropy H (nats); {even_split_text(pred)}"
    )
    return figure(
        f"entropy-{name.lower()}",
        f"{name} scale ({g}×{g} patches): how unsure each patch is",
        [(render.data_uri(img), alt)],
        [rule] + ([u.note("H", "nats")] if u.power else []),
        extra=bar,
    )


# --------------------------------------------------------------------------- entropy gain


def candidates(pred) -> list[tuple[int, int]]:
    """The pseudo-OOD cells worth outlining: the top-K by the selection rule *and* ΔH > 0 (zooming
    in made the model less sure); a top-K cell with ΔH ≤ 0 is no boundary candidate."""
    return [tuple(rc) for rc in pred.pseudo_ood if pred.entropy_gain[rc[0], rc[1]] > 0]


def gain_key(pred) -> str:
    return array_key(pred.entropy_gain, np.asarray(pred.pseudo_ood), id(pred.image))


#: the painted, labelled ΔH layer of the last few images: a K change only moves the outlines
_GAIN_LAYERS: OrderedDict[str, np.ndarray] = OrderedDict()
_GAIN_LOCK = threading.Lock()  # the API and the browser groups can render at the same time
MAX_CACHED_LAYERS = 8


def _gain_layer(pred, lim: float, digits: int) -> np.ndarray:
    key = array_key(pred.entropy_gain, pred.image)
    with _GAIN_LOCK:
        if key in _GAIN_LAYERS:
            _GAIN_LAYERS.move_to_end(key)
            return _GAIN_LAYERS[key]
    img = render.gain_overlay(pred.image, pred.entropy_gain, [], lim)
    labels = grid_labels(pred.entropy_gain, digits, signed=True)
    layer = render.label_cells(img, labels) if labels else img
    with _GAIN_LOCK:
        _GAIN_LAYERS[key] = layer
        while len(_GAIN_LAYERS) > MAX_CACHED_LAYERS:
            _GAIN_LAYERS.popitem(last=False)
    return layer


def gain_html(pred) -> str:
    """Entropy gain ΔH over the high-scale grid, the pseudo-OOD candidates (top-K, ΔH > 0) outlined."""
    gain = pred.entropy_gain
    g = gain.shape[0]
    lim = render.gain_limit(gain)
    cells = candidates(pred)
    d = 2 if np.all((np.abs(gain) >= 0.005) | (gain == 0)) else 3
    # outlines sit on the cell borders, the labels in the centres: drawn on the cached layer
    img = render.outline_cells(_gain_layer(pred, lim, d), cells, g)
    k = len(pred.pseudo_ood)
    left_out = k - len(cells)
    rule = (
        f"<b>Outlined</b> (vermillion): pseudo-OOD candidates — the top-K = {k} cells by ΔH that also have "
        f"ΔH &gt; 0, i.e. zooming in made the model less sure (often a lesion's boundary): {len(cells)} here."
    )
    if left_out:
        rule += f" {left_out} of the top {k} have ΔH ≤ 0 and are not outlined."
    listed = "; ".join(f"{cell_name(rc)} (ΔH {fmt_signed(gain[rc[0], rc[1]], d)})" for rc in cells) or "none"
    alt = (
        f"Entropy gain map over {g}×{g} high-scale patches, from blue (the patch is surer than its mid-scale "
        f"parent) through grey (no change) to yellow (less sure); outlined pseudo-OOD candidates: {listed}."
    )
    bar = colour_bar(
        render.GAIN_CMAP,
        f"−{fmt_num(lim)} surer",
        f"+{fmt_num(lim)} less sure",
        mid="0",
        label="ΔH (nats) = H(high patch) − H(its mid parent)",
    )
    return figure(
        "entropy-gain", "Entropy gain ΔH: where zooming in adds doubt", [(render.data_uri(img), alt)], [rule], extra=bar
    )


# --------------------------------------------------------------------------- per-patch classes

#: the chip colour of "other (not a known class)" on the class map: a neutral grey
OTHER_COLOUR = (153, 153, 153)


def patch_classes(pred, patches: np.ndarray) -> np.ndarray:
    """Each patch's most likely class: an index into the known classes, or ``len(classes)`` =
    "other (not a known class)" where the negative classes together outweigh every known one."""
    if not pred.negatives:
        return np.argmax(patches, axis=-1)
    other = np.clip(1.0 - patches.sum(-1, keepdims=True), 0.0, 1.0)
    return np.argmax(np.concatenate([patches, other], -1), axis=-1)


def classes_key(pred) -> str:
    return array_key(
        patch_classes(pred, pred.p1_patches),
        patch_classes(pred, pred.p2_patches),
        tuple(pred.classes),
        bool(pred.negatives),
        id(pred.image),
    )


def _class_counts(cls: np.ndarray, names: list[str]) -> str:
    ids, counts = np.unique(cls, return_counts=True)
    order = np.argsort(-counts, kind="stable")
    return ", ".join(f"{names[ids[i]]} {counts[i]}" for i in order)


def classes_html(pred) -> str:
    """The predicted class of each patch at the mid and high scales, numbered chips in Okabe–Ito
    colours; with negative classes, a grey chip where "other (not a known class)" wins."""
    names = list(pred.classes) + ([OTHER_LABEL] if pred.negatives else [])
    palette = render.class_palette(len(pred.classes))
    if pred.negatives:
        palette = np.vstack([palette, np.array(OTHER_COLOUR, np.uint8)])
    pics, caps = [], []
    for scale, patches in ((1, pred.p1_patches), (2, pred.p2_patches)):
        cls = patch_classes(pred, patches)
        g = cls.shape[0]
        img = render.class_overlay(pred.image, cls, palette, size=render.DISPLAY_SIZE * 3 // 4)
        alt = (
            f"Predicted class of each of the {g}×{g} {SCALE_NAMES[scale].lower()}-scale patches, as numbered "
            f"chips: {_class_counts(cls, names)}."
        )
        pics.append((render.data_uri(img), alt))
        caps.append(f"{SCALE_NAMES[scale]} scale ({g}×{g})")
    legend = "".join(
        f"<li><span class='hvl-swatch' style='background:rgb{tuple(int(v) for v in palette[i])};"
        f"color:rgb{render.text_colour(palette[i])}'>{i + 1}</span>{html.escape(name)}</li>"
        for i, name in enumerate(names)
    )
    return figure(
        "patch-classes",
        "Predicted class of each patch (before the entropy filter)",
        pics,
        [],
        extra=f"<ul class='hvl-legend'>{legend}</ul>",
        captions=caps,
    )


# --------------------------------------------------------------------------- as figures


@dataclass(frozen=True)
class Thumbnail(Figure):
    """The analysed square on the upload (or the slide, its tile ringed)."""

    loaded: object
    name: str
    view_size: int

    def key(self) -> str:
        return thumbnail_key(self.loaded, self.name)

    def html(self) -> str:
        return thumbnail_html(self.loaded, self.name, self.view_size)


@dataclass(frozen=True)
class EntropyMap(Figure):
    """The per-patch entropy of scale 1 (mid) or 2 (high), the filter's dropped cells hatched."""

    pred: object
    scale: int
    entropy_filter: bool = True

    def key(self) -> str:
        return entropy_key(self.pred, self.scale, self.entropy_filter)

    def html(self) -> str:
        return entropy_html(self.pred, self.scale, self.entropy_filter)


@dataclass(frozen=True)
class GainMap(Figure):
    """The entropy gain ΔH with the K pseudo-OOD cells outlined."""

    pred: object

    def key(self) -> str:
        return gain_key(self.pred)

    def html(self) -> str:
        return gain_html(self.pred)


@dataclass(frozen=True)
class ClassMap(Figure):
    """Each high-scale patch's likeliest class."""

    pred: object

    def key(self) -> str:
        return classes_key(self.pred)

    def html(self) -> str:
        return classes_html(self.pred)
