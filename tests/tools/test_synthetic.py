"""The synthetic benchmarks: recipe 1 as documented, recipe 2 with small lesions, halos and masks."""

import re

import numpy as np
import pytest

from hvl_tools import synthetic as S


def _lesion_radius_fraction(class_name: str, n: int = 40) -> tuple[float, float]:
    """Equivalent-disc radius of recipe 1's lesions, as a fraction of the side, from the pixels
    whose colour departs from the skin (measured, not read from the code)."""
    out = []
    for i in range(n):
        img = S.render(class_name, S.image_rng(0, "train", class_name, i), 96).astype(float)
        skin = np.median(np.concatenate([img[:4].reshape(-1, 3), img[-4:].reshape(-1, 3)]), axis=0)
        area = (np.abs(img - skin).sum(-1) > 60).sum()
        out.append(np.sqrt(area / np.pi) / 96)
    return min(out), max(out)


def test_recipe1_docstring_states_the_lesion_radius_the_code_draws():
    m = re.search(
        r"base radius (\d+)–(\d+)% of the\s+side times a class scale of ([\d.]+)–([\d.]+) \(so (\d+)–(\d+)%\)",
        S.__doc__,
    )
    assert m, "the docstring must state the lesion radius"
    lo, hi, s_lo, s_hi, t_lo, t_hi = (float(x) for x in m.groups())
    scales = [v[2] for v in S._SHAPES.values()]
    assert (s_lo, s_hi) == (min(scales), max(scales))
    assert (t_lo, t_hi) == (round(lo * s_lo), round(hi * s_hi))
    # and the images agree: nevus (scale 1.0) lesions measure within the stated 30–40% (± a
    # border irregularity, elongation and the soft edge)
    r_lo, r_hi = _lesion_radius_fraction("melanocytic nevus")
    assert lo / 100 - 0.05 < r_lo and r_hi < hi / 100 + 0.05


@pytest.mark.parametrize("cls", S.ID_CLASSES + S.OOD_CLASSES)
def test_recipe2_lesions_are_small_with_a_halo_and_a_mask(cls):
    img, mask = S.render_v2(cls, S.image_rng(0, "test", cls, 3, 2))
    assert img.shape == (S.V2_SIZE, S.V2_SIZE, 3) and mask.shape == (S.V2_SIZE, S.V2_SIZE)
    assert set(np.unique(mask)) <= {0, 128, 255}
    r = np.sqrt((mask == 255).sum() / np.pi) / S.V2_SIZE
    assert 0.06 < r < 0.17  # V2_RADIUS 9–14% of the side, ± border irregularity
    assert (mask == 128).sum() > 0.5 * (mask == 255).sum()  # the halo ring is there


def test_recipe2_near_ood_shares_its_twin_look_and_differs_in_texture():
    """Same seed → same geometry and colour for a near-OOD class and its twin: the masks are
    identical and the images differ inside the lesion (its fine texture); outside, only the
    pixel noise differs (drawn after the texture, so from another point of the stream)."""
    for ood, twin in S.V2_TWIN.items():
        a, ma = S.render_v2(ood, np.random.default_rng(5))
        b, mb = S.render_v2(twin, np.random.default_rng(5))
        assert (ma == mb).all()
        diff = np.abs(a.astype(float) - b.astype(float)).mean(-1)
        assert diff[mb == 255].mean() > 1.3 * diff[mb == 0].mean(), ood  # skin: noise alone (~4.5)


def test_generate_recipe2_writes_masks_beside_the_images_and_recipe1_is_unchanged(tmp_path):
    info = S.generate(tmp_path / "v2", train_per_class=1, test_per_class=1, ood_per_class=1, size=64, recipe=2)
    assert info["recipe_version"] == 2
    pngs = sorted(
        p.relative_to(tmp_path / "v2")
        for p in (tmp_path / "v2").rglob("*.png")
        if p.parts[-4] != "masks" and "masks" not in p.parts
    )
    masks = sorted(p.relative_to(tmp_path / "v2" / "masks") for p in (tmp_path / "v2" / "masks").rglob("*.png"))
    assert pngs == masks and len(pngs) == 4 + 4 + 3
    S.generate(tmp_path / "v1", train_per_class=1, test_per_class=1, ood_per_class=1)
    assert not (tmp_path / "v1" / "masks").exists()
    with pytest.raises(ValueError, match="recipe"):
        S.render_image("melanoma", np.random.default_rng(0), recipe=3)
