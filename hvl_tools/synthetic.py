"""Synthetic OOD benchmarks that ship with the code (``hvl synth OUTDIR [--recipe 2]``).

The images are **cartoons, not medical images**: a textured skin-coloured background with one
"lesion" blob whose colour, border and inner texture are set by its class. They exist to prove
that the training / evaluation pipeline learns (trained head beats the untrained one) on data
that needs no download. The class names borrow the ISIC-4 preset's names so that the same
class set works with every backbone (including ``medmnist-densenet121``, which only knows its
MedMNIST labels); nothing about real lesions should be inferred from them.

Recipe (all randomness from ``numpy.random.default_rng`` seeded by (seed, split, class, index),
so an image does not depend on how many others are generated):

- background: a skin tone drawn around RGB (222, 182, 152) ± 14, plus a smooth low-frequency
  shade (±10) and fine pixel noise (σ 5);
- lesion: a blob centred near the middle (offset σ 6% of the side), base radius 30–40% of the
  side times a class scale of 0.80–1.05 (so 24–42%), elongation by class (0.65–1.25), random
  rotation; its border is ``r(θ) = r·(1 + Σ_k a_k cos(kθ + φ_k))`` with a class-specific
  irregularity, blended with a soft edge;
- per-image colour jitter ±10 per channel and brightness ×0.9–1.1 on the lesion colours.

Known (ID) classes:

========================  ==========================================================
melanocytic nevus         round, smooth border, uniform medium brown, darker centre
melanoma                  very irregular border, dark brown-black with blue-grey blotches
dermatofibroma            smaller pink-brown ring around a whitish central patch
vascular lesion           round red-purple blob with dark red lacunae (dots)
========================  ==========================================================

Near-OOD classes (each resembles a known one in colour or shape):

========================  ==========================================================
basal cell carcinoma      pearly pink translucent blob with red branching vessels
actinic keratosis         ill-defined red-pink patch with a rough, scaly white-flaked texture
benign keratosis          sharp oval light-brown "stuck-on" blob with waxy stripes
========================  ==========================================================

Recipe 2 (``--recipe 2``, the mechanism benchmark; ``render_v2``) is built so that what HVL
looks for exists: the lesion is **small** (radius 9–14% of the side, centre anywhere in the
middle half, so it covers a few of the 4×4 high-scale cells), it has a class-independent
**boundary halo** (a pink inflamed ring out to 1.45× the lesion radius), and each near-OOD class
has the colour, shape and size of one known class and differs from it **only in its fine
texture** (period 4–6 px at 224 px, visible in detail at the high scale). Each image's lesion
mask is saved beside it (``masks/<split>/<class>/<file>.png``: 255 lesion, 128 halo, 0 skin).

========================  ================================  ===================================
class                     look (shared with)                fine texture
========================  ================================  ===================================
melanocytic nevus         brown, darker centre              pigment network (grid, period 5 px)
melanoma                  black-brown, blue-grey blotches   dark globules (dots, radius 1.5 px)
dermatofibroma            pink-brown, whitish centre        none (smooth)
vascular lesion           red-purple                        dark red lacunae (radius 6–12% of r)
benign keratosis (OOD)    as melanocytic nevus              parallel stripes (period 5 px)
basal cell carcinoma (OOD) as vascular lesion               thin branching vessels, no lacunae
actinic keratosis (OOD)   as dermatofibroma                 white scale flakes (4% of pixels)
========================  ================================  ===================================
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
from PIL import Image

ID_CLASSES = ("melanocytic nevus", "melanoma", "dermatofibroma", "vascular lesion")
OOD_CLASSES = ("basal cell carcinoma", "actinic keratosis", "benign keratosis")
SPLITS = {"train": 0, "test": 1, "ood": 2}
DEFAULT_SIZE = 96
#: recipe 2 (the mechanism benchmark): image side, lesion radius range (fraction of the side), halo reach
V2_SIZE = 224
V2_RADIUS = (0.09, 0.14)
V2_HALO = 1.45
#: near-OOD class -> the known class whose look it shares (recipe 2)
V2_TWIN = {
    "benign keratosis": "melanocytic nevus",
    "basal cell carcinoma": "vascular lesion",
    "actinic keratosis": "dermatofibroma",
}
RECIPES = (1, 2)


def folder_name(class_name: str) -> str:
    """Folder of a class: its name with spaces as underscores."""
    return class_name.replace(" ", "_")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1] of shape (size, size): bilinear upsampling of a coarse grid."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


def _lesion_outline(rng, xx, yy, cx, cy, r0: float, e: float, amp: float, harmonics: int):
    """A lesion's outline around (cx, cy): a randomly rotated ellipse (elongation ``e``) whose
    radius ``r0`` is modulated by ``harmonics`` random cosines. Returns (each pixel's elliptical
    distance from the centre, the outline's radius in that pixel's direction)."""
    rot = rng.uniform(0, np.pi)
    dx, dy = xx - cx, yy - cy
    xr = dx * np.cos(rot) + dy * np.sin(rot)
    yr = -dx * np.sin(rot) + dy * np.cos(rot)
    dist = np.sqrt((xr / e) ** 2 + (yr * e) ** 2)
    theta = np.arctan2(yr, xr)
    radius = np.ones_like(theta)
    for k in range(2, 2 + harmonics):
        radius += rng.uniform(0.3, 1.0) * amp * np.cos(k * theta + rng.uniform(0, 2 * np.pi))
    radius *= r0
    return xr, yr, dist, radius


def _jitter(rng: np.random.Generator, rgb, amount: float = 10.0, bright: float = 1.0) -> np.ndarray:
    return np.clip((np.asarray(rgb, np.float32) + rng.uniform(-amount, amount, 3)) * bright, 0, 255)


# class -> (border irregularity amplitude, number of harmonics, radius scale, elongation range)
_SHAPES = {
    "melanocytic nevus": (0.03, 3, 1.00, (0.9, 1.1)),
    "melanoma": (0.16, 7, 1.05, (0.8, 1.25)),
    "dermatofibroma": (0.04, 3, 0.80, (0.9, 1.1)),
    "vascular lesion": (0.04, 3, 0.95, (0.9, 1.1)),
    "basal cell carcinoma": (0.06, 4, 0.95, (0.85, 1.15)),
    "actinic keratosis": (0.10, 6, 1.05, (0.8, 1.2)),
    "benign keratosis": (0.02, 2, 1.00, (0.65, 0.8)),
}


def render(class_name: str, rng: np.random.Generator, size: int = DEFAULT_SIZE) -> np.ndarray:
    """One synthetic image (size, size, 3) uint8 of ``class_name``."""
    if class_name not in _SHAPES:
        raise ValueError(f"unknown synthetic class {class_name!r}; known: {', '.join(_SHAPES)}")
    S = size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    # background skin
    skin = _jitter(rng, (222, 182, 152), 14)
    img = np.ones((S, S, 3), np.float32) * skin
    img += _smooth_noise(rng, S, 4)[..., None] * 10
    # lesion geometry
    amp, harmonics, rscale, elong = _SHAPES[class_name]
    cx, cy = S / 2 + rng.normal(0, 0.06 * S, 2)
    r0 = S * rng.uniform(0.30, 0.40) * rscale
    e = rng.uniform(*elong)
    xr, yr, dist, radius = _lesion_outline(rng, xx, yy, cx, cy, r0, e, amp, harmonics)
    edge = 2.5 if class_name != "actinic keratosis" else 4.0
    alpha = 1 / (1 + np.exp(-(radius - dist) / edge))  # soft lesion mask
    rel = dist / np.maximum(radius, 1e-3)  # 0 at the centre, 1 at the border
    bright = rng.uniform(0.9, 1.1)
    tex = _smooth_noise(rng, S, 12)  # mid-frequency texture

    if class_name == "melanocytic nevus":
        c = _jitter(rng, (140, 92, 62), bright=bright)
        lesion = c * (1 - 0.18 * (1 - rel.clip(0, 1)))[..., None] + tex[..., None] * 4
    elif class_name == "melanoma":
        c = _jitter(rng, (72, 46, 36), bright=bright)
        blue = _jitter(rng, (105, 115, 135), bright=bright)
        blotch = (_smooth_noise(rng, S, 6) > 0.25).astype(np.float32)
        lesion = c * (1 - blotch[..., None]) + blue * blotch[..., None] + tex[..., None] * 12
    elif class_name == "dermatofibroma":
        c = _jitter(rng, (172, 112, 100), bright=bright)
        white = _jitter(rng, (232, 218, 208), 6)
        centre = (1 / (1 + np.exp((rel - 0.45) / 0.06)))[..., None]
        lesion = c * (1 - centre) + white * centre + tex[..., None] * 5
    elif class_name == "vascular lesion":
        c = _jitter(rng, (160, 40, 72), bright=bright)
        dark = _jitter(rng, (100, 18, 45), bright=bright)
        dots = np.zeros((S, S), np.float32)
        for _ in range(rng.integers(5, 10)):
            px, py = cx + rng.normal(0, r0 * 0.45, 2)
            rad = rng.uniform(0.06, 0.12) * r0
            dots = np.maximum(dots, ((xx - px) ** 2 + (yy - py) ** 2 < rad**2).astype(np.float32))
        lesion = c * (1 - dots[..., None]) + dark * dots[..., None] + tex[..., None] * 4
    elif class_name == "basal cell carcinoma":  # between dermatofibroma and vascular lesion, with vessels
        c = _jitter(rng, (166, 76, 86), bright=bright)
        red = _jitter(rng, (150, 25, 45), 8)
        vessels = np.zeros((S, S), np.float32)
        for _ in range(rng.integers(2, 4)):  # branching vessels: random walks from the centre
            x, y = cx, cy
            ang = rng.uniform(0, 2 * np.pi)
            for _ in range(int(r0 * 0.9)):
                ang += rng.normal(0, 0.35)
                x, y = x + np.cos(ang), y + np.sin(ang)
                ix, iy = int(round(x)), int(round(y))
                if 0 <= ix < S and 0 <= iy < S:
                    vessels[iy, ix] = 1
        lesion = c * (1 - vessels[..., None]) + red * vessels[..., None] + tex[..., None] * 4
    elif class_name == "actinic keratosis":  # between melanocytic nevus and vascular lesion, scaly
        c = _jitter(rng, (150, 66, 67), bright=bright)
        flakes = (rng.random((S, S)) > 0.97).astype(np.float32)
        lesion = c + (rng.normal(0, 8, (S, S)))[..., None] + flakes[..., None] * (225 - c)
    else:  # benign keratosis: between melanocytic nevus and melanoma, waxy stripes
        c = _jitter(rng, (106, 69, 49), bright=bright)
        stripes = np.sin((xr * 0.9 + tex * 6) * 0.9)
        lesion = c * (1 + 0.10 * stripes[..., None]) + tex[..., None] * 4
    img = img * (1 - alpha[..., None]) + lesion * alpha[..., None]
    img += rng.normal(0, 5, img.shape)
    return np.clip(img, 0, 255).round().astype(np.uint8)


def _vessels(rng: np.random.Generator, S: int, cx: float, cy: float, reach: float, count: int) -> np.ndarray:
    """Thin branching lines: random walks from the centre, 1 px wide."""
    out = np.zeros((S, S), np.float32)
    for _ in range(count):
        x, y = cx, cy
        ang = rng.uniform(0, 2 * np.pi)
        for _ in range(int(reach)):
            ang += rng.normal(0, 0.35)
            x, y = x + np.cos(ang), y + np.sin(ang)
            ix, iy = int(round(x)), int(round(y))
            if 0 <= ix < S and 0 <= iy < S:
                out[iy, ix] = 1
    return out


def render_v2(class_name: str, rng: np.random.Generator, size: int = V2_SIZE) -> tuple[np.ndarray, np.ndarray]:
    """Recipe 2: one image (size, size, 3) uint8 and its mask (size, size) uint8 (255 lesion, 128
    halo, 0 skin). A near-OOD class is drawn as its known twin (``V2_TWIN``) with another texture."""
    if class_name not in _SHAPES:
        raise ValueError(f"unknown synthetic class {class_name!r}; known: {', '.join(_SHAPES)}")
    look = V2_TWIN.get(class_name, class_name)
    S = size
    yy, xx = np.mgrid[0:S, 0:S].astype(np.float32)
    img = np.ones((S, S, 3), np.float32) * _jitter(rng, (222, 182, 152), 14)
    img += _smooth_noise(rng, S, 4)[..., None] * 10
    # small lesion anywhere in the middle half; the shape belongs to the look, so twins share it
    amp, harmonics, _, _ = _SHAPES[look]
    cx, cy = rng.uniform(0.25 * S, 0.75 * S, 2)
    r0 = S * rng.uniform(*V2_RADIUS)
    e = rng.uniform(0.85, 1.15)
    xr, yr, dist, radius = _lesion_outline(rng, xx, yy, cx, cy, r0, e, amp, harmonics)
    alpha = 1 / (1 + np.exp(-(radius - dist) / 1.5))
    rel = dist / np.maximum(radius, 1e-3)
    # boundary halo: the same pink ring for every class, fading out to V2_HALO × the radius
    halo = np.clip((V2_HALO - rel) / (V2_HALO - 1), 0, 1) * (rel > 0.9)
    erythema = _jitter(rng, (214, 128, 124), 8)
    img = img * (1 - 0.7 * halo[..., None]) + erythema * 0.7 * halo[..., None]
    bright = rng.uniform(0.9, 1.1)
    # the look: colour and coarse pattern of the known class
    if look == "melanocytic nevus":
        c = _jitter(rng, (140, 92, 62), bright=bright)
        lesion = c * (1 - 0.18 * (1 - rel.clip(0, 1)))[..., None]
    elif look == "melanoma":
        c = _jitter(rng, (72, 46, 36), bright=bright)
        blue = _jitter(rng, (105, 115, 135), bright=bright)
        blotch = (_smooth_noise(rng, S, 24) > 0.3).astype(np.float32)[..., None]
        lesion = c * (1 - blotch) + blue * blotch
    elif look == "dermatofibroma":
        c = _jitter(rng, (172, 112, 100), bright=bright)
        white = _jitter(rng, (232, 218, 208), 6)
        centre = (1 / (1 + np.exp((rel - 0.45) / 0.06)))[..., None]
        lesion = c * (1 - centre) + white * centre
    else:  # vascular lesion
        lesion = np.ones((S, S, 3), np.float32) * _jitter(rng, (160, 40, 72), bright=bright)
    # the fine texture: the class's own (near-OOD classes differ from their twin only here)
    dark = np.array([40, 20, 15], np.float32)
    u = xr + rng.uniform(0, 5)
    if class_name == "melanocytic nevus":  # pigment network: dark grid lines, period 5 px
        grid = np.maximum(np.cos(2 * np.pi * u / 5), np.cos(2 * np.pi * (yr + rng.uniform(0, 5)) / 5)) > 0.6
        lesion = lesion * (1 - 0.35 * grid[..., None])
    elif class_name == "benign keratosis":  # parallel stripes, period 5 px (the network without its cross lines)
        lesion = lesion * (1 - 0.35 * (np.cos(2 * np.pi * u / 5) > 0.6)[..., None])
    elif class_name == "melanoma":  # dark globules
        dots = np.zeros((S, S), np.float32)
        for px, py in zip(*(cx + rng.uniform(-1, 1, (2, 40)) * r0)):
            dots = np.maximum(dots, ((xx - px) ** 2 + (yy - py) ** 2 < 1.5**2).astype(np.float32))
        lesion = lesion * (1 - dots[..., None]) + dark * dots[..., None]
    elif class_name == "vascular lesion":  # dark red lacunae
        dots = np.zeros((S, S), np.float32)
        for _ in range(rng.integers(5, 10)):
            px, py = cx + rng.normal(0, r0 * 0.45, 2)
            rad = rng.uniform(0.06, 0.12) * r0
            dots = np.maximum(dots, ((xx - px) ** 2 + (yy - py) ** 2 < rad**2).astype(np.float32))
        lesion = lesion * (1 - dots[..., None]) + _jitter(rng, (100, 18, 45), bright=bright) * dots[..., None]
    elif class_name == "basal cell carcinoma":  # thin branching vessels instead of lacunae
        ves = _vessels(rng, S, cx, cy, r0 * 0.9, int(rng.integers(3, 5)))
        lesion = lesion * (1 - ves[..., None]) + _jitter(rng, (110, 15, 35), 8) * ves[..., None]
    elif class_name == "actinic keratosis":  # white scale flakes
        flakes = (rng.random((S, S)) > 0.96).astype(np.float32)[..., None]
        lesion = lesion * (1 - flakes) + 235 * flakes
    lesion = lesion + rng.normal(0, 3, (S, S))[..., None]
    img = img * (1 - alpha[..., None]) + lesion * alpha[..., None]
    img += rng.normal(0, 4, img.shape)
    mask = np.where(alpha > 0.5, 255, np.where(halo > 0.05, 128, 0)).astype(np.uint8)
    return np.clip(img, 0, 255).round().astype(np.uint8), mask


def split_spec(name: str = "synthetic-lesions", recipe: int = 1) -> dict:
    """The split file of the generated benchmark (folder partition: train/, test/, ood/)."""
    return {
        "format": "hvl-split",
        "format_version": 1,
        "name": name,
        "description": f"Synthetic cartoon lesions (recipe {recipe}) generated by `hvl synth` (hvl_tools/synthetic.py); "
        "not medical images.",
        "provenance": "ours (synthetic)",
        "id_classes": [{"name": c, "folder": folder_name(c)} for c in ID_CLASSES],
        "ood_classes": [{"name": c, "folder": folder_name(c)} for c in OOD_CLASSES],
        "partition": {"rule": "folders", "train": "train", "test": "test", "ood": "ood"},
    }


def image_rng(seed: int, split: str, class_name: str, index: int, recipe: int = 1) -> np.random.Generator:
    """The generator of one image: it depends on nothing but these (not on how many are made)."""
    key = [seed, SPLITS[split], (ID_CLASSES + OOD_CLASSES).index(class_name), index, recipe]
    return np.random.default_rng(key)


def render_image(
    class_name: str, rng: np.random.Generator, size: int | None = None, recipe: int = 1
) -> tuple[np.ndarray, np.ndarray | None]:
    """(image, mask or None) of one recipe; ``size`` None: the recipe's default side."""
    if recipe not in RECIPES:
        raise ValueError(f"recipe must be one of {RECIPES}, got {recipe}")
    if recipe == 1:
        return render(class_name, rng, size or DEFAULT_SIZE), None
    return render_v2(class_name, rng, size or V2_SIZE)


def generate(
    outdir: str | Path,
    seed: int = 0,
    train_per_class: int = 40,
    test_per_class: int = 25,
    ood_per_class: int = 25,
    size: int | None = None,
    progress: bool = False,
    recipe: int = 1,
) -> dict:
    """Write the benchmark under ``outdir``: ``train/<class>/``, ``test/<class>/`` (known classes),
    ``ood/<class>/`` (near-OOD classes), ``split.json`` and ``README.md`` (recipe 2 also
    ``masks/<split>/<class>/``, same file names). Returns the counts."""
    out = Path(outdir)
    size = size or (DEFAULT_SIZE if recipe == 1 else V2_SIZE)
    jobs = []
    for split, classes, per in (
        ("train", ID_CLASSES, train_per_class),
        ("test", ID_CLASSES, test_per_class),
        ("ood", OOD_CLASSES, ood_per_class),
    ):
        for c in classes:
            for i in range(per):
                jobs.append((split, c, i))
    it = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="synth", unit="img")
    counts: dict = {}
    for split, c, i in it:
        img, mask = render_image(c, image_rng(seed, split, c, i, recipe), size, recipe)
        d = out / split / folder_name(c)
        d.mkdir(parents=True, exist_ok=True)
        fname = f"{folder_name(c)}_{split}_{i:04d}.png"
        Image.fromarray(img).save(d / fname, optimize=False)
        if mask is not None:
            md = out / "masks" / split / folder_name(c)
            md.mkdir(parents=True, exist_ok=True)
            Image.fromarray(mask).save(md / fname, optimize=False)
        counts.setdefault(split, {}).setdefault(c, 0)
        counts[split][c] += 1
    name = "synthetic-lesions" if recipe == 1 else f"synthetic-lesions-v{recipe}"
    (out / "split.json").write_text(json.dumps(split_spec(name, recipe), indent=2) + "\n")
    info = {"seed": seed, "size": size, "recipe_version": recipe, "counts": counts}
    (out / "synth.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(
        "# Synthetic lesion benchmark (generated)\n\n"
        f"Generated by `hvl synth` (seed {seed}, {size}×{size} px, recipe v{recipe}). Cartoon images, "
        "**not medical data**; see `hvl_tools/synthetic.py` for the recipe.\n\n"
        "- `train/<class>/`, `test/<class>/`: known classes " + ", ".join(ID_CLASSES) + "\n"
        "- `ood/<class>/`: near-OOD classes "
        + ", ".join(OOD_CLASSES)
        + "\n"
        + ("- `masks/<split>/<class>/`: lesion masks (255 lesion, 128 halo, 0 skin)\n" if recipe == 2 else "")
        + "- `split.json`: the split file (`hvl train --split split.json --data-root .`)\n"
    )
    return info


def contact_sheet(
    path: str | Path | None, per_class: int = 6, size: int | None = None, seed: int = 0, recipe: int = 1
) -> Image.Image:
    """A grid of examples, one row per class (ID rows first), saved to ``path`` when given."""
    rows = []
    for c in ID_CLASSES + OOD_CLASSES:
        split = "train" if c in ID_CLASSES else "ood"
        ims = [render_image(c, image_rng(seed, split, c, i, recipe), size, recipe)[0] for i in range(per_class)]
        rows.append(np.concatenate(ims, axis=1))
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
    return sheet
