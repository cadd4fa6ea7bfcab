"""What every figure of the page shares: the ``Figure`` base (``key()`` says what a figure shows,
``html()`` draws it), the digest its keys are made of, the ``<figure>`` frame with its title, rule
and alt text, and the colour bar."""

from __future__ import annotations

import hashlib
import html
import math
from dataclasses import dataclass

import numpy as np
from matplotlib import colormaps

from .. import render
from ..decision import fmt_num, fmt_signed, separating_digits


class Figure:
    """One figure of the page. ``key()``: a digest of what it shows (the same key, the same
    picture, so the page skips redrawing it); ``html()``: the figure itself. Subclasses hold
    just what their figure is drawn from."""

    def key(self) -> str:
        raise NotImplementedError

    def html(self) -> str:
        raise NotImplementedError


SCALE_NAMES = {1: "Mid", 2: "High"}


def array_key(*parts) -> str:
    """A short digest of arrays and values: equal keys ⇒ the same figure."""
    h = hashlib.blake2b(digest_size=12)
    for p in parts:
        if isinstance(p, np.ndarray):
            h.update(str(p.shape).encode() + p.dtype.str.encode())
            h.update(np.ascontiguousarray(p).tobytes())
        else:
            h.update(repr(p).encode())
        h.update(b"|")
    return h.hexdigest()


def colour_bar(cmap: str, lo: str, hi: str, mid: str = "", label: str = "") -> str:
    """A CSS gradient of ``cmap`` with its end labels (and a middle one)."""
    stops = colormaps[cmap](np.linspace(0, 1, 11))
    grad = ", ".join(
        f"rgb({int(r * 255)},{int(g * 255)},{int(b * 255)}) {i * 10}%" for i, (r, g, b, _) in enumerate(stops)
    )
    middle = f"<span>{html.escape(mid)}</span>" if mid else ""
    return (
        f"<div class='hvl-cbar' aria-hidden='true'><div class='hvl-cbar-grad' style='background:linear-gradient(to right, {grad})'>"
        f"</div><div class='hvl-cbar-ticks'><span>{html.escape(lo)}</span>{middle}<span>{html.escape(hi)}</span></div>"
        f"<div class='hvl-cbar-label'>{html.escape(label)}</div></div>"
    )


def figure(
    fig_id: str,
    title: str,
    images: list[tuple[str, str]],
    notes: list[str],
    extra: str = "",
    captions: list[str] | None = None,
    img_class: str = "",
) -> str:
    """``<figure>``: a title, pictures (``(data URI, alt text)``, each with an optional caption),
    the rule it shows as text, and extras (colour bar, legend)."""
    captions = captions or [""] * len(images)
    cls = f" class='{img_class}'" if img_class else ""
    pics = []
    for (uri, alt), cap in zip(images, captions):
        head = f"<div class='hvl-pic-title'>{html.escape(cap)}</div>" if cap else ""
        pics.append(f"<div class='hvl-pic'>{head}<img{cls} src='{uri}' alt='{html.escape(alt, quote=True)}'></div>")
    rules = "".join(f"<p>{n}</p>" for n in notes)
    return (
        f"<figure class='hvl-fig' id='{fig_id}-fig'><figcaption class='hvl-fig-title'>{html.escape(title)}</figcaption>"
        f"<div class='hvl-pics'>{''.join(pics)}</div>{extra}<div class='hvl-fig-notes'>{rules}</div></figure>"
    )


def cell_name(rc) -> str:
    return f"row {rc[0]}, column {rc[1]}"


def grid_labels(values: np.ndarray, digits: int, signed: bool = False) -> list[list[str]] | None:
    g = values.shape[0]
    if g > render.MAX_LABELLED_GRID:
        return None
    f = fmt_signed if signed else fmt_num
    return [[f(values[r, c], digits) for c in range(g)] for r in range(g)]


SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


@dataclass(frozen=True)
class CellUnits:
    """How a map writes its cell values: ``digits`` decimals of the value × 10^``power``. Values
    that need four or more decimals to tell them from the reference (tiny entropies: "0.00003")
    get a per-map unit instead ("0.3" in units of 10⁻⁴), so each label stays short enough for its
    cell and the figure says the unit."""

    digits: int
    power: int = 0

    @classmethod
    def for_values(cls, values, ref: float) -> CellUnits:
        v = np.asarray(values, dtype=float)
        d = separating_digits(v, ref)
        top = float(np.abs(v).max()) if v.size else 0.0
        if d <= 3 or top == 0:
            return cls(d)
        power = -math.floor(math.log10(top))  # the largest value reads 1 to 9.9
        return cls(separating_digits(v * 10.0**power, ref * 10.0**power, lo=1, hi=3), power)

    def fmt(self, x: float) -> str:
        """The value as a cell label (in the map's unit)."""
        return fmt_num(float(x) * 10.0**self.power, self.digits)

    def unit(self) -> str:
        """The unit after a value written in it (" × 10⁻⁴"); "" when the map has none."""
        return f" × 10{str(-self.power).translate(SUPERSCRIPT)}" if self.power else ""

    def text(self, x: float) -> str:
        """The value in running text: its label and the unit."""
        return self.fmt(x) + self.unit()

    def note(self, quantity: str, unit: str) -> str:
        """The sentence under a map whose cells are written in a per-map unit."""
        power = str(-self.power).translate(SUPERSCRIPT)
        return f"The numbers in the cells are {quantity} in units of 10{power} {unit}: every patch is nearly certain."

    def labels(self, values: np.ndarray) -> list[list[str]] | None:
        g = values.shape[0]
        return None if g > render.MAX_LABELLED_GRID else [[self.fmt(x) for x in row] for row in values]
