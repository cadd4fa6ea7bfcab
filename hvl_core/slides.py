"""Whole-slide images — pyramidal TIFF, SVS, NDPI through tiffslide, DICOM WSI through wsidicom:
a thumbnail, and one tile at about 0.5 µm/px — the scale of the NCT-CRC-HE training tiles (224 px = 112 µm) — centred where
asked, or on the tissue-richest spot of the thumbnail. Only the chunks a region covers are
decoded; level 0 is never read whole.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from PIL import Image

from .raster import MAX_PIXELS, ImageError, LoadedImage

#: µm per pixel of the tiles the model is given (NCT-CRC-HE: 0.5 µm/px)
TARGET_MPP = 0.5
#: tile side in pixels at TARGET_MPP (NCT-CRC-HE tiles are 224 × 224)
TILE_SIDE = 224
#: longest side of the thumbnail the app shows and the tissue picker looks at
THUMB_SIDE = 1024
#: a thumbnail pixel counts as tissue when its saturation (0–255) is above Otsu's threshold and this
MIN_TISSUE_SATURATION = 20
#: below this tissue fraction the picker says it found none and takes the slide's centre
MIN_TISSUE_FRACTION = 0.05


@dataclass
class SlideInfo:
    """What the app needs to show a slide and let a click pick another tile."""

    size: tuple[int, int]  # level-0 width, height
    mpp: float | None  # level-0 µm per pixel, None when the slide does not record it
    thumbnail: Image.Image  # RGB, longest side ≤ THUMB_SIDE
    tile_center: tuple[int, int]  # level-0 (x, y) of the tile's centre
    tile_side: int  # the tile's side in level-0 pixels
    picked: bool  # chosen by the tissue picker (not given)
    tissue: float | None  # tissue fraction of the picked tile's cell on the thumbnail

    def thumbnail_to_level0(self, u: float, v: float) -> tuple[int, int]:
        """A point on the thumbnail (pixels) → level-0 (x, y)."""
        sx, sy = self.size[0] / self.thumbnail.width, self.size[1] / self.thumbnail.height
        return int(u * sx), int(v * sy)


def is_slide(tf) -> bool:
    """A TIFF that is a whole-slide image: SVS / NDPI, a resolution pyramid, or too large to decode whole."""
    if tf.is_svs or tf.is_ndpi:
        return True
    series = tf.series[0]
    if len(series.levels) > 1:
        return True
    page = tf.pages.first
    return page.imagewidth * page.imagelength > MAX_PIXELS and (page.is_tiled or page.rowsperstrip < page.imagelength)


def parse_tile(text: str) -> tuple[int, int]:
    """``"X,Y"`` (level-0 pixels) → (x, y); ``ValueError`` with a sentence otherwise."""
    try:
        x, y = (int(float(p)) for p in str(text).split(","))
    except ValueError:
        raise ValueError(f"a tile is given as X,Y in level-0 pixels (e.g. 12000,8000), not {text!r}") from None
    if x < 0 or y < 0:
        raise ValueError(f"tile coordinates are level-0 pixels, 0 or more; got {x},{y}")
    return x, y


class DicomSlide:
    """A DICOM whole-slide image (wsidicom) behind the few tiffslide calls this module makes:
    level-0 coordinates in, the level's own pixels to wsidicom."""

    def __init__(self, path):
        try:
            from wsidicom import WsiDicom
        except ImportError:
            raise ImageError("DICOM whole-slide images need the wsidicom package: pip install 'hvl[wsi]'") from None
        self.wsi = WsiDicom.open(path)
        self.levels = list(self.wsi.levels)
        self.level_dimensions = [(lv.size.width, lv.size.height) for lv in self.levels]
        self.dimensions = self.level_dimensions[0]
        self.level_count = len(self.levels)
        self.level_downsamples = [self.dimensions[0] / w for w, _ in self.level_dimensions]
        mpp = self.levels[0].mpp  # µm per pixel (wsidicom's SizeMm holds µm/px here)
        self.properties = {"tiffslide.mpp-x": getattr(mpp, "width", None)}

    def get_best_level_for_downsample(self, f: float) -> int:
        return max(i for i, d in enumerate(self.level_downsamples) if d <= f * 1.0001 or i == 0)

    def read_region(self, location, level: int, size):
        ds = self.level_downsamples[level]
        loc = (int(location[0] / ds), int(location[1] / ds))
        return self.wsi.read_region(loc, self.levels[level].level, tuple(size))

    def close(self):
        self.wsi.close()


def open_slide(fp, dicom: bool = False):
    """A ``tiffslide.TiffSlide`` on a path or file object, or a ``DicomSlide`` on a DICOM file's path."""
    if dicom:
        return DicomSlide(fp)
    try:
        import tiffslide
    except ImportError:
        raise ImageError("whole-slide images need the tiffslide package: pip install 'hvl[wsi]'") from None
    return tiffslide.TiffSlide(fp)


def slide_mpp(slide) -> float | None:
    """Level-0 µm per pixel from the slide's own metadata (None when missing or absurd)."""
    for key in ("tiffslide.mpp-x", "tiffslide.mpp-y"):
        v = slide.properties.get(key)
        try:
            v = float(v)
        except (TypeError, ValueError):
            continue
        if math.isfinite(v) and 0.01 <= v <= 100:
            return v
    return None


def _level_array(slide, level: int):
    """The zarr array of one level, with its axes as (y, x, samples)."""
    arr = slide.zarr_group[str(level)]
    if arr.ndim == 3 and arr.shape[0] in (3, 4) and arr.shape[2] not in (3, 4):
        raise ImageError("slides stored with separate colour planes are not supported")
    return arr


def thumbnail(slide, max_side: int = THUMB_SIDE) -> Image.Image:
    """An RGB overview, longest side ≤ ``max_side``: every s-th pixel of the smallest level, read a
    chunk at a time (a strided read never holds the whole level)."""
    level = slide.level_count - 1
    w, h = slide.level_dimensions[level]
    step = max(1, math.ceil(max(w, h) / max_side))
    if isinstance(slide, DicomSlide):
        return _thumbnail_by_strips(slide, level, step)
    a = np.asarray(_level_array(slide, level)[::step, ::step])
    if a.ndim == 2:
        a = np.stack([a] * 3, axis=-1)
    return Image.fromarray(np.ascontiguousarray(a[:, :, :3]).astype(np.uint8), "RGB")


def _thumbnail_by_strips(slide, level: int, step: int, strip_rows: int = 1024) -> Image.Image:
    """The thumbnail from horizontal strips of a level, each box-reduced by ``step`` at once
    (at most ``strip_rows`` rows of the level in memory)."""
    w, h = slide.level_dimensions[level]
    ds = slide.level_downsamples[level]
    tw, th = max(1, w // step), max(1, h // step)
    out = Image.new("RGB", (tw, th), (255, 255, 255))
    rows = max(1, strip_rows // step) * step  # a multiple of step
    for y in range(0, th * step, rows):
        n = min(rows, th * step - y, h - y)
        strip = slide.read_region((0, int(y * ds)), level, (min(tw * step, w), n)).convert("RGB")
        out.paste(strip.reduce(step) if step > 1 else strip, (0, y // step))
    return out


def tissue_mask(thumb: Image.Image) -> np.ndarray:
    """Tissue on a thumbnail: stained pixels are saturated, glass is near white and grey.
    Otsu's threshold on the saturation channel (OpenCV), at least ``MIN_TISSUE_SATURATION``."""
    import cv2

    s = np.asarray(thumb.convert("HSV"))[:, :, 1]
    t, _ = cv2.threshold(s, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    return s > max(t, MIN_TISSUE_SATURATION)


def pick_tissue_tile(info_size: tuple[int, int], thumb: Image.Image, side0: float) -> tuple[tuple[int, int], float]:
    """The centre (level-0 x, y) of the grid cell of side ``side0`` (level-0 px) with the most
    tissue on the thumbnail, and that cell's tissue fraction."""
    mask = tissue_mask(thumb).astype(np.float32)
    W, H = info_size
    scale = thumb.width / W  # thumbnail px per level-0 px
    cell = max(1, int(round(side0 * scale)))
    gh, gw = max(1, mask.shape[0] // cell), max(1, mask.shape[1] // cell)
    cropped = mask[: gh * cell, : gw * cell]
    if cropped.shape[0] < cell or cropped.shape[1] < cell:  # slide smaller than one tile
        frac = np.array([[float(mask.mean())]])
        cell_y, cell_x = mask.shape
    else:
        frac = cropped.reshape(gh, cell, gw, cell).mean(axis=(1, 3))
        cell_y = cell_x = cell
    r, c = np.unravel_index(int(np.argmax(frac)), frac.shape)
    cx, cy = (c + 0.5) * cell_x / scale, (r + 0.5) * cell_y / scale
    return (int(min(cx, W - 1)), int(min(cy, H - 1))), float(frac[r, c])


def read_tile(slide, x: int, y: int, mpp: float = TARGET_MPP, size: int = TILE_SIDE) -> tuple[Image.Image, int]:
    """The ``size``×``size`` RGB tile at ``mpp`` µm/px centred on level-0 (x, y), read from the
    pyramid level just finer than needed (a region of at most about ``size``·(level step) px)
    and resized. Returns (tile, its side in level-0 pixels). A slide without a recorded
    resolution is taken as ``TARGET_MPP`` at level 0."""
    W, H = slide.dimensions
    if not (0 <= x < W and 0 <= y < H):
        raise ImageError(f"the tile centre ({x}, {y}) is outside the {W}×{H} slide")
    factor = mpp / (slide_mpp(slide) or TARGET_MPP)  # level-0 px per output px
    side0 = max(1, int(round(size * factor)))
    level = slide.get_best_level_for_downsample(max(factor, 1.0))
    ds = slide.level_downsamples[level]
    x0 = int(min(max(0, x - side0 // 2), max(0, W - side0)))
    y0 = int(min(max(0, y - side0 // 2), max(0, H - side0)))
    lw, lh = slide.level_dimensions[level]
    rw = max(1, min(math.ceil(side0 / ds), lw - int(x0 / ds)))
    rh = max(1, min(math.ceil(side0 / ds), lh - int(y0 / ds)))
    region = slide.read_region((x0, y0), level, (rw, rh)).convert("RGB")
    out_w, out_h = max(1, round(rw * ds / factor)), max(1, round(rh * ds / factor))
    if (out_w, out_h) != region.size:
        region = region.resize((min(out_w, size), min(out_h, size)), Image.LANCZOS)
    return region, side0


def load_slide(
    fp,
    name: str = "the slide",
    tile: tuple[int, int] | None = None,
    mpp: float = TARGET_MPP,
    size: int = TILE_SIDE,
    dicom: bool = False,
) -> LoadedImage:
    """One tile of a whole-slide image as a ``LoadedImage`` (its ``slide`` field: the thumbnail and
    where the tile is). ``tile``: level-0 (x, y) of the tile's centre; None: the tissue picker's.
    ``dicom``: ``fp`` is the path of a DICOM WSI file (one level, or all of a slide's in a folder)."""
    try:
        slide = open_slide(fp, dicom)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001 — tiffslide/tifffile raise many kinds for broken files
        raise ImageError(
            f"{name} looks like a whole-slide image but could not be opened ({type(e).__name__})"
        ) from None
    try:
        W, H = slide.dimensions
        slide_res = slide_mpp(slide)
        thumb = thumbnail(slide)
        factor = mpp / (slide_res or TARGET_MPP)
        picked, tissue = tile is None, None
        if tile is None:
            tile, tissue = pick_tissue_tile((W, H), thumb, size * factor)
            if tissue < MIN_TISSUE_FRACTION:
                tile = (W // 2, H // 2)
        image, side0 = read_tile(slide, int(tile[0]), int(tile[1]), mpp, size)
    except ImageError:
        raise
    except Exception as e:  # noqa: BLE001
        raise ImageError(f"{name}: the slide could not be read ({type(e).__name__}: {e})") from None
    finally:
        slide.close()
    res = f"{slide_res:g} µm/px" if slide_res else "no recorded resolution (taken as 0.5 µm/px)"
    how = (
        "given"
        if not picked
        else f"picked automatically: the most tissue ({tissue:.0%})"
        if tissue >= MIN_TISSUE_FRACTION
        else "no tissue found, so the slide's centre"
    )
    notes = [
        f"whole-slide image {W}×{H} px at {res}: tile of {image.width}×{image.height} px at {mpp:g} µm/px "
        f"centred on ({tile[0]}, {tile[1]}), {how}"
    ]
    info = SlideInfo(
        size=(W, H),
        mpp=slide_res,
        thumbnail=thumb,
        tile_center=(int(tile[0]), int(tile[1])),
        tile_side=side0,
        picked=picked,
        tissue=tissue,
    )
    if min(image.size) < 16:
        raise ImageError(f"{name}: the tile at ({tile[0]}, {tile[1]}) is only {image.width}×{image.height} px")
    return LoadedImage(image=image, original_size=(W, H), notes=notes, slide=info)
