"""Hierarchical inputs (HVL_SPEC §1): one image -> 1 + n² + 4n² crops for the encoder.

Scale 0 is the backbone's own view ``x`` of the image (short side resized to S, centre crop S).
Mid / high scales upsample ``x`` n× / 2n× (bicubic) and cut an n×n / 2n×2n grid of S² cells,
row-major. ``detail="native"`` cuts the same grid from the upload's own pixels instead, when
the upload is large enough (≥ 2n·S on its short side).
"""

from __future__ import annotations

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torchvision.transforms import InterpolationMode
from torchvision.transforms import functional as TF

DETAIL_MODES = ("upsample", "native")


def num_crops(n: int) -> int:
    """1 + n² + 4n²."""
    return 1 + n * n + 4 * n * n


def square_view(image: Image.Image, size: int) -> Image.Image:
    """The backbone's view: resize the short side to ``size`` (bicubic), centre-crop ``size``²."""
    img = TF.resize(image, size, interpolation=InterpolationMode.BICUBIC)
    return TF.center_crop(img, [size, size])


def center_square(image: Image.Image) -> Image.Image:
    """The upload's central square at its own resolution (the region ``square_view`` shows)."""
    w, h = image.size
    s = min(w, h)
    return TF.center_crop(image, [s, s])


def grid_cells(x: torch.Tensor, g: int) -> torch.Tensor:
    """Cut ``x (3, g·S, g·S)`` into its g×g cells, row-major → (g², 3, S, S)."""
    c, H, W = x.shape
    s = H // g
    return x.reshape(c, g, s, g, s).permute(1, 3, 0, 2, 4).reshape(g * g, c, s, s)


def to_tensor01(image: Image.Image) -> torch.Tensor:
    return torch.from_numpy(np.asarray(image.convert("RGB"), dtype=np.uint8).copy()).permute(2, 0, 1).float() / 255


def hierarchical_crops(
    image: Image.Image, n: int, size: int = 224, detail: str = "upsample", device: torch.device | str | None = None
) -> torch.Tensor:
    """All crops of one image in [0, 1] pixels: (1 + n² + 4n², 3, size, size).

    Order: scale 0, then the n×n mid-scale cells, then the 2n×2n high-scale cells, row-major.
    ``device``: where to upsample and cut (e.g. the GPU, so only the S² view is copied there).
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    if detail not in DETAIL_MODES:
        raise ValueError(f"detail must be one of {DETAIL_MODES}, got {detail!r}")
    x = to_tensor01(square_view(image, size))
    if device is not None:
        x = x.to(device)
    crops = [x.unsqueeze(0)]
    native = detail == "native" and min(image.size) >= 2 * n * size
    square = center_square(image) if native else None
    for g in (n, 2 * n):
        if native:
            big = to_tensor01(square.resize((g * size, g * size), Image.BICUBIC)).to(x.device)
        else:
            big = F.interpolate(x.unsqueeze(0), scale_factor=g, mode="bicubic", align_corners=False)[0].clamp(0, 1)
        crops.append(grid_cells(big, g))
    return torch.cat(crops)


def split_scales(v: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-image crop embeddings (B, 1 + n² + 4n², d) → v0 (B,d), v1 (B,n²,d), v2 (B,4n²,d)."""
    return v[:, 0], v[:, 1 : 1 + n * n], v[:, 1 + n * n :]
