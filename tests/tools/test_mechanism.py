"""The mechanism benchmark's measuring parts: border cells from masks, selection precision, the
simulated embeddings (hvl_tools.mechanism)."""

import numpy as np
import pytest
import torch

from hvl_tools import mechanism as MX


def test_cell_fractions_and_border_cells_by_hand():
    # an 8×8 mask on a 4×4 grid (2×2 pixel cells): lesion = pixels rows 1–4, cols 1–2
    mask = np.zeros((8, 8), np.uint8)
    mask[1:5, 1:3] = 255
    mask[0, 0] = 128  # halo is not lesion
    f = MX.cell_fractions(mask, 4).reshape(4, 4)
    # cell (0,0): pixels (0..1, 0..1): lesion at (1,1) → 1/4; cell (0,1): (1,2) → 1/4;
    # cell (1,0): (2..3, 1) → 2/4; cell (1,1): (2..3, 2) → 2/4; cell (2,0): (4,1) → 1/4; (2,1): (4,2) → 1/4
    want = np.zeros((4, 4))
    want[0, :2] = 0.25
    want[1, :2] = 0.5
    want[2, :2] = 0.25
    assert np.allclose(f, want)
    border = MX.border_cells(mask, 4)
    assert border.sum() == 6 and border.reshape(4, 4)[:3, :2].all()
    full = np.full((8, 8), 255, np.uint8)
    assert not MX.border_cells(full, 4).any()  # all lesion: no border


def test_selection_precision_by_hand():
    border = np.array([[True, False, True, False], [False, False, False, True]])
    sel = torch.tensor([[0, 1], [3, 2]])
    # image 0: cells 0 (border), 1 (not); image 1: 3 (border), 2 (not) → 2 of 4
    assert MX.selection_precision(sel, border) == 0.5


def test_mask_path_mirrors_the_image_path(tmp_path):
    img = tmp_path / "train" / "melanoma" / "melanoma_train_0001.png"
    assert MX.mask_path(tmp_path, str(img)) == tmp_path / "masks" / "train" / "melanoma" / "melanoma_train_0001.png"


def test_simulated_embeddings_have_the_stated_structure():
    v = MX.simulated_embeddings(3, num_classes=2, dim=16, seed=0, noise=0.0)
    assert v.shape == (6, 1 + 4 + 16, 16)
    assert torch.allclose(v.norm(dim=-1), torch.ones(6, 21), atol=1e-5)
    # without noise each image's high-scale cells take three values: background, border, lesion
    cells = v[0, 5:]
    assert len(torch.unique(cells.round(decimals=5), dim=0)) == 3
    # scale 0 is the normalised mean of the cells; the background cell value is shared by every image
    assert torch.allclose(v[0, 0], torch.nn.functional.normalize(v[0, 5:].mean(0), dim=-1), atol=1e-5)
    values = [set(map(tuple, v[i, 5:].round(decimals=4).tolist())) for i in range(6)]
    shared = set.intersection(*values)
    assert len(shared) == 1  # the background
    # an OOD image has the same background, but lesion cells no ID image has
    ood = MX.simulated_embeddings(3, num_classes=2, dim=16, seed=0, noise=0.0, ood=True)
    ood_values = set(map(tuple, ood[0, 5:].round(decimals=4).tolist()))
    assert shared <= ood_values and ood_values - set.union(*values)


def test_draw_is_per_class_and_disjoint():
    labels = np.repeat([0, 1, 2], 20)
    tr, va = MX._draw(labels, 10, 0.1, np.random.default_rng(0))
    assert len(set(tr) & set(va)) == 0
    assert [int((labels[tr + va] == c).sum()) for c in range(3)] == [10, 10, 10]
    assert [int((labels[va] == c).sum()) for c in range(3)] == [1, 1, 1]


@pytest.mark.slow
def test_image_benchmark_end_to_end_on_a_tiny_recipe2_set(tmp_path):
    """Every variant × seed × data seed is run on one cache; the bootstrap pairs every row with
    full HVL; the border base rate is the masks' own."""
    from PIL import Image

    from hvl_tools.config import VARIANTS
    from hvl_tools.synthetic import generate

    root = tmp_path / "s2"
    generate(root, train_per_class=3, test_per_class=2, ood_per_class=2, recipe=2)
    doc = MX.run_images(
        root,
        tmp_path / "out",
        seeds=(0, 1),
        data_seeds=(0,),
        train_per_class=3,
        epochs=1,
        n_boot=20,
        cache_dir=tmp_path / "cache",
        log=lambda m: None,
    )
    assert doc["data"]["n_id_test"] == 8 and doc["data"]["n_ood_test"] == 6
    for v, (trained, _, _) in VARIANTS.items():
        assert doc["variants"][v]["runs"] == (2 if trained else 1)
    assert set(doc["bootstrap_vs_hvl"]) == set(VARIANTS) - {"hvl"}
    masks = sorted((root / "masks" / "train").rglob("*.png"))
    want = np.mean([MX.border_cells(np.asarray(Image.open(p)), 4).mean() for p in masks])
    assert doc["border_base_rate"] == pytest.approx(want)
    for rec in doc["selection_precision"].values():
        assert 0 <= rec["entropy_gain"]["mean"] <= 1 and 0 <= rec["entropy"]["mean"] <= 1
    md = (tmp_path / "out" / "images.md").read_text()
    assert "Table 2 row 3" in md and "`exact` convention" in md


def test_simulated_border_map_is_the_ring_around_the_lesion_block():
    v, border = MX.simulated_embeddings(2, num_classes=2, dim=16, seed=3, noise=0.0, return_border=True)
    assert border.shape == (4, 16) and border.dtype == bool
    for i in range(4):
        cells = v[i, 5:].round(decimals=4)
        values = torch.unique(cells, dim=0)
        masks = [(cells == val).all(-1).reshape(4, 4) for val in values]

        def is_block(m):  # four cells forming a 2×2 square
            r, c = torch.nonzero(m, as_tuple=True)
            return len(r) == 4 and r.max() - r.min() == 1 and c.max() - c.min() == 1

        blocks = [m for m in masks if is_block(m)]
        assert len(blocks) == 1  # the lesion (in these seeds no other value happens to form a square)
        core = blocks[0]
        ring = torch.nn.functional.max_pool2d(core[None, None].float(), 3, 1, 1)[0, 0].bool() & ~core
        assert (torch.from_numpy(border[i]).reshape(4, 4) == ring).all()
