"""Hierarchical crops (HVL_SPEC §1): count, order, and the geometry of each cell."""

import numpy as np
import pytest
import torch
from PIL import Image

from hvl_core.geometry import grid_cells, hierarchical_crops, num_crops, split_scales, square_view


def quadrant_image(size=224):
    """Four flat colours, one per quadrant: each mid-scale cell (n=2) must be one flat colour."""
    a = np.zeros((size, size, 3), np.uint8)
    h = size // 2
    a[:h, :h] = (255, 0, 0)
    a[:h, h:] = (0, 255, 0)
    a[h:, :h] = (0, 0, 255)
    a[h:, h:] = (255, 255, 0)
    return Image.fromarray(a)


@pytest.mark.parametrize("n", [1, 2, 3])
def test_crop_count_and_shape(n):
    crops = hierarchical_crops(quadrant_image(), n, size=32)
    assert crops.shape == (num_crops(n), 3, 32, 32)
    assert num_crops(2) == 21


def test_mid_scale_cells_are_row_major_quadrants():
    crops = hierarchical_crops(quadrant_image(64), 2, size=64)
    mid = crops[1:5]
    centre = mid[:, :, 16:48, 16:48]  # away from bicubic ringing at the seams
    want = [(1, 0, 0), (0, 1, 0), (0, 0, 1), (1, 1, 0)]  # TL, TR, BL, BR
    for cell, rgb in zip(centre, want):
        assert torch.allclose(cell.mean(dim=(1, 2)), torch.tensor(rgb, dtype=torch.float32), atol=0.02)


def test_high_scale_cell_order_matches_parent_map():
    from hvl_core.equations import parent_index

    crops = hierarchical_crops(quadrant_image(64), 2, size=64)
    high = crops[5:]
    mid_colour = crops[1:5, :, 24:40, 24:40].mean(dim=(2, 3))
    # Each high cell's inner part has the colour of its parent quadrant (cells touching the
    # quadrant seam only on their border).
    for j, parent in enumerate(parent_index(2).tolist()):
        inner = high[j, :, 24:40, 24:40].mean(dim=(1, 2))
        assert torch.allclose(inner, mid_colour[parent], atol=0.05), j


def test_scale0_is_the_backbone_view_short_side_resize_and_centre_crop():
    a = np.zeros((100, 300, 3), np.uint8)
    a[:, 100:200] = 255  # the central third is white: it fills the centre crop
    crops = hierarchical_crops(Image.fromarray(a), 1, size=50)
    x0 = crops[0]
    assert x0.shape == (3, 50, 50)
    assert float(x0[:, :, 5:45].mean()) > 0.98
    assert square_view(Image.fromarray(a), 50).size == (50, 50)


def test_grid_cells_inverts_a_known_layout():
    x = torch.arange(2 * 4 * 4, dtype=torch.float32).view(2, 4, 4)
    cells = grid_cells(x, 2)
    assert cells.shape == (4, 2, 2, 2)
    assert cells[1, 0].tolist() == [[2, 3], [6, 7]]  # top-right
    assert cells[2, 0].tolist() == [[8, 9], [12, 13]]  # bottom-left


def test_native_detail_uses_the_uploads_own_pixels():
    # A fine checkerboard survives in native mode and is blurred away by upsampling the view.
    big = ((np.indices((512, 512)) // 8).sum(0) % 2 * 255).astype(np.uint8)  # 8-px squares
    img = Image.fromarray(np.stack([big] * 3, -1))
    native = hierarchical_crops(img, 1, size=64, detail="native")
    upsampled = hierarchical_crops(img, 1, size=64, detail="upsample")
    assert native[1:].std() > 2 * upsampled[1:].std()  # measured: 0.36 vs 0.13
    # small uploads fall back to upsampling
    small = img.resize((100, 100))
    assert torch.equal(
        hierarchical_crops(small, 1, size=64, detail="native"), hierarchical_crops(small, 1, size=64, detail="upsample")
    )


def test_split_scales():
    v = torch.arange(2 * 21 * 1, dtype=torch.float32).view(2, 21, 1)
    v0, v1, v2 = split_scales(v, 2)
    assert v0.shape == (2, 1) and v1.shape == (2, 4, 1) and v2.shape == (2, 16, 1)
    assert v1[0, 0, 0] == 1 and v2[0, 0, 0] == 5 and v2[1, -1, 0] == 41


def test_bad_arguments():
    with pytest.raises(ValueError):
        hierarchical_crops(quadrant_image(), 0)
    with pytest.raises(ValueError):
        hierarchical_crops(quadrant_image(), 2, detail="magic")
