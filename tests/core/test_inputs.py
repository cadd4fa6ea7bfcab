"""Inputs clinicians have: numpy arrays of any dtype, NaN pixels, 16-bit / float files, DICOM.
Each case reproduces a defect that was seen (wrong message, black image, memory blow-up)."""

import io

import numpy as np
import pytest
from PIL import Image

import hvl_core.raster as im
from hvl_core.images import ImageError, load_image
from tests.wsi_files import dicom_bytes


def png(a):
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    return buf.getvalue()


def pixels(li):
    return np.asarray(li.image)


def test_none_is_refused_with_a_sentence(tiny_model):
    with pytest.raises(ImageError, match="no image was given"):
        tiny_model.predict(None)


def test_unsupported_object():
    with pytest.raises(ImageError, match="a dict is not an image"):
        load_image({"a": 1})


def test_float_rgb_in_unit_range_is_scaled_by_255():
    a = np.zeros((20, 20, 3), np.float64)
    a[0, 0] = (0.0, 0.5, 1.0)
    li = load_image(a)
    assert pixels(li)[0, 0].tolist() == [0, 128, 255]  # rint(0.5 * 255) = 128
    assert "[0, 1]" in li.notes[0]


def test_uint16_array_uses_the_full_16_bit_range():
    a = np.zeros((20, 20), np.uint16)
    a[0, :3] = (0, 257 * 100, 65535)
    assert pixels(load_image(a))[0, :3, 0].tolist() == [0, 100, 255]


def test_bool_array_is_black_and_white():
    a = np.zeros((20, 20), bool)
    a[5, 5] = True
    p = pixels(load_image(a))
    assert p[5, 5].tolist() == [255, 255, 255] and p.sum() == 3 * 255


def test_float_outside_unit_range_is_stretched():
    a = np.full((20, 20), -10.0, np.float32)
    a[0, 0] = 30.0
    p = pixels(load_image(a))[:, :, 0]
    assert p[0, 0] == 255 and p[1, 1] == 0


def test_bad_array_shape():
    with pytest.raises(ImageError, match=r"shape \(2, 20, 20\) is not an image"):
        load_image(np.zeros((2, 20, 20), np.uint8))


def test_one_nan_or_inf_pixel_does_not_blacken_the_image():
    a = np.linspace(0, 1, 400, dtype=np.float32).reshape(20, 20)
    a[3, 3], a[4, 4] = np.nan, np.inf
    li = load_image(a)
    p = pixels(li)[:, :, 0]
    assert p[19, 19] == 255 and p[0, 10] == round(10 / 399 * 255)
    assert p[3, 3] == 0 and p[4, 4] == 0
    assert any("2 NaN/infinite" in n for n in li.notes)


def test_float_tiff_with_nan_is_read_by_its_finite_range():
    import tifffile

    a = np.linspace(0, 1000, 400, dtype=np.float32).reshape(20, 20)
    a[0, 0] = np.nan
    buf = io.BytesIO()
    tifffile.imwrite(buf, a)
    p = pixels(load_image(buf.getvalue()))[:, :, 0]
    assert p[19, 19] == 255 and p[0, 0] == 0 and p[0, 1] == 0 and p[10, 0] > 100


def test_all_nan_is_refused():
    with pytest.raises(ImageError, match="every pixel is NaN"):
        load_image(np.full((20, 20), np.nan))


def test_16_bit_png_file():
    a = np.zeros((20, 20), np.uint16)
    a[0, 0] = 65535
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, "PNG")
    assert pixels(load_image(buf.getvalue()))[0, 0, 0] == 255


def test_raster_size_is_checked_before_decoding(monkeypatch):
    """A 16-bit TIFF is refused from its header when its raster would exceed the budget; the
    same pixels at 8 bits, half the bytes, are accepted."""
    import tifffile

    a = np.zeros((100, 100), np.uint16)
    buf = io.BytesIO()
    tifffile.imwrite(buf, a)
    monkeypatch.setattr(im, "MAX_RASTER_BYTES", 15_000)
    with pytest.raises(ImageError, match="need 0 MB, more than the 0 MB|would need"):
        load_image(buf.getvalue())
    assert load_image(png(a.astype(np.uint8))).image.size == (100, 100)


def test_decode_is_never_attempted_for_an_oversized_header(monkeypatch):
    """A TIFF header claiming a huge float raster: refused, and the pixel reader never runs."""
    import tifffile

    buf = io.BytesIO()
    tifffile.imwrite(buf, np.zeros((300, 300), np.float32))
    monkeypatch.setattr(im, "MAX_RASTER_BYTES", 300 * 300 * 4 - 1)
    called = []
    monkeypatch.setattr(tifffile.TiffPage, "asarray", lambda *a, **k: called.append(1))
    with pytest.raises(ImageError, match="32-bit samples"):
        load_image(buf.getvalue())
    assert not called


# --------------------------------------------------------------------------- DICOM


@pytest.mark.parametrize("shape", [(48, 40), (48, 40, 3)], ids=["grey", "colour"])
def test_dicom_gives_the_same_pixels_and_result_as_png(shape, tiny_model):
    a = np.random.default_rng(1).integers(0, 256, shape, dtype=np.uint8)
    from_dicom, from_png = load_image(dicom_bytes(a)), load_image(png(a))
    assert np.array_equal(pixels(from_dicom), pixels(from_png))
    p1, p2 = tiny_model.predict(from_dicom), tiny_model.predict(from_png)
    assert p1.label == p2.label and p1.msp == pytest.approx(p2.msp, abs=1e-6)


def test_dicom_notes_show_no_patient_data():
    li = load_image(dicom_bytes(np.zeros((32, 32), np.uint8), patient="Doe^Jane"))
    text = " ".join(li.notes)
    assert "DICOM" in text and "Doe" not in text and "ID-123456" not in text and "1970" not in text


def test_dicom_monochrome1_is_inverted():
    a = np.zeros((32, 32), np.uint8)
    a[0, 0] = 255
    p = pixels(load_image(dicom_bytes(a, photometric="MONOCHROME1")))
    assert p[0, 0, 0] == 0 and p[1, 1, 0] == 255


def test_dicom_12_bit_is_scaled_by_its_bits_stored():
    a = np.zeros((32, 32), np.uint16)
    a[0, :2] = (4095, 2048)
    p = pixels(load_image(dicom_bytes(a, bits_stored=12)))
    assert p[0, 0, 0] == 255 and p[0, 1, 0] == round(2048 / 4095 * 255)


def test_dicom_window_is_applied():
    a = np.zeros((32, 32), np.uint16)
    a[0, :3] = (1000, 1100, 2000)  # window 1000..1200 (centre 1100, width 200)
    p = pixels(load_image(dicom_bytes(a, bits_stored=12, window=(1100, 200))))[0, :3, 0]
    assert p[0] == 0 and p[2] == 255 and 120 <= p[1] <= 135


def test_dicom_multiframe_uses_the_first_frame():
    li = load_image(dicom_bytes(np.full((32, 32), 7, np.uint8), frames=3))
    assert pixels(li)[0, 0, 0] == 7 and any("3 frames" in n for n in li.notes)


def test_dicom_whole_slide_bytes_are_refused_clearly():
    b = dicom_bytes(np.zeros((32, 32, 3), np.uint8), sop_class="1.2.840.10008.5.1.4.1.1.77.1.6")
    with pytest.raises(ImageError, match="whole-slide"):
        load_image(b)


def test_dicom_truncated_pixel_data():
    b = dicom_bytes(np.zeros((64, 64), np.uint8))
    with pytest.raises(ImageError, match="could not be decoded"):
        load_image(b[:-2000])


def test_dicom_header_size_is_checked_before_pixels(monkeypatch):
    monkeypatch.setattr(im, "MAX_RASTER_BYTES", 1000)
    with pytest.raises(ImageError, match="would need"):
        load_image(dicom_bytes(np.zeros((64, 64), np.uint8)))


def test_deflated_dicom_is_refused_before_anything_is_inflated(monkeypatch):
    import zlib

    from hvl_core.dicom import DEFLATED

    # 4096² zeros deflate to a few KB: the ~1000:1 bomb in small
    b = dicom_bytes(np.zeros((4096, 4096), np.uint8), transfer_syntax=DEFLATED)
    assert len(b) < 64_000

    def no_inflating(*a, **k):
        raise AssertionError("the dataset was inflated")

    monkeypatch.setattr(zlib, "decompress", no_inflating)  # pydicom inflates with zlib.decompress
    with pytest.raises(ImageError, match="deflate-compressed DICOM") as e:
        load_image(b)
    assert "\n" not in str(e.value)
