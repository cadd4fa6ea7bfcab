"""Decoding files to the backbone's view, and the hierarchical crops of a batch of views.

With ``detail="upsample"`` (the paper's) every crop is cut from the ``S×S`` view, so a decode
worker only has to ship that view (uint8, ``S·S·3`` bytes) and the crops of a whole batch are
cut in one go where the encoder runs (``crops_of_views``). Two decoders make the view:

- ``decode_view`` (CPU, PIL): ``hvl_core.images.load_image`` + ``square_view``, exactly what
  ``HVLModel.predict`` sees;
- ``decode_jpegs`` (torchvision ``decode_jpeg``, nvjpeg on CUDA): JPEG bytes of a batch are
  decoded and resized on the device; the view differs from PIL's by resampling rounding (a few
  grey levels), so the scores differ slightly (the GPU benchmark reports by how much).
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from hvl_core.geometry import hierarchical_crops, square_view
from hvl_core.head import HVLConfig
from hvl_core.images import MAX_PIXELS, MAX_SIDE, MIN_SIDE, ImageError, load_image

DECODERS = ("auto", "cpu", "device")


@dataclass
class Decoded:
    """One input file, ready for the encoder (or the reason it is not)."""

    view: np.ndarray | None = None  # (S, S, 3) uint8: the backbone's view
    crops: torch.Tensor | None = None  # (M, 3, S, S) [0, 1]: only for detail="native"
    jpeg: np.ndarray | None = None  # the file's bytes, to be decoded on the device
    error: str | None = None
    notes: list[str] = field(default_factory=list)


def _error_text(e: Exception, path: str) -> str:
    return str(e).replace("the image", Path(path).name, 1)


def decode_view(path: str, size: int, n: int = HVLConfig.n, detail: str = "upsample") -> Decoded:
    """The file's ``size``² view through PIL (the model's own loader); for ``detail="native"``
    also its crops, which need the full-resolution image."""
    try:
        li = load_image(path)
    except ImageError as e:
        return Decoded(error=_error_text(e, path))
    except OSError as e:  # unreadable file (permissions, I/O)
        return Decoded(error=f"{Path(path).name}: cannot read the file ({e.strerror or e})")
    view = np.asarray(square_view(li.image, size), dtype=np.uint8)
    crops = hierarchical_crops(li.image, n, size, detail) if detail == "native" else None
    return Decoded(view=view, crops=crops, notes=list(li.notes))


def jpeg_for_device(path: str) -> np.ndarray | None:
    """The file's bytes when the device decoder can take it (a baseline or progressive 8-bit
    RGB/grey JPEG within the loader's size limits, no EXIF rotation), else None (the CPU
    decoder handles it, with its checks and messages)."""
    from PIL import Image

    try:
        data = Path(path).read_bytes()
        with Image.open(io.BytesIO(data)) as im:  # header only
            if im.format != "JPEG" or im.mode not in ("RGB", "L"):
                return None
            w, h = im.size
            orientation = im.getexif().get(0x0112, 1)
    except Exception:  # noqa: BLE001 - anything odd goes to the CPU decoder, which explains it
        return None
    if w * h > MAX_PIXELS or max(w, h) > MAX_SIDE or min(w, h) < MIN_SIDE or orientation not in (1, None):
        return None
    return np.frombuffer(bytearray(data), dtype=np.uint8)  # writable: torch.from_numpy takes it as is


def decode_item(path: str, size: int, n: int, detail: str, on_device: bool) -> Decoded:
    """What a decode worker does with one file."""
    if on_device and detail == "upsample":
        data = jpeg_for_device(path)
        if data is not None:
            return Decoded(jpeg=data)
    return decode_view(path, size, n, detail)


def view_of_tensor(img: torch.Tensor, size: int) -> torch.Tensor:
    """A decoded image (3, H, W) uint8 → its ``size``² view (3, size, size) uint8: short side
    to ``size`` (bicubic, antialiased like PIL), centre crop — ``square_view`` on a tensor."""
    from torchvision.transforms import InterpolationMode
    from torchvision.transforms import functional as TF

    x = TF.resize(img, size, interpolation=InterpolationMode.BICUBIC, antialias=True)
    return TF.center_crop(x, [size, size])


def decode_jpegs(blobs: list[np.ndarray], size: int, device: torch.device) -> list[torch.Tensor]:
    """JPEG bytes → views (3, size, size) uint8 on ``device``, decoded in one call (nvjpeg on
    CUDA). Raises RuntimeError when a file does not decode (the caller retries it on the CPU)."""
    from torchvision.io import ImageReadMode, decode_jpeg

    data = [torch.from_numpy(np.asarray(b)) for b in blobs]
    imgs = decode_jpeg(data, mode=ImageReadMode.RGB, device=device)
    return [view_of_tensor(im, size) for im in imgs]


def crops_of_views(views: torch.Tensor, n: int) -> torch.Tensor:
    """``hierarchical_crops`` (upsample mode) of a batch of views at once, where ``views`` are.

    views (B, 3, S, S) uint8 or [0, 1] float → (B, 1 + n² + 4n², 3, S, S) float [0, 1]: scale 0,
    then the n×n and 2n×2n cells of the bicubic n× / 2n× upsampled view, row-major (HVL_SPEC §1).
    """
    x = views.float() / 255 if views.dtype == torch.uint8 else views.float()
    B, c, S, _ = x.shape
    out = [x.unsqueeze(1)]
    for g in (n, 2 * n):
        big = F.interpolate(x, scale_factor=g, mode="bicubic", align_corners=False).clamp(0, 1)
        out.append(big.reshape(B, c, g, S, g, S).permute(0, 2, 4, 1, 3, 5).reshape(B, g * g, c, S, S))
    return torch.cat(out, dim=1)
