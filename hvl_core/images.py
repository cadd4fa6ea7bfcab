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

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

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
            raise ImageError(
                f"a {type(source).__name__} is not an image: pass a file path, bytes, a PIL image or a numpy array"
            )
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
