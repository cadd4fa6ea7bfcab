"""DICOM images (pydicom): single-frame colour and grey images → the same 8-bit pixels a PNG export
would hold (whole-slide DICOM goes to ``slides``, through wsidicom). Only the pixel description is read from the header (size, samples, bits, photometric
interpretation, window); no patient or study attribute is ever returned, shown or written.
"""

from __future__ import annotations

import numpy as np

from .raster import ImageError, array_to_uint8, check_raster

#: VL Whole Slide Microscopy Image Storage: one level of a DICOM whole-slide image
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def _window(ds, a: np.ndarray) -> tuple[np.ndarray, float | None, str]:
    """Grey values → display values: the modality LUT (rescale slope/intercept), then the VOI
    window when the file names one. Returns (values, white level or None, what was done)."""
    from pydicom.pixels import apply_modality_lut, apply_voi_lut

    bits = int(getattr(ds, "BitsStored", a.dtype.itemsize * 8) or 8)
    if "WindowCenter" in ds and "WindowWidth" in ds or "VOILUTSequence" in ds:
        out = apply_voi_lut(apply_modality_lut(a, ds), ds, index=0)
        # the windowed output spans [0, 2^bits − 1] (pydicom's convention for unsigned output)
        return out, float(2**bits - 1), "the file's display window applied"
    if "RescaleSlope" in ds or "RescaleIntercept" in ds:
        return apply_modality_lut(a, ds), None, "rescale slope/intercept applied"
    if np.issubdtype(a.dtype, np.unsignedinteger) and a.dtype != np.uint8:
        return a, float(2**bits - 1), ""
    return a, None, ""


def is_dicom_wsi(fp) -> bool:
    """Whether a DICOM file is (a level of) a whole-slide image; ``fp`` is left at its start."""
    import pydicom

    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True, specific_tags=["SOPClassUID"])
        return str(getattr(ds, "SOPClassUID", "")) == WSI_SOP_CLASS
    except Exception:  # noqa: BLE001 — read_dicom says what is wrong with it
        return False
    finally:
        fp.seek(0)


def read_dicom(fp, name: str, notes: list[str]) -> np.ndarray:
    """The first frame of a DICOM file as a uint8 array (H×W grey or H×W×3 RGB).

    The header is read first and the frame's size checked (``check_raster``) before any pixel
    data is decoded. MONOCHROME1 is inverted (so dark is dark, as in a PNG export); YBR colour is
    converted to RGB; 8-bit pixels are passed through unchanged.
    """
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.pixels import pixel_array

    try:
        ds = pydicom.dcmread(fp, stop_before_pixels=True)
    except (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError) as e:
        raise ImageError(f"{name} is not a DICOM file this app can read ({type(e).__name__})") from None
    if str(getattr(ds, "SOPClassUID", "")) == WSI_SOP_CLASS:
        raise ImageError(f"{name} is a DICOM whole-slide image; it is read from its file (a path), not from bytes")
    try:
        rows, cols = int(ds.Rows), int(ds.Columns)
        samples = int(getattr(ds, "SamplesPerPixel", 1) or 1)
        bits = int(getattr(ds, "BitsAllocated", 8) or 8)
        frames = int(getattr(ds, "NumberOfFrames", 1) or 1)
        photometric = str(getattr(ds, "PhotometricInterpretation", "MONOCHROME2"))
    except (AttributeError, TypeError, ValueError):
        raise ImageError(f"{name} is a DICOM file without an image in it (no rows, columns or pixel data)") from None
    check_raster(name, cols, rows, samples, max(1, (bits + 7) // 8))
    fp.seek(0)
    try:
        a = pixel_array(fp, index=0 if frames > 1 else None)
    except Exception as e:  # noqa: BLE001 — pydicom raises many kinds for undecodable pixel data
        ts = getattr(getattr(ds, "file_meta", None), "TransferSyntaxUID", None)
        how = f" compressed as {ts.name}" if ts is not None and getattr(ts, "is_compressed", False) else ""
        raise ImageError(
            f"{name}: the DICOM pixel data{how} could not be decoded here ({type(e).__name__}); "
            "export the image as uncompressed DICOM or PNG"
        ) from None
    if frames > 1:
        notes.append(f"DICOM with {frames} frames: the first used")
    if samples == 1:
        a, white, what = _window(ds, a)
        u8 = array_to_uint8(a, [], white)
        if photometric == "MONOCHROME1":
            u8 = 255 - u8
            what = ", ".join(filter(None, [what, "MONOCHROME1 inverted"]))
    elif a.ndim == 3 and a.shape[2] in (3, 4):
        u8 = array_to_uint8(a[:, :, :3], [])
        what = "" if photometric == "RGB" else f"{photometric} converted to RGB"
    else:
        raise ImageError(f"{name}: DICOM images with {samples} samples per pixel are not supported (grey or RGB only)")
    notes.append("read from DICOM" + (f" ({what})" if what else "") + "; no patient data kept")
    return u8
