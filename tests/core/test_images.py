"""Untrusted uploads: every bad input gets an ImageError with a readable sentence."""

import io

import numpy as np
import pytest
from PIL import Image

from hvl_core.images import MIN_SIDE, ImageError, load_image


def png_bytes(img, fmt="PNG", **kw):
    buf = io.BytesIO()
    img.save(buf, fmt, **kw)
    return buf.getvalue()


def test_rgb_jpeg_roundtrip():
    img = Image.fromarray(np.full((40, 60, 3), 128, np.uint8))
    li = load_image(png_bytes(img, "JPEG"))
    assert li.image.mode == "RGB" and li.image.size == (60, 40) and li.notes == []


def test_not_an_image(tmp_path):
    p = tmp_path / "notes.txt"
    p.write_text("hello")
    with pytest.raises(ImageError, match="notes.txt is not an image"):
        load_image(p)


def test_truncated_png():
    data = png_bytes(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)))
    with pytest.raises(ImageError, match="corrupt or truncated"):
        load_image(data[: len(data) // 2])


def test_missing_file(tmp_path):
    with pytest.raises(ImageError, match="no such file"):
        load_image(tmp_path / "nope.png")


def test_tiny_image():
    with pytest.raises(ImageError, match=f"at least {MIN_SIDE}"):
        load_image(png_bytes(Image.new("RGB", (1, 1))))


def test_decompression_bomb_is_refused_before_decoding(monkeypatch):
    import hvl_core.raster as im

    monkeypatch.setattr(im, "MAX_PIXELS", 10_000)
    with pytest.raises(ImageError, match="more than the 10,000"):
        load_image(png_bytes(Image.new("RGB", (200, 200))))


def test_pil_decompression_bomb_error_is_translated(monkeypatch):
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(ImageError, match="decompression bomb|more than"):
        load_image(png_bytes(Image.new("RGB", (100, 100))))


def test_rgba_is_composited_on_white():
    a = np.zeros((20, 20, 4), np.uint8)
    a[..., 0] = 255
    a[:, :10, 3] = 255  # left half opaque red, right half fully transparent
    li = load_image(png_bytes(Image.fromarray(a, "RGBA")))
    px = np.asarray(li.image)
    assert px[0, 0].tolist() == [255, 0, 0] and px[0, 15].tolist() == [255, 255, 255]
    assert any("transparency" in n for n in li.notes)


def test_grayscale_becomes_rgb():
    li = load_image(png_bytes(Image.fromarray(np.full((20, 20), 77, np.uint8), "L")))
    assert li.image.mode == "RGB" and np.asarray(li.image)[0, 0].tolist() == [77, 77, 77]


def test_16bit_grayscale_is_rescaled_not_clipped():
    a = np.full((20, 20), 65535 // 2, np.uint16)
    a[0, 0] = 65535
    li = load_image(png_bytes(Image.fromarray(a)))
    px = np.asarray(li.image)
    assert px[0, 0, 0] == 255 and px[5, 5, 0] == 127  # 32767 / 257
    assert any("8-bit" in n for n in li.notes)


def test_cmyk_is_converted():
    li = load_image(png_bytes(Image.new("CMYK", (20, 20), (0, 255, 255, 0)), "JPEG"))
    r, g, b = np.asarray(li.image)[10, 10]
    assert r > 200 and g < 60 and b < 60


def test_animated_gif_uses_the_first_frame():
    frames = [Image.new("RGB", (20, 20), c) for c in ((255, 0, 0), (0, 0, 255))]
    buf = io.BytesIO()
    frames[0].save(buf, "GIF", save_all=True, append_images=frames[1:])
    li = load_image(buf.getvalue())
    assert np.asarray(li.image)[0, 0, 0] > 200
    assert any("animated image: the first frame used" in n for n in li.notes)


def test_huge_image_is_downscaled():
    li = load_image(png_bytes(Image.new("RGB", (300, 100))), max_side=150)
    assert li.image.size == (150, 50) and li.original_size == (300, 100)
    assert any("downscaled" in n for n in li.notes)


@pytest.mark.parametrize("fmt", ["TIFF", "BMP", "WEBP"])
def test_other_formats(fmt):
    li = load_image(png_bytes(Image.new("RGB", (32, 32), (10, 200, 30)), fmt))
    assert li.image.size == (32, 32)


def _png_header(w: int, h: int, colour_type: int = 6) -> bytes:
    """A PNG's signature and header only (no pixel data): what ``Image.open`` reads."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", w, h, 8, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"")) + chunk(b"IEND", b"")


def test_png_decoded_whole_is_refused_past_the_pixel_budget_from_its_header():
    """A 343 KB 9400² RGBA PNG passed (88 M pixels < 100 M) and peaked at +2 GB: a PNG is
    decoded at full size, so its pixels are bounded by MAX_DECODE_PIXELS, from the header."""
    from hvl_core.images import MAX_DECODE_PIXELS

    assert 9400 * 9400 > MAX_DECODE_PIXELS
    with pytest.raises(ImageError, match="9400×9400 pixels; a PNG image is decoded at full size"):
        load_image(_png_header(9400, 9400))


def test_jpeg_is_budgeted_at_the_size_it_decodes_to(monkeypatch):
    import hvl_core.images as im

    monkeypatch.setattr(im, "MAX_DECODE_PIXELS", 10_000)
    big = Image.fromarray(np.random.default_rng(0).integers(0, 255, (400, 400, 3), dtype=np.uint8))
    li = load_image(png_bytes(big, "JPEG"), max_side=50)  # drafted to 50², within the budget
    assert li.image.size == (50, 50) and li.original_size == (400, 400)
    with pytest.raises(ImageError, match="decoded at full size"):
        load_image(png_bytes(big), max_side=50)  # the same pixels as a PNG: decoded whole


def test_a_callers_pixel_budget_is_checked_before_decoding():
    data = png_bytes(Image.new("RGB", (300, 200)))
    assert load_image(data, max_pixels=60_000).original_size == (300, 200)
    with pytest.raises(ImageError, match="more than the 59,999 left in this batch's pixel budget"):
        load_image(data, max_pixels=59_999)


def test_large_rgba_is_resampled_in_bands_like_the_whole_image():
    """Alpha on white and the downscale, a band of rows at a time, give the whole-image result."""
    from hvl_core.raster import to_rgb

    yy, xx = np.mgrid[0:1000, 0:600]
    a = np.zeros((1000, 600, 4), np.uint8)
    a[..., 0] = (127 + 120 * np.sin(yy / 40)).astype(np.uint8)
    a[..., 1] = (xx * 255 // 600).astype(np.uint8)
    a[..., 2] = (127 + 120 * np.cos((xx + yy) / 60)).astype(np.uint8)
    a[..., 3] = np.linspace(0, 255, 600, dtype=np.uint8)[None, :]
    li = load_image(png_bytes(Image.fromarray(a, "RGBA")), max_side=200)
    whole = to_rgb(Image.fromarray(a, "RGBA"), [])
    whole.thumbnail((200, 200), Image.LANCZOS)
    assert li.image.size == whole.size == (120, 200) and li.original_size == (600, 1000)
    diff = np.abs(np.asarray(li.image, np.int16) - np.asarray(whole, np.int16))
    assert diff.max() <= 2 and diff.mean() < 0.5  # Lanczos band by band vs thumbnail (box-reduce 2×, Lanczos)
    assert "transparency composited on white" in li.notes and any("downscaled from 600×1000" in n for n in li.notes)


def test_exif_rotation_survives_the_strip_path():
    img = Image.new("RGB", (600, 300), (200, 30, 30))
    exif = Image.Exif()
    exif[0x0112] = 6  # rotate 90° clockwise to view
    buf = io.BytesIO()
    img.save(buf, "PNG", exif=exif)
    li = load_image(buf.getvalue(), max_side=200)
    assert li.image.size == (100, 200) and li.original_size == (300, 600)


@pytest.mark.parametrize("dtype", [np.uint8, np.uint16])
def test_a_tiff_of_many_pages_is_read_without_walking_every_page_header(monkeypatch, dtype):
    import tifffile
    from PIL import TiffImagePlugin

    from hvl_core import images, slides

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        for i in range(images.MAX_TIFF_PAGES + 20):
            tw.write(np.full((16, 16), i % 200, dtype))

    def walked(*a):
        raise AssertionError("every page header was read")

    real_len = tifffile.TiffPages.__len__
    monkeypatch.setattr(tifffile.TiffPages, "__len__", lambda self: real_len(self) if self._indexed else walked())
    monkeypatch.setattr(slides, "is_slide", walked)  # tf.series reads every page header
    monkeypatch.setattr(TiffImagePlugin.TiffImageFile, "n_frames", property(walked))
    li = load_image(buf.getvalue())
    assert f"more than {images.MAX_TIFF_PAGES} pages" in li.notes[0]
    assert not any("animated" in n for n in li.notes)


def test_a_few_pages_are_counted():
    import tifffile

    buf = io.BytesIO()
    with tifffile.TiffWriter(buf) as tw:
        for _ in range(3):
            tw.write(np.zeros((16, 16), np.uint8))
    assert load_image(buf.getvalue()).notes == ["multi-page TIFF: first of 3 pages used"]


def test_a_jpeg_is_decoded_reduced_whenever_that_brings_it_under_the_cap(monkeypatch):
    """A 10000×8000 JPEG was refused as 'decoded at full size' (draft applied only when both
    sides were ≥ 2 × 4096), a 9500² one as a decompression bomb (PIL's 89 M pixels): the same
    cases scaled down, the caps with them."""
    from hvl_core import images

    assert images._draft_scale(10000, 8000, 4096) == 2 and images._draft_scale(9500, 9500, 4096) == 2
    assert images._draft_scale(3000, 2000, 4096) == 1
    monkeypatch.setattr(images, "MAX_DECODE_PIXELS", 1_000_000)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 2_000_000)  # PIL warns past this, raises past twice
    jpeg = png_bytes(Image.new("L", (2000, 1600), 128), "JPEG")
    li = load_image(jpeg, max_side=1024)
    assert li.image.size == (1000, 800) and li.original_size == (2000, 1600)  # decoded at half size
    assert "downscaled from 2000×1600" in li.notes
