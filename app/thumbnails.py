"""The thumbnails: the whole upload with the central square the backbone sees marked, and a
whole-slide image's thumbnail with the analysed tile ringed."""

from __future__ import annotations

import numpy as np
from PIL import Image

#: the analysed square on the thumbnail: a dark ring with a white one inside, visible on any image
SQUARE_COLORS = ((0, 0, 0), (255, 255, 255))


def center_square_box(width: int, height: int) -> tuple[int, int, int, int]:
    """``(x0, y0, x1, y1)`` of the central square the backbone's view covers (torchvision's
    ``center_crop`` rounding)."""
    s = min(width, height)
    x0, y0 = int(round((width - s) / 2.0)), int(round((height - s) / 2.0))
    return x0, y0, x0 + s, y0 + s


def ring_box(out: np.ndarray, box: tuple[int, int, int, int], min_side: int = 0) -> np.ndarray:
    """Draw (in place) a dark ring with a light one inside around ``box`` = (x0, y0, x1, y1),
    visible on any image; a box smaller than ``min_side`` is grown about its centre to it."""
    th, tw = out.shape[:2]
    x0, y0, x1, y1 = box
    if min_side and min(x1 - x0, y1 - y0) < min_side:
        cx, cy = (x0 + x1) // 2, (y0 + y1) // 2
        x0, x1 = max(0, cx - min_side // 2), min(tw, cx + min_side - min_side // 2)
        y0, y1 = max(0, cy - min_side // 2), min(th, cy + min_side - min_side // 2)
    t = max(2, round(min(tw, th) / 120))
    for i, colour in enumerate(SQUARE_COLORS):
        a = i * t
        ya, yb, xa, xb = y0 + a, max(y0 + a + 1, y1 - a), x0 + a, max(x0 + a + 1, x1 - a)
        out[ya : ya + t, xa:xb] = colour
        out[yb - t : yb, xa:xb] = colour
        out[ya:yb, xa : xa + t] = colour
        out[ya:yb, xb - t : xb] = colour
    return out


def thumbnail(image: Image.Image, max_side: int = 360, dim: float = 0.55) -> np.ndarray:
    """The whole upload, at most ``max_side`` px, with the analysed central square marked: the
    parts the model never sees dimmed, the square ringed dark and light."""
    w, h = image.size
    scale = min(1.0, max_side / max(w, h))
    tw, th = max(1, round(w * scale)), max(1, round(h * scale))
    out = np.asarray(image.convert("RGB").resize((tw, th), Image.BILINEAR)).copy()
    x0, y0, x1, y1 = (round(v * scale) for v in center_square_box(w, h))
    outside = np.ones((th, tw), bool)
    outside[y0:y1, x0:x1] = False
    out[outside] = np.round(out[outside] * (1 - dim)).astype(np.uint8)
    return ring_box(out, (x0, y0, x1, y1))


def tile_box(
    size: tuple[int, int], thumb_size: tuple[int, int], center: tuple[int, int], side: int
) -> tuple[int, int, int, int]:
    """(x0, y0, x1, y1) on a slide's thumbnail (``thumb_size`` = (w, h)) of the tile of ``side``
    level-0 pixels centred on level-0 ``center``, the slide being ``size`` = (W, H) at level 0."""
    sx, sy = thumb_size[0] / size[0], thumb_size[1] / size[1]
    cx, cy = center
    return (
        round((cx - side / 2) * sx),
        round((cy - side / 2) * sy),
        round((cx + side / 2) * sx),
        round((cy + side / 2) * sy),
    )


#: the tile ring on a slide's thumbnail is never smaller than this (a 0.5 µm/px tile of a large
#: slide can be a few thumbnail pixels)
MIN_TILE_RING = 14


def slide_thumbnail(thumb: Image.Image, box: tuple[int, int, int, int]) -> np.ndarray:
    """A whole-slide image's thumbnail with the analysed tile (``box``, thumbnail pixels) ringed."""
    out = np.asarray(thumb.convert("RGB")).copy()
    th, tw = out.shape[:2]
    x0, y0, x1, y1 = box
    box = (min(max(x0, 0), tw - 1), min(max(y0, 0), th - 1), min(max(x1, 1), tw), min(max(y1, 1), th))
    return ring_box(out, box, MIN_TILE_RING)
