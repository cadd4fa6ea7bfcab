"""What every figure of the page shares: the ``Figure`` base (``key()`` says what a figure shows,
``html()`` draws it), the digest its keys are made of, the ``<figure>`` frame with its title, rule
and alt text, and the colour bar."""

from __future__ import annotations

import hashlib
import html

import numpy as np
from matplotlib import colormaps

from .. import render
from ..decision import fmt_num, fmt_signed


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
