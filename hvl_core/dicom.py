"""DICOM images (pydicom): single-frame colour and grey images → the same 8-bit pixels a PNG export
would hold (whole-slide DICOM goes to ``slides``, through wsidicom). A deflated dataset is refused
from the file meta, before anything is inflated. Only the pixel description is read from the
header (size, samples, bits, photometric interpretation, window); no patient or study attribute
is ever returned, shown or written.
"""

from __future__ import annotations

import numpy as np

from .raster import ImageError, array_to_uint8, check_raster

#: VL Whole Slide Microscopy Image Storage: one level of a DICOM whole-slide image
WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"
#: Deflated Explicit VR Little Endian: the whole dataset is zlib-deflated, and pydicom inflates it
#: in one piece without a limit (~1000:1, so a 32 MB upload could become 32 GB)
DEFLATED = "1.2.840.10008.1.2.1.99"


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


def read_header(fp, name: str):
    """The DICOM header (no pixel data), ``fp`` left at its start. The file meta group is read
    first, on its own, and a deflated dataset refused before pydicom inflates anything."""
    import pydicom
    from pydicom.errors import InvalidDicomError
    from pydicom.filereader import _read_file_meta_info, read_preamble

    unreadable = (InvalidDicomError, EOFError, OSError, ValueError, KeyError, TypeError, AttributeError)
    try:
        # pydicom's own meta reader: its public twin takes only a path, and dcmread inflates first
        read_preamble(fp, False)
        syntax = str(_read_file_meta_info(fp).get("TransferSyntaxUID", ""))
    except unreadable as e:
        raise ImageError(f"{name} is not a DICOM file this app can read ({type(e).__name__})") from None
    if syntax == DEFLATED:
        raise ImageError(
            f"{name} is a deflate-compressed DICOM file, which is not read here (its size is unknown until "
            "it is inflated whole); export it as uncompressed DICOM or PNG"
        )
    fp.seek(0)
    try:
        return pydicom.dcmread(fp, stop_before_pixels=True)
    except unreadable as e:
        raise ImageError(f"{name} is not a DICOM file this app can read ({type(e).__name__})") from None
    finally:
        fp.seek(0)


def is_wsi(ds) -> bool:
    """Whether a DICOM header is (a level of) a whole-slide image's."""
    return str(getattr(ds, "SOPClassUID", "")) == WSI_SOP_CLASS


def read_dicom(fp, name: str, notes: list[str], ds=None) -> np.ndarray:
    """The first frame of a DICOM file as a uint8 array (H×W grey or H×W×3 RGB).

    The header (``ds``: ``read_header``'s, read here when not given) comes first and the frame's
    size is checked (``check_raster``) before any pixel data is decoded. MONOCHROME1 is inverted
    (so dark is dark, as in a PNG export); YBR colour is converted to RGB; 8-bit pixels are passed
    through unchanged.
    """
    from pydicom.pixels import pixel_array

    ds = read_header(fp, name) if ds is None else ds
    if is_wsi(ds):
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
