"""The demo's figures as HTML: a picture (``app.render``) with its title, the rule it shows,
a colour bar or legend, and alt text that says what it shows *for this image*.

Each figure is a small ``Figure`` (``base``): ``key()`` and ``html()``, pure functions of a
``Prediction`` (and, for the thumbnail, the upload); the page re-draws a figure only when its
key changes (``app.presenting``). ``maps``: the pictures; ``scales``: the per-scale chart. Text
lives in HTML, not in pixels, so it is crisp, scales with the page (and lecture mode) and is
read by screen readers; numbers are formatted by ``app.decision`` (no "−0.00").
"""

from .base import SCALE_NAMES, Figure, array_key, colour_bar, figure
from .maps import (
    ClassMap,
    EntropyMap,
    GainMap,
    Thumbnail,
    candidates,
    classes_html,
    classes_key,
    entropy_ceiling,
    entropy_html,
    entropy_key,
    even_split_text,
    gain_html,
    gain_key,
    patch_classes,
    slide_html,
    thumbnail_html,
    thumbnail_key,
)
from .scales import SERIES, ScalesChart, scale_rows, scales_html, scales_key

__all__ = [
    "SCALE_NAMES",
    "SERIES",
    "ClassMap",
    "EntropyMap",
    "Figure",
    "GainMap",
    "ScalesChart",
    "Thumbnail",
    "array_key",
    "candidates",
    "classes_html",
    "classes_key",
    "colour_bar",
    "entropy_ceiling",
    "entropy_html",
    "entropy_key",
    "even_split_text",
    "figure",
    "gain_html",
    "gain_key",
    "patch_classes",
    "scale_rows",
    "scales_html",
    "scales_key",
    "slide_html",
    "thumbnail_html",
    "thumbnail_key",
]
