"""Reading untrusted images: every failure is an ``ImageError`` with a sentence a person can act on.

Memory is bounded before anything is decoded, in pixels: the header's width, height, channels
and sample size are checked against ``MAX_PIXELS`` and ``MAX_RASTER_BYTES`` first, and an image
decoded at full size (every format but JPEG, which decodes downscaled: ``Image.draft``) against
``MAX_DECODE_PIXELS``; a caller may pass a smaller budget (``max_pixels``: what is left of a
batch's). The decoded raster is then converted to RGB and resampled a band of rows at a time,
so no full-size copy is made beside it (a 50-megapixel RGBA PNG peaks near its own 200 MB plus
the 4096² RGB result). DICOM files go through ``hvl_core.dicom``; whole-slide images (pyramidal or very
large TIFFs, SVS, NDPI) through ``hvl_core.slides``, which reads one tile and never the whole slide.
"""

from __future__ import annotations

import io
import math
import os
import warnings

import numpy as np
from PIL import Image, UnidentifiedImageError

from .raster import (  # noqa: F401  (ImageError, LoadedImage and the limits are also this module's public names)
    _SAMPLE_BYTES,
    MAX_PIXELS,
    MAX_RASTER_BYTES,
    MAX_SIDE,
    MIN_SIDE,
    ImageError,
    LoadedImage,
    array_to_image,
    array_to_uint8,
    check_raster,
    to_rgb,
)

READABLE = "PNG, JPEG, TIFF, BMP, WebP, DICOM or a whole-slide image"
#: file name endings of what ``load_image`` reads (a folder scan takes these)
FILE_SUFFIXES = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".svs", ".ndpi")
#: pixels an image may have when it is decoded at full size (no format-level downscaling)
MAX_DECODE_PIXELS = 50_000_000
#: TIFF page headers read at most: a file's pages are counted (and a pyramid looked for) only up to
#: this, as walking every header of a 20,000-page file ties up the CPU for a minute
MAX_TIFF_PAGES = 256
#: rows of the result made at a time from a band of the decoded raster
_STRIP_ROWS = 256
#: EXIF orientation → the transpose that undoes it (as ``ImageOps.exif_transpose``)
_ORIENT = {
    2: Image.Transpose.FLIP_LEFT_RIGHT,
    3: Image.Transpose.ROTATE_180,
    4: Image.Transpose.FLIP_TOP_BOTTOM,
    5: Image.Transpose.TRANSPOSE,
    6: Image.Transpose.ROTATE_270,
    7: Image.Transpose.TRANSVERSE,
    8: Image.Transpose.ROTATE_90,
}


def check_budget(name: str, w: int, h: int, whole: bool, max_pixels: int | None = None, kind: str = "") -> None:
    """Refuse, from header values, an image that would take more pixels than allowed: more than
    ``MAX_DECODE_PIXELS`` when it must be decoded at full size (``whole``), or more than the
    caller's ``max_pixels`` (what is left of a batch's budget)."""
    if whole and w * h > MAX_DECODE_PIXELS:
        raise ImageError(
            f"{name} is {w}×{h} pixels; {kind or 'an image of this format'} is decoded at full size, and at most "
            f"{MAX_DECODE_PIXELS:,} pixels are decoded that way here; downscale it first (or save it as JPEG)"
        )
    if max_pixels is not None and w * h > max_pixels:
        raise ImageError(
            f"{name} is {w}×{h} pixels, more than the {max(max_pixels, 0):,} left in this batch's pixel budget; "
            "analyse it alone or in a smaller batch"
        )


def _thumbnail_size(w: int, h: int, side: int) -> tuple[int, int]:
    """The size ``Image.thumbnail((side, side))`` gives a ``w``×``h`` image (its rounding)."""
    if max(w, h) <= side:
        return w, h
    aspect = w / h

    def rounded(number, key):
        return max(min(math.floor(number), math.ceil(number), key=key), 1)

    if aspect <= 1:
        return rounded(side * aspect, key=lambda n: abs(aspect - n / side)), side
    return side, rounded(side / aspect, key=lambda n: 0 if n == 0 else abs(aspect - side / n))


def _bounded_rgb(img: Image.Image, max_side: int, notes: list[str], original: tuple[int, int]) -> Image.Image:
    """A decoded image → RGB at most ``max_side`` long, a band of rows at a time: each band is
    converted (alpha on white, palette, CMYK ...) with a margin of rows and resampled (Lanczos)
    into its rows of the result, so the result is the whole-image one and no full-size copy is
    made beside the decoded raster. 16-bit and float modes take ``to_rgb``'s chunked array path.
    ``original``: the size in the file's header (a JPEG may have been decoded smaller)."""
    w, h = img.size
    orientation = img.getexif().get(0x0112)
    if img.mode in _SAMPLE_BYTES or max(w, h) <= max_side:
        out = to_rgb(img, notes)
    else:
        tw, th = _thumbnail_size(w, h, max_side)
        sy = h / th
        margin = math.ceil(3 * sy) + 2  # the Lanczos window, in source rows
        out = Image.new("RGB", (tw, th))
        for oy0 in range(0, th, _STRIP_ROWS):
            oy1 = min(th, oy0 + _STRIP_ROWS)
            y0, y1 = oy0 * sy, oy1 * sy
            top, bottom = max(0, math.floor(y0) - margin), min(h, math.ceil(y1) + margin)
            band = to_rgb(img.crop((0, top, w, bottom)), notes if oy0 == 0 else [])
            out.paste(band.resize((tw, oy1 - oy0), Image.LANCZOS, box=(0, y0 - top, w, y1 - top)), (0, oy0))
    w, h = original
    if orientation in _ORIENT:
        out = out.transpose(_ORIENT[orientation])
        w, h = (h, w) if orientation >= 5 else (w, h)
    out.info["original_size"] = (w, h)  # the size before any reduction, for the notes
    return out


def _open_pil(
    fp, name: str, max_side: int, notes: list[str], max_pixels: int | None, frames_noted: bool = False
) -> Image.Image:
    """Any format PIL reads, the first frame; ``frames_noted``: the caller already said how many."""
    with warnings.catch_warnings():
        # this module's limits decide, from the header, below (PIL warns from 89 M pixels, under
        # MAX_PIXELS, and raises past twice that)
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        img = Image.open(fp)
    w, h = img.size
    check_raster(name, w, h, len(img.getbands()), _SAMPLE_BYTES.get(img.mode, 1))
    check_budget(name, w, h, False, max_pixels)
    if getattr(img, "is_animated", False):  # looks one frame ahead; n_frames would walk them all
        if not frames_noted:
            notes.append("animated image: the first frame used")
        img.seek(0)
    scale = _draft_scale(w, h, max_side) if img.format == "JPEG" else 1
    if scale > 1:
        img.draft("RGB", (w // scale, h // scale))  # decode JPEGs at reduced size directly
    dw, dh = img.size  # what will be decoded
    check_budget(name, dw, dh, True, kind=f"a {img.format or 'raster'} image")
    img.load()
    return _bounded_rgb(img, max_side, notes, (w, h))


def _draft_scale(w: int, h: int, max_side: int) -> int:
    """The reduction (1, 2, 4 or 8) a JPEG is decoded at: the largest that keeps its longest side
    at least ``max_side`` (it is downscaled to that anyway), then as much more as brings it under
    ``MAX_DECODE_PIXELS`` (a 10000×8000 JPEG decodes at 5000×4000)."""
    scale = 1
    while scale < 8 and max(w, h) / (2 * scale) >= max_side:
        scale *= 2
    while scale < 8 and math.ceil(w / scale) * math.ceil(h / scale) > MAX_DECODE_PIXELS:
        scale *= 2
    return scale


def _open_tiff(fp, name: str, max_side: int, notes: list[str], tile, max_pixels) -> LoadedImage | Image.Image:
    """TIFF: a whole-slide image → one tile (``slides``); 16-bit / float → tifffile; else PIL."""
    import tifffile

    from . import slides

    pages, noted = None, False
    try:
        with tifffile.TiffFile(fp) as tf:
            pages = _page_count(tf)
            if pages is not None and slides.is_slide(tf):  # a slide's levels are a few pages
                fp.seek(0)
                return slides.load_slide(fp, name, tile=tile)
            page = tf.pages.first
            shape, dtype = page.shape, page.dtype
            h, w = (shape[0], shape[1]) if page.planarconfig != 2 or len(shape) < 3 else (shape[1], shape[2])
            channels = page.samplesperpixel
            check_raster(name, w, h, channels, dtype.itemsize if dtype is not None else 1)
            check_budget(name, w, h, True, max_pixels, kind="a TIFF image")
            if pages != 1:
                notes.append(f"multi-page TIFF: first of {pages or f'more than {MAX_TIFF_PAGES}'} pages used")
                noted = True
            if dtype is not None and dtype != np.uint8 and page.planarconfig != 2:
                return array_to_image(page.asarray(), notes)
    except ImageError:
        raise
    except Exception:  # noqa: BLE001 — tifffile could not parse it: PIL gets its chance and says why
        pass
    fp.seek(0)
    return _open_pil(fp, name, max_side, notes, max_pixels, frames_noted=noted)


def _page_count(tf, limit: int = MAX_TIFF_PAGES) -> int | None:
    """How many pages a TIFF has, reading at most ``limit`` + 1 page headers; None: more."""
    try:
        tf.pages[limit]  # walks the chain of page offsets up to ``limit`` only
    except IndexError:
        return len(tf.pages)  # the chain ended sooner: its length is known
    return None


def _sniff(head: bytes) -> str:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return "other"


# --------------------------------------------------------------------------- the front door


def load_image(
    source, max_side: int = MAX_SIDE, tile: tuple[int, int] | None = None, max_pixels: int | None = None
) -> LoadedImage:
    """Open a path, bytes, file object, numpy array or PIL image as an 8-bit RGB image.

    Refuses (``ImageError``): nothing given, non-images, corrupt or truncated files, images whose
    header promises more than ``MAX_PIXELS`` / ``MAX_RASTER_BYTES`` (``MAX_DECODE_PIXELS`` when
    decoded at full size; ``max_pixels`` when given, e.g. a batch's budget left), images smaller than
    ``MIN_SIDE`` px. Downscales images longer than ``max_side``; takes the first frame of
    animations; applies the EXIF orientation. DICOM: ``dicom.read_dicom``. Whole-slide images: the
    tile centred on level-0 pixel ``tile`` = (x, y) at about 0.5 µm/px, or a tissue tile picked
    automatically (``slides.load_slide``; the notes say which).
    """
    if isinstance(source, LoadedImage):
        return source
    if source is None:
        raise ImageError(f"no image was given: pass a file path, bytes, a PIL image or a numpy array ({READABLE})")
    notes: list[str] = []
    name = "the image"
    try:
        if isinstance(source, Image.Image):
            img = to_rgb(source, notes)
        elif isinstance(source, np.ndarray):
            img = array_to_image(source, notes)
        elif isinstance(source, (bytes, bytearray, memoryview, str, os.PathLike)) or hasattr(source, "read"):
            if isinstance(source, (str, os.PathLike)):
                name = os.path.basename(os.fspath(source)) or "the image"
                if not os.path.isfile(source):
                    raise ImageError(
                        f"{name} is a folder, not an image" if os.path.isdir(source) else f"{name}: no such file"
                    )
                with open(source, "rb") as f:
                    return _load_file(f, name, max_side, tile, notes, max_pixels)
            fp = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
            return _load_file(fp, name, max_side, tile, notes, max_pixels)
        else:
            raise ImageError(
                f"a {type(source).__name__} is not an image: pass a file path, bytes, a PIL image or a numpy array"
            )
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as e:
        raise ImageError(f"{name} could not be decoded: it is corrupt or truncated ({e})") from None
    return _finish(img, name, max_side, notes, copy=True)


def _load_file(fp, name: str, max_side: int, tile, notes: list[str], max_pixels: int | None = None) -> LoadedImage:
    try:
        head = fp.read(132)
        fp.seek(0)
        kind = _sniff(head)
        if kind == "dicom":
            from .dicom import is_wsi, read_dicom, read_header

            ds = read_header(fp, name)  # once: deflated files are refused before any inflating
            path = getattr(fp, "name", None)
            if isinstance(path, str) and os.path.isfile(path) and is_wsi(ds):
                from .slides import load_slide

                return load_slide(path, name, tile=tile, dicom=True)
            img = array_to_image(read_dicom(fp, name, notes, ds), notes)
            check_budget(name, *img.size, False, max_pixels)
        elif kind == "tiff":
            img = _open_tiff(fp, name, max_side, notes, tile, max_pixels)
            if isinstance(img, LoadedImage):
                return img
        else:
            img = _open_pil(fp, name, max_side, notes, max_pixels)
    except ImageError:
        raise
    except UnidentifiedImageError:
        raise ImageError(f"{name} is not an image this app can read ({READABLE})") from None
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (possible decompression bomb)") from None
    except MemoryError:
        raise ImageError(f"{name} is too large to decode here") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError, KeyError, IndexError) as e:
        raise ImageError(f"{name} could not be decoded: it is corrupt or truncated ({e})") from None
    return _finish(img, name, max_side, notes)


def _finish(img: Image.Image, name: str, max_side: int, notes: list[str], copy: bool = False) -> LoadedImage:
    """The size checks and the final downscale; ``copy``: ``img`` may be the caller's own."""
    w, h = img.info.pop("original_size", None) or img.size
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name} is {w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed")
    if max(w, h) > max_side:
        notes.append(f"downscaled from {w}×{h}")
    if max(img.size) > max_side:
        img = img.copy() if copy else img
        img.thumbnail((max_side, max_side), Image.LANCZOS)
    return LoadedImage(image=img, original_size=(w, h), notes=notes)
