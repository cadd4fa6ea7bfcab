"""Whole-slide images: pyramidal TIFFs made here with tifffile (resolution tags, tiles, SubIFD levels)."""

import numpy as np
import pytest

from hvl_core import slides
from hvl_core.images import ImageError, load_image
from tests.wsi_files import write_pyramid


@pytest.fixture(scope="module")
def slide_path(tmp_path_factory):
    p = tmp_path_factory.mktemp("wsi") / "slide.tiff"
    write_pyramid(p, 4096, 3072, mpp=0.25)  # tissue: rows 384..1536, columns 2048..3584
    return p


def test_pyramid_is_read_as_a_slide_with_a_tissue_tile(slide_path):
    li = load_image(slide_path)
    info = li.slide
    assert li.image.size == (slides.TILE_SIDE, slides.TILE_SIDE) and li.original_size == (4096, 3072)
    assert info.mpp == pytest.approx(0.25) and info.picked
    x, y = info.tile_center
    assert 2048 <= x < 3584 and 384 <= y < 1536 and info.tissue > 0.9
    assert "picked automatically" in li.notes[0] and f"({x}, {y})" in li.notes[0]
    # purple tissue, not glass
    r, g, b = np.asarray(li.image).reshape(-1, 3).mean(axis=0)
    assert g < 100 and r > 140


def test_thumbnail_is_small_and_maps_back_to_level0(slide_path):
    info = load_image(slide_path).slide
    assert max(info.thumbnail.size) <= slides.THUMB_SIDE and info.thumbnail.size == (1024, 768)
    assert info.thumbnail_to_level0(512, 384) == (2048, 1536)


def test_tile_scale_follows_the_slide_resolution(slide_path):
    """At 0.25 µm/px a 0.5 µm/px tile of 224 px covers 448 level-0 px: the border between glass
    and tissue at x = 2048 lands in the tile's middle when the tile is centred on it."""
    li = load_image(slide_path, tile=(2048, 900))
    assert li.slide.tile_side == 448 and not li.slide.picked and "given" in li.notes[0]
    row = np.asarray(li.image)[112, :, 1].astype(int)
    assert row[:100].mean() > 230 and row[124:].mean() < 100


def test_level_is_chosen_and_level0_never_read_whole(slide_path, monkeypatch):
    import tiffslide

    reads = []
    orig = tiffslide.TiffSlide.read_region

    def spy(self, location, level, size, *a, **k):
        reads.append((level, size))
        return orig(self, location, level, size, *a, **k)

    monkeypatch.setattr(tiffslide.TiffSlide, "read_region", spy)
    load_image(slide_path, tile=(1000, 1000))
    assert reads == [(1, (224, 224))]  # 0.5 µm/px = level 1 of a 0.25 µm/px slide, one tile


def test_tile_outside_the_slide(slide_path):
    with pytest.raises(ImageError, match=r"outside the 4096×3072 slide"):
        load_image(slide_path, tile=(5000, 10))


def test_slide_without_resolution_says_so(tmp_path):
    p = tmp_path / "nores.tiff"
    write_pyramid(p, 1024, 1024, mpp=None, levels=2)
    li = load_image(p)
    assert "no recorded resolution" in li.notes[0] and li.slide.mpp is None


def test_blank_slide_takes_the_centre(tmp_path):
    p = tmp_path / "blank.tiff"
    write_pyramid(p, 1024, 1024, levels=2, pixels=np.full((1024, 1024, 3), 245, np.uint8))
    li = load_image(p)
    assert li.slide.tile_center == (512, 512) and "no tissue found" in li.notes[0]


def test_truncated_slide(slide_path, tmp_path):
    data = slide_path.read_bytes()
    p = tmp_path / "cut.tiff"
    p.write_bytes(data[: len(data) // 3])
    with pytest.raises(ImageError):
        load_image(p)


@pytest.mark.parametrize("text,expected", [("12000,8000", (12000, 8000)), (" 5 , 6 ", (5, 6))])
def test_parse_tile(text, expected):
    assert slides.parse_tile(text) == expected


@pytest.mark.parametrize("text", ["12000", "a,b", "-1,5", "1,2,3"])
def test_parse_tile_refuses(text):
    with pytest.raises(ValueError, match="X,Y|0 or more"):
        slides.parse_tile(text)


def test_plain_tiff_is_not_a_slide(tmp_path):
    import tifffile

    p = tmp_path / "plain.tiff"
    tifffile.imwrite(p, np.zeros((64, 80, 3), np.uint8), photometric="rgb")
    li = load_image(p)
    assert li.slide is None and li.image.size == (80, 64)


def test_slide_tile_predicts(slide_path, tiny_model):
    pred = tiny_model.predict(load_image(slide_path))
    assert 0.0 <= pred.msp <= 1.0


# --------------------------------------------------------------------------- DICOM whole-slide images


@pytest.fixture(scope="module")
def dicom_slide(tmp_path_factory):
    from tests.wsi_files import slide_pixels, write_dicom_wsi

    folder = tmp_path_factory.mktemp("dwsi")
    return write_dicom_wsi(folder, slide_pixels(3072, 2048), mpp=0.25)


def test_dicom_wsi_level_file_gives_a_tissue_tile(dicom_slide):
    li = load_image(dicom_slide[0])
    info = li.slide
    assert li.original_size == (3072, 2048) and info.mpp == pytest.approx(0.25) and info.picked
    x, y = info.tile_center
    assert 1536 <= x < 2688 and 256 <= y < 1024 and info.tile_side == 448
    r, g, b = np.asarray(li.image).reshape(-1, 3).mean(axis=0)
    assert g < 100 and r > 140
    assert "Doe" not in " ".join(li.notes)


def test_dicom_wsi_tile_matches_the_tiff_of_the_same_pixels(dicom_slide, tmp_path):
    """Same slide as uncompressed DICOM WSI and as a pyramidal TIFF: the given tile is the same
    place (the glass/tissue border at level-0 x = 1536 in the tile's middle)."""
    li = load_image(dicom_slide[0], tile=(1536, 600))
    row = np.asarray(li.image)[112, :, 1].astype(int)
    assert row[:100].mean() > 230 and row[124:].mean() < 100


def test_dicom_wsi_thumbnail_is_read_in_strips(dicom_slide):
    from hvl_core.slides import DicomSlide, thumbnail

    s = DicomSlide(dicom_slide[0])  # one level only: the thumbnail comes from level 0, strip by strip
    try:
        t = thumbnail(s, max_side=512)
    finally:
        s.close()
    assert t.size == (512, 341)
    a = np.asarray(t)
    assert a[100, 400, 1] < 100 and a[300, 100, 1] > 230  # tissue upper right, glass lower left


def test_dicom_wsi_as_bytes_is_refused_clearly(dicom_slide):
    with pytest.raises(ImageError, match="read from its file"):
        load_image(dicom_slide[0].read_bytes())
