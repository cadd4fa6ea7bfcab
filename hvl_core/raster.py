"""Pixels as this project takes them: the size limits checked before anything is decoded, the
``ImageError`` every refusal raises, ``LoadedImage``, and the conversions of any numeric array or
PIL mode to 8-bit RGB (a chunk of rows at a time, so a 16-bit or float image needs no full-size
float copy). Shared by ``images`` (the front door), ``dicom`` and ``slides``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
from PIL import Image

#: uploads with more pixels than this are refused before decoding (decompression bombs)
MAX_PIXELS = 100_000_000
#: the decoded raster (width × height × channels × bytes per sample) may not exceed this
MAX_RASTER_BYTES = 512 * 2**20
#: larger images are downscaled to this longest side after decoding
MAX_SIDE = 4096
#: smaller images carry too little to analyse
MIN_SIDE = 16
#: rows converted at a time from 16-bit / float to 8-bit, so the conversion needs no full-size copy
_CHUNK_ROWS = 256


class ImageError(ValueError):
    """An upload that cannot be used as an image; the message says why."""


@dataclass
class LoadedImage:
    image: Image.Image  # RGB, 8 bit
    original_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)  # what was done to it (downscaled, alpha dropped, ...)
    slide: object | None = None  # for a whole-slide image: its ``slides.SlideInfo`` (thumbnail, tile picked)


def check_raster(name: str, w: int, h: int, channels: int = 1, sample_bytes: int = 1) -> None:
    """Refuse an image whose decoded raster would be too large — called with header values only."""
    if w * h > MAX_PIXELS:
        raise ImageError(f"{name} is {w}×{h} pixels, more than the {MAX_PIXELS:,} this app accepts; downscale it first")
    need = w * h * max(channels, 1) * max(sample_bytes, 1)
    if need > MAX_RASTER_BYTES:
        raise ImageError(
            f"{name} is {w}×{h} pixels of {channels}×{8 * sample_bytes}-bit samples: decoded it would "
            f"need {need / 2**20:,.0f} MB, more than the {MAX_RASTER_BYTES / 2**20:,.0f} MB this app "
            "allows per image; downscale it or save it with 8-bit samples"
        )


# --------------------------------------------------------------------------- arrays


def _finite_range(a: np.ndarray) -> tuple[float, float, int]:
    """(min, max) of the finite values and how many are not finite, row chunk by row chunk."""
    lo, hi, bad = np.inf, -np.inf, 0
    for s in range(0, a.shape[0], _CHUNK_ROWS):
        c = a[s : s + _CHUNK_ROWS]
        ok = np.isfinite(c)
        if not ok.all():
            bad += int(ok.size - ok.sum())
            c = c[ok]
        if c.size:
            lo, hi = min(lo, float(c.min())), max(hi, float(c.max()))
    return lo, hi, bad


def _scale_to_uint8(a: np.ndarray, lo: float, hi: float) -> np.ndarray:
    """Map [lo, hi] linearly to [0, 255] (non-finite values → 0), a chunk of rows at a time."""
    out = np.empty(a.shape, np.uint8)
    gain = 255.0 / (hi - lo) if hi > lo else 0.0
    for s in range(0, a.shape[0], _CHUNK_ROWS):
        c = a[s : s + _CHUNK_ROWS].astype(np.float32)
        c -= lo
        c *= gain
        np.nan_to_num(c, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(c, 0, 255, out=c)
        out[s : s + _CHUNK_ROWS] = np.rint(c)
    return out


def array_to_uint8(a: np.ndarray, notes: list[str], white: float | None = None) -> np.ndarray:
    """Any numeric pixel array → uint8, same shape.

    bool: True is white. uint8: as is. Unsigned integers: ``[0, white]`` → ``[0, 255]`` (``white``
    defaults to the dtype's maximum, e.g. 65535). Floats all in [0, 1]: × 255; other floats and
    signed integers: their finite range. ``white`` given: ``[0, white]`` → ``[0, 255]`` for any dtype. NaN / ±inf pixels become black, with a note.
    """
    if a.dtype == np.uint8:
        return a
    if a.dtype == np.bool_:
        return a.astype(np.uint8) * 255
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ImageError(f"pixel values of type {a.dtype} are not an image's")
    lo, hi, bad = _finite_range(a)
    if bad == a.size:
        raise ImageError("every pixel is NaN or infinite: there is no image to analyse")
    if bad:
        notes.append(f"{bad:,} NaN/infinite pixel value(s) shown as black")
    if white is not None or np.issubdtype(a.dtype, np.unsignedinteger):
        notes.append(f"{8 * a.dtype.itemsize}-bit image converted to 8-bit")
        return _scale_to_uint8(a, 0.0, float(white or np.iinfo(a.dtype).max))
    if np.issubdtype(a.dtype, np.floating) and lo >= 0.0 and hi <= 1.0:
        notes.append("floating-point image in [0, 1] converted to 8-bit")
        return _scale_to_uint8(a, 0.0, 1.0)
    notes.append(f"{a.dtype} image converted to 8-bit (its range {lo:g}…{hi:g} stretched to 0…255)")
    return _scale_to_uint8(a, lo, hi)


def array_to_image(a, notes: list[str], white: float | None = None) -> Image.Image:
    """A numpy array (H×W, H×W×1, H×W×3 or H×W×4; any numeric dtype) → RGB PIL image."""
    a = np.asarray(a)
    if a.ndim == 3 and a.shape[2] == 1:
        a = a[:, :, 0]
    if not (a.ndim == 2 or (a.ndim == 3 and a.shape[2] in (3, 4))):
        raise ImageError(
            f"an array of shape {tuple(a.shape)} is not an image: expected height × width "
            "(grey), height × width × 3 (RGB) or height × width × 4 (RGBA)"
        )
    h, w = a.shape[:2]
    check_raster("the array", w, h)
    img = Image.fromarray(np.ascontiguousarray(array_to_uint8(a, notes, white)))
    f = max(w, h) // MAX_SIDE
    if f >= 2:  # box-reduce while still one 8-bit channel per sample: the RGB copy is then small
        img = img.reduce(f)
        notes.append(f"reduced {f}× from {w}×{h}")
    return to_rgb(img, notes)


# --------------------------------------------------------------------------- PIL images

_SAMPLE_BYTES = {"I;16": 2, "I;16B": 2, "I;16L": 2, "I;16N": 2, "I": 4, "F": 4}


def to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Any PIL mode → RGB: alpha is composited on white, 16-bit / float rescaled, CMYK converted."""
    if img.mode in _SAMPLE_BYTES:
        a = np.asarray(img)
        if img.mode.startswith("I;16"):
            a = a.astype(np.uint16, copy=False)
        elif img.mode == "I" and a.size and a.min() >= 0 and a.max() <= 65535:
            a = a.astype(np.uint16)  # 16-bit data PIL widened to 32 bits
        return array_to_image(a, notes)
    if img.mode == "P" and "transparency" in img.info:
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La"):
        notes.append("transparency composited on white")
        rgba = img.convert("RGBA")
        bg = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(bg, rgba)
    if img.mode != "RGB":
        if img.mode not in ("L", "1", "P"):
            notes.append(f"{img.mode} converted to RGB")
        img = img.convert("RGB")
    return img
