"""Reading untrusted images: every failure is an ``ImageError`` with a sentence a person can act on.

Memory is bounded before anything is decoded: the header's width, height, channels and sample
size are checked against ``MAX_PIXELS`` and ``MAX_RASTER_BYTES`` first. DICOM files go through
``hvl_core.dicom``; whole-slide images (pyramidal or very large TIFFs, SVS, NDPI) through
``hvl_core.slides``, which reads one tile and never the whole slide.
"""
from __future__ import annotations

import io
import os
import warnings
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

#: uploads with more pixels than this are refused before decoding (decompression bombs)
MAX_PIXELS = 100_000_000
#: the decoded raster (width × height × channels × bytes per sample) may not exceed this
MAX_RASTER_BYTES = 512 * 2 ** 20
#: larger images are downscaled to this longest side after decoding
MAX_SIDE = 4096
#: smaller images carry too little to analyse
MIN_SIDE = 16
#: rows converted at a time from 16-bit / float to 8-bit, so the conversion needs no full-size copy
_CHUNK_ROWS = 256
READABLE = "PNG, JPEG, TIFF, BMP, WebP, DICOM or a whole-slide image"


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
        raise ImageError(f"{name} is {w}×{h} pixels of {channels}×{8 * sample_bytes}-bit samples: decoded it would "
                         f"need {need / 2 ** 20:,.0f} MB, more than the {MAX_RASTER_BYTES / 2 ** 20:,.0f} MB this app "
                         "allows per image; downscale it or save it with 8-bit samples")


# --------------------------------------------------------------------------- arrays

def _finite_range(a: np.ndarray) -> tuple[float, float, int]:
    """(min, max) of the finite values and how many are not finite, row chunk by row chunk."""
    lo, hi, bad = np.inf, -np.inf, 0
    for s in range(0, a.shape[0], _CHUNK_ROWS):
        c = a[s:s + _CHUNK_ROWS]
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
        c = a[s:s + _CHUNK_ROWS].astype(np.float32)
        c -= lo
        c *= gain
        np.nan_to_num(c, copy=False, nan=0.0, posinf=0.0, neginf=0.0)
        np.clip(c, 0, 255, out=c)
        out[s:s + _CHUNK_ROWS] = np.rint(c)
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
        raise ImageError(f"an array of shape {tuple(a.shape)} is not an image: expected height × width "
                         "(grey), height × width × 3 (RGB) or height × width × 4 (RGBA)")
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


def _open_pil(fp, name: str, max_side: int, notes: list[str]) -> Image.Image:
    with warnings.catch_warnings():
        warnings.simplefilter("error", Image.DecompressionBombWarning)
        img = Image.open(fp)
    w, h = img.size
    check_raster(name, w, h, len(img.getbands()), _SAMPLE_BYTES.get(img.mode, 1))
    if getattr(img, "n_frames", 1) > 1:
        notes.append(f"animated image: first of {img.n_frames} frames used")
        img.seek(0)
    if max(w, h) > max_side and img.format == "JPEG":
        img.draft("RGB", (max_side, max_side))  # decode JPEGs at reduced size directly
    img.load()
    img = ImageOps.exif_transpose(img)
    return to_rgb(img, notes)


def _open_tiff(fp, name: str, max_side: int, notes: list[str], tile) -> LoadedImage | Image.Image:
    """TIFF: a whole-slide image → one tile (``slides``); 16-bit / float → tifffile; else PIL."""
    import tifffile

    from . import slides

    try:
        with tifffile.TiffFile(fp) as tf:
            if slides.is_slide(tf):
                fp.seek(0)
                return slides.load_slide(fp, name, tile=tile)
            page = tf.pages.first
            shape, dtype = page.shape, page.dtype
            h, w = (shape[0], shape[1]) if page.planarconfig != 2 or len(shape) < 3 else (shape[1], shape[2])
            channels = page.samplesperpixel
            check_raster(name, w, h, channels, dtype.itemsize if dtype is not None else 1)
            if dtype is not None and dtype != np.uint8 and page.planarconfig != 2:
                notes_before = len(notes)
                img = array_to_image(page.asarray(), notes)
                if len(tf.pages) > 1:
                    notes.insert(notes_before, f"multi-page TIFF: first of {len(tf.pages)} pages used")
                return img
    except ImageError:
        raise
    except Exception:  # noqa: BLE001 — tifffile could not parse it: PIL gets its chance and says why
        pass
    fp.seek(0)
    return _open_pil(fp, name, max_side, notes)


def _sniff(head: bytes) -> str:
    if len(head) >= 132 and head[128:132] == b"DICM":
        return "dicom"
    if head[:4] in (b"II*\x00", b"MM\x00*", b"II+\x00", b"MM\x00+"):
        return "tiff"
    return "other"


# --------------------------------------------------------------------------- the front door

def load_image(source, max_side: int = MAX_SIDE, tile: tuple[int, int] | None = None) -> LoadedImage:
    """Open a path, bytes, file object, numpy array or PIL image as an 8-bit RGB image.

    Refuses (``ImageError``): nothing given, non-images, corrupt or truncated files, images whose
    header promises more than ``MAX_PIXELS`` / ``MAX_RASTER_BYTES``, images smaller than
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
                    raise ImageError(f"{name}: no such file")
                with open(source, "rb") as f:
                    return _load_file(f, name, max_side, tile, notes)
            fp = io.BytesIO(bytes(source)) if isinstance(source, (bytes, bytearray, memoryview)) else source
            return _load_file(fp, name, max_side, tile, notes)
        else:
            raise ImageError(f"a {type(source).__name__} is not an image: pass a file path, bytes, a PIL image "
                             "or a numpy array")
    except ImageError:
        raise
    except (Image.DecompressionBombError, Image.DecompressionBombWarning):
        raise ImageError(f"{name} is too large to decode safely (possible decompression bomb)") from None
    except (OSError, SyntaxError, ValueError, TypeError, EOFError) as e:
        raise ImageError(f"{name} could not be decoded: it is corrupt or truncated ({e})") from None
    return _finish(img, name, max_side, notes)


def _load_file(fp, name: str, max_side: int, tile, notes: list[str]) -> LoadedImage:
    try:
        head = fp.read(132)
        fp.seek(0)
        kind = _sniff(head)
        if kind == "dicom":
            from .dicom import is_dicom_wsi, read_dicom

            path = getattr(fp, "name", None)
            if isinstance(path, str) and os.path.isfile(path) and is_dicom_wsi(fp):
                from .slides import load_slide

                return load_slide(path, name, tile=tile, dicom=True)
            img = array_to_image(read_dicom(fp, name, notes), notes)
        elif kind == "tiff":
            img = _open_tiff(fp, name, max_side, notes, tile)
            if isinstance(img, LoadedImage):
                return img
        else:
            img = _open_pil(fp, name, max_side, notes)
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


def _finish(img: Image.Image, name: str, max_side: int, notes: list[str]) -> LoadedImage:
    w, h = img.size
    if min(w, h) < MIN_SIDE:
        raise ImageError(f"{name} is {w}×{h} pixels; at least {MIN_SIDE}×{MIN_SIDE} is needed")
    if max(w, h) > max_side:
        notes.append(f"downscaled from {w}×{h}")
        img = img.copy()
        img.thumbnail((max_side, max_side), Image.LANCZOS)
    return LoadedImage(image=img, original_size=(w, h), notes=notes)
