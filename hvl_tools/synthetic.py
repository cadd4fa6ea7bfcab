"""A small synthetic OOD benchmark that ships with the code (``hvl synth OUTDIR``).

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
- lesion: a blob centred near the middle (offset σ 6% of the side), radius 22–32% of the side,
  elongation 0.8–1.2, random rotation; its border is ``r(θ) = r·(1 + Σ_k a_k cos(kθ + φ_k))``
  with a class-specific irregularity, blended with a soft edge;
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
RECIPE_VERSION = 1


def folder_name(class_name: str) -> str:
    """Folder of a class: its name with spaces as underscores."""
    return class_name.replace(" ", "_")


def _smooth_noise(rng: np.random.Generator, size: int, cells: int) -> np.ndarray:
    """A smooth random field in [-1, 1] of shape (size, size): bilinear upsampling of a coarse grid."""
    coarse = rng.uniform(-1, 1, (cells, cells)).astype(np.float32)
    img = Image.fromarray(coarse, mode="F").resize((size, size), Image.BILINEAR)
    return np.asarray(img, dtype=np.float32)


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
            dots = np.maximum(dots, ((xx - px) ** 2 + (yy - py) ** 2 < rad ** 2).astype(np.float32))
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


def split_spec(name: str = "synthetic-lesions") -> dict:
    """The split file of the generated benchmark (folder partition: train/, test/, ood/)."""
    return {
        "format": "hvl-split", "format_version": 1, "name": name,
        "description": "Synthetic cartoon lesions generated by `hvl synth` (hvl_core/synthetic.py); not medical images.",
        "provenance": "ours (synthetic)",
        "id_classes": [{"name": c, "folder": folder_name(c)} for c in ID_CLASSES],
        "ood_classes": [{"name": c, "folder": folder_name(c)} for c in OOD_CLASSES],
        "partition": {"rule": "folders", "train": "train", "test": "test", "ood": "ood"},
    }


def generate(outdir: str | Path, seed: int = 0, train_per_class: int = 40, test_per_class: int = 25,
             ood_per_class: int = 25, size: int = DEFAULT_SIZE, progress: bool = False) -> dict:
    """Write the benchmark under ``outdir``: ``train/<class>/``, ``test/<class>/`` (known classes),
    ``ood/<class>/`` (near-OOD classes), ``split.json`` and ``README.md``. Returns the counts."""
    out = Path(outdir)
    jobs = []
    for split, classes, per in (("train", ID_CLASSES, train_per_class), ("test", ID_CLASSES, test_per_class),
                                ("ood", OOD_CLASSES, ood_per_class)):
        for c in classes:
            for i in range(per):
                jobs.append((split, c, i))
    it = jobs
    if progress:
        from tqdm import tqdm

        it = tqdm(jobs, desc="synth", unit="img")
    all_classes = ID_CLASSES + OOD_CLASSES
    counts: dict = {}
    for split, c, i in it:
        rng = np.random.default_rng([seed, SPLITS[split], all_classes.index(c), i, RECIPE_VERSION])
        d = out / split / folder_name(c)
        d.mkdir(parents=True, exist_ok=True)
        Image.fromarray(render(c, rng, size)).save(d / f"{folder_name(c)}_{split}_{i:04d}.png", optimize=False)
        counts.setdefault(split, {}).setdefault(c, 0)
        counts[split][c] += 1
    (out / "split.json").write_text(json.dumps(split_spec(), indent=2) + "\n")
    info = {"seed": seed, "size": size, "recipe_version": RECIPE_VERSION, "counts": counts}
    (out / "synth.json").write_text(json.dumps(info, indent=2) + "\n")
    (out / "README.md").write_text(
        "# Synthetic lesion benchmark (generated)\n\n"
        f"Generated by `hvl synth` (seed {seed}, {size}×{size} px, recipe v{RECIPE_VERSION}). Cartoon images, "
        "**not medical data**; see `hvl_core/synthetic.py` for the recipe.\n\n"
        "- `train/<class>/`, `test/<class>/`: known classes " + ", ".join(ID_CLASSES) + "\n"
        "- `ood/<class>/`: near-OOD classes " + ", ".join(OOD_CLASSES) + "\n"
        "- `split.json`: the split file (`hvl train --split split.json --data-root .`)\n")
    return info


def contact_sheet(path: str | Path | None, per_class: int = 6, size: int = DEFAULT_SIZE, seed: int = 0) -> Image.Image:
    """A grid of examples, one row per class (ID rows first), saved to ``path`` when given."""
    rows = []
    all_classes = ID_CLASSES + OOD_CLASSES
    for c in all_classes:
        split = "train" if c in ID_CLASSES else "ood"
        ims = [render(c, np.random.default_rng([seed, SPLITS[split], all_classes.index(c), i, RECIPE_VERSION]), size)
               for i in range(per_class)]
        rows.append(np.concatenate(ims, axis=1))
    sheet = Image.fromarray(np.concatenate(rows, axis=0))
    if path is not None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        sheet.save(path)
    return sheet
