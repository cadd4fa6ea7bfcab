"""Small test files made on the spot: pyramidal TIFF slides (tifffile) and DICOM images (pydicom)."""

from __future__ import annotations

import io

import numpy as np


def slide_pixels(w: int, h: int) -> np.ndarray:
    """White glass with one purple 'tissue' block in the upper right quarter."""
    base = np.full((h, w, 3), 242, np.uint8)
    base[h // 8 : h // 2, w // 2 : 7 * w // 8] = (170, 60, 150)
    return base


def write_pyramid(
    path,
    w: int = 4096,
    h: int = 3072,
    mpp: float | None = 0.25,
    levels: int = 3,
    tile: int = 256,
    pixels: np.ndarray | None = None,
) -> np.ndarray:
    """A tiled, JPEG-compressed pyramidal TIFF (level i at 2^i downsample in SubIFDs) with its
    resolution tags (pixels per cm) when ``mpp`` is given. Returns level 0."""
    import tifffile

    base = slide_pixels(w, h) if pixels is None else pixels
    res = dict(resolution=(1e4 / mpp, 1e4 / mpp), resolutionunit="CENTIMETER") if mpp else {}
    with tifffile.TiffWriter(path) as tw:
        tw.write(base, subifds=levels - 1, tile=(tile, tile), photometric="rgb", compression="jpeg", **res)
        for i in range(1, levels):
            r = dict(resolution=(1e4 / mpp / 2**i, 1e4 / mpp / 2**i), resolutionunit="CENTIMETER") if mpp else {}
            tw.write(
                base[:: 2**i, :: 2**i], subfiletype=1, tile=(tile, tile), photometric="rgb", compression="jpeg", **r
            )
    return base


def dicom_bytes(
    a: np.ndarray,
    photometric: str | None = None,
    bits_stored: int | None = None,
    window: tuple[float, float] | None = None,
    patient: str = "Doe^Jane",
    sop_class: str | None = None,
    frames: int = 1,
    transfer_syntax: str | None = None,
) -> bytes:
    """A DICOM file holding ``a`` (H×W grey or H×W×3 RGB; uint8 or uint16), uncompressed unless
    ``transfer_syntax`` says otherwise (the deflated one: the whole dataset deflated)."""
    from pydicom.dataset import FileDataset, FileMetaDataset
    from pydicom.uid import ExplicitVRLittleEndian, SecondaryCaptureImageStorage, generate_uid

    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = sop_class or SecondaryCaptureImageStorage
    meta.MediaStorageSOPInstanceUID = generate_uid()
    meta.TransferSyntaxUID = transfer_syntax or ExplicitVRLittleEndian
    ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
    ds.SOPClassUID = meta.MediaStorageSOPClassUID
    ds.SOPInstanceUID = meta.MediaStorageSOPInstanceUID
    ds.PatientName, ds.PatientID, ds.PatientBirthDate = patient, "ID-123456", "19700101"
    ds.Modality = "OT"
    data = np.stack([a] * frames) if frames > 1 else a
    ds.Rows, ds.Columns = a.shape[:2]
    if frames > 1:
        ds.NumberOfFrames = frames
    ds.SamplesPerPixel = 3 if a.ndim == 3 else 1
    ds.PhotometricInterpretation = photometric or ("RGB" if a.ndim == 3 else "MONOCHROME2")
    if a.ndim == 3:
        ds.PlanarConfiguration = 0
    ds.BitsAllocated = 8 * a.dtype.itemsize
    ds.BitsStored = bits_stored or ds.BitsAllocated
    ds.HighBit = ds.BitsStored - 1
    ds.PixelRepresentation = 0
    if window:
        ds.WindowCenter, ds.WindowWidth = window
    ds.PixelData = np.ascontiguousarray(data).tobytes()
    buf = io.BytesIO()
    ds.save_as(buf, enforce_file_format=True)
    return buf.getvalue()


WSI_SOP_CLASS = "1.2.840.10008.5.1.4.1.1.77.1.6"


def write_dicom_wsi(folder, img: np.ndarray, mpp: float = 0.25, levels: int = 3, tile: int = 256) -> list:
    """A DICOM whole-slide image: one uncompressed TILED_FULL VL WSI file per level (level i at
    2^i downsample), with pixel spacing and patient attributes. Returns the file paths."""
    from pathlib import Path

    from pydicom.dataset import Dataset, FileDataset, FileMetaDataset
    from pydicom.sequence import Sequence
    from pydicom.uid import ExplicitVRLittleEndian, generate_uid

    study, series, frame_ref = generate_uid(), generate_uid(), generate_uid()
    paths = []
    for i in range(levels):
        a = img[:: 2**i, :: 2**i]
        H, W = a.shape[:2]
        frames = []
        for r in range(-(-H // tile)):
            for c in range(-(-W // tile)):
                f = np.full((tile, tile, 3), 255, np.uint8)
                part = a[r * tile : (r + 1) * tile, c * tile : (c + 1) * tile]
                f[: part.shape[0], : part.shape[1]] = part
                frames.append(f)
        meta = FileMetaDataset()
        meta.MediaStorageSOPClassUID = WSI_SOP_CLASS
        meta.MediaStorageSOPInstanceUID = generate_uid()
        meta.TransferSyntaxUID = ExplicitVRLittleEndian
        ds = FileDataset(None, {}, file_meta=meta, preamble=b"\0" * 128)
        ds.SOPClassUID, ds.SOPInstanceUID = WSI_SOP_CLASS, meta.MediaStorageSOPInstanceUID
        ds.StudyInstanceUID, ds.SeriesInstanceUID, ds.FrameOfReferenceUID = study, series, frame_ref
        ds.Modality, ds.PatientName, ds.PatientID = "SM", "Doe^Jane", "ID-123456"
        ds.ImageType = ["ORIGINAL", "PRIMARY", "VOLUME", "NONE"]
        ds.TotalPixelMatrixColumns, ds.TotalPixelMatrixRows = W, H
        ds.Columns = ds.Rows = tile
        ds.NumberOfFrames = len(frames)
        ds.DimensionOrganizationType = "TILED_FULL"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated = ds.BitsStored = 8
        ds.HighBit, ds.PixelRepresentation = 7, 0
        spacing = mpp * 2**i / 1000  # mm
        pm = Dataset()
        pm.PixelSpacing, pm.SliceThickness = [spacing, spacing], 0.001
        shared = Dataset()
        shared.PixelMeasuresSequence = Sequence([pm])
        ds.SharedFunctionalGroupsSequence = Sequence([shared])
        ds.ImagedVolumeWidth, ds.ImagedVolumeHeight, ds.ImagedVolumeDepth = W * spacing, H * spacing, 0.001
        ds.TotalPixelMatrixFocalPlanes, ds.NumberOfOpticalPaths = 1, 1
        op = Dataset()
        op.OpticalPathIdentifier = "0"
        ds.OpticalPathSequence = Sequence([op])
        ds.ContainerIdentifier = "slide-1"
        ds.PixelData = np.stack(frames).tobytes()
        p = Path(folder) / f"level{i}.dcm"
        ds.save_as(p, enforce_file_format=True)
        paths.append(p)
    return paths
