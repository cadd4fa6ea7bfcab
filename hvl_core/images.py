"""Reading untrusted images: every failure is an ``ImageError`` with a sentence a person can act on."""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: uploads with more pixels than this are refused before decoding (decompression bombs)
MAX_PIXELS = 100_000_000
#: larger images are downscaled to this longest side after decoding
MAX_SIDE = 4096
#: smaller images carry too little to analyse
MIN_SIDE = 16


class ImageError(ValueError):
    """An upload that cannot be used as an image; the message says why."""


@dataclass
class LoadedImage:
    image: Image.Image  # RGB, 8 bit
    original_size: tuple[int, int]
    notes: list[str] = field(default_factory=list)  # what was done to it (downscaled, alpha dropped, ...)


def _to_8bit(img: Image.Image) -> Image.Image:
    """16-bit / 32-bit integer or float grayscale → 8-bit, scaled by the value range."""
    a = np.asarray(img).astype(np.float64)
    if img.mode.startswith("I;16") or (img.mode == "I" and a.max(initial=0) <= 65535 and a.min(initial=0) >= 0):
        a = a / 257.0 if a.max(initial=0) > 255 else a
    else:
        lo, hi = float(np.nanmin(a)), float(np.nanmax(a))
        a = (a - lo) / (hi - lo) * 255 if hi > lo else np.zeros_like(a)
    return Image.fromarray(np.clip(np.nan_to_num(a), 0, 255).astype(np.uint8), "L")


def to_rgb(img: Image.Image, notes: list[str]) -> Image.Image:
    """Any PIL mode → RGB: alpha is composited on white, 16-bit is rescaled, CMYK converted."""
    if img.mode in ("I", "I;16", "I;16B", "I;16L", "I;16N", "F"):
        notes.append(f"{img.mode} image converted to 8-bit")
        img = _to_8bit(img)
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


def load_image(source, max_side: int = MAX_SIDE) -> LoadedImage:
    """Open a path, bytes, file object, numpy array or PIL image as an 8-bit RGB image.

    Refuses (``ImageError``): non-images, corrupt or truncated files, decompression bombs,
    images smaller than ``MIN_SIDE`` px. Downscales images longer than ``max_side``; takes the
    first frame of animations; applies the EXIF orientation.
    """
    notes: list[str] = []
    name = "the image"
    try:
        if isinstance(source, Image.Image):
            img = source
        elif isinstance(source, np.ndarray):
            img = Image.fromarray(source)
        else:
            if isinstance(source, (bytes, bytearray)):
                source = io.BytesIO(source)
            elif isinstance(source, (str, os.PathLike)):
                name = os.path.basename(os.fspath(source))
                if not os.path.isfile(source):
                    raise ImageError(f"{name}: no such file")
            with warnings.catch_warnings():
                warnings.simplefilter("error", Image.DecompressionBombWarning)
                img = Image.open(source)
        w, h = img.size
        if w * h > MAX_PIXELS:
            raise ImageError(f"{name} is {w}×{h} pixels, more than the {MAX_PIXELS:,} this app accepts; "
                             "downscale it first")
        if getattr(img, "n_frames", 1) > 1:
            notes.append(f"animated image: first of {img.n_frames} frames used")
            img.seek(0)
        if max(w, h) > max_side and hasattr(img, "draft") and img.format == "JPEG":
            img.draft("RGB", (max_side, max_side))  # decode JPEGs at reduced size directly
        img.load()
        img = ImageOps.exif_transpose(img)
        img = to_rgb(img, notes)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this app can read (PNG, JPEG, TIFF, BMP, WebP)") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as e:
        raise ImageError(f"{name} could not be decoded: it is corrupt or truncated ({e})") from None
    if min(img.size) < MIN_SIDE:
        raise ImageError(f"{name} is {img.size[0]}×{img.size[1]} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed")
    if max(img.size) > max_side:
        notes.append(f"downscaled from {img.size[0]}×{img.size[1]}")
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.LANCZOS)
    return LoadedImage(image=img, original_size=(w, h), notes=notes)
