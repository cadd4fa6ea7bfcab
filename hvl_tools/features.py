"""Feature cache: encode each image's ``1 + n² + 4n²`` crops once, train and evaluate on the cache.

The encoder is frozen, so its outputs depend only on (backbone weights, preprocessing, n, image
bytes, view). Each image's raw crop embeddings ``(1 + n² + 4n², d)`` float32 are stored as one
small safetensors file::

    CACHE/<backbone>-<weights fingerprint>/<preprocessing key>/<sha[:2]>/<sha256 of file bytes>.safetensors

where the preprocessing key hashes the detail mode, image size, n, the view (``orig``, ``hflip``,
``vflip``), the numeric precision of the encoder (fp32 on CPU, bf16/fp16 autocast on CUDA) and a
crop-geometry version. A second run, or another hyper-parameter setting of the head, reuses
every file. The cache lives in ``$HVL_CACHE_DIR`` or ``.hvl_cache/`` in the current directory.
Entries are written atomically; an unreadable or mismatched entry is re-encoded.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
from PIL import Image, ImageOps

from hvl_core.files import atomic_write, sha256_bytes
from hvl_core.geometry import hierarchical_crops, num_crops
from hvl_core.images import ImageError, load_image
from hvl_tools.config import default_cache_dir

#: bump when the crop geometry or the stored layout changes
GEOMETRY_VERSION = "crops-v1"
VIEWS = ("orig", "hflip", "vflip")


def backbone_fingerprint(backbone) -> str:
    """A short hash of the backbone's weights (shapes plus the first and last 256 values of every
    tensor), so caches of two different weight files never mix."""
    cached = backbone.__dict__.get("_hvl_fingerprint")
    if cached:
        return cached
    h = hashlib.sha256(backbone.name.encode())
    for mod in backbone.modules():
        for k, t in sorted(mod.state_dict().items()):
            flat = t.detach().reshape(-1)
            h.update(k.encode())
            h.update(str(tuple(t.shape)).encode())
            if flat.numel():
                sample = torch.cat([flat[:256], flat[-256:]]).float().cpu().contiguous()
                h.update(sample.numpy().tobytes())
    fp = h.hexdigest()[:12]
    backbone.__dict__["_hvl_fingerprint"] = fp
    return fp


def _slug(s: str) -> str:
    return re.sub(r"[^A-Za-z0-9._-]+", "_", s)[:60]


def precision_of(device: torch.device) -> str:
    if device.type == "cuda":
        return "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    return "fp32"


def apply_view(image: Image.Image, view: str) -> Image.Image:
    if view == "orig":
        return image
    if view == "hflip":
        return ImageOps.mirror(image)
    if view == "vflip":
        return ImageOps.flip(image)
    raise ValueError(f"unknown view {view!r}; choose from {VIEWS}")


@dataclass
class FeatureSet:
    """Cached crop embeddings of a list of images (the readable ones)."""

    v: torch.Tensor  # (N, 1 + n² + 4n², d) float32, raw encoder outputs
    paths: list[str]
    labels: torch.Tensor  # (N,) long; -1 for unlabelled
    groups: list[str]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    hits: int = 0  # how many came from the cache

    def __len__(self) -> int:
        return len(self.paths)

    @staticmethod
    def concat(sets: Sequence[FeatureSet]) -> FeatureSet:
        return FeatureSet(
            torch.cat([s.v for s in sets]),
            [p for s in sets for p in s.paths],
            torch.cat([s.labels for s in sets]),
            [g for s in sets for g in s.groups],
            [x for s in sets for x in s.skipped],
            sum(s.hits for s in sets),
        )


class FeatureCache:
    """Where encoded crops are kept. ``enabled=False`` encodes every time and writes nothing."""

    def __init__(self, root: str | os.PathLike | None = None, enabled: bool = True):
        self.root = Path(root) if root is not None else default_cache_dir()
        self.enabled = enabled

    def folder(self, model, view: str = "orig") -> Path:
        key = {
            "detail": model.detail,
            "image_size": model.backbone.image_size,
            "n": model.n,
            "view": view,
            "precision": precision_of(model.device),
            "geometry": GEOMETRY_VERSION,
        }
        digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
        bb = f"{_slug(model.backbone.name)}-{backbone_fingerprint(model.backbone)}"
        return self.root / bb / f"n{model.n}-{model.detail}-{view}-{digest}"

    def path(self, folder: Path, sha: str) -> Path:
        return folder / sha[:2] / f"{sha}.safetensors"

    def get(self, folder: Path, sha: str, shape: tuple[int, int]) -> torch.Tensor | None:
        if not self.enabled:
            return None
        p = self.path(folder, sha)
        if not p.is_file():
            return None
        from safetensors.torch import load_file

        try:
            v = load_file(str(p))["v"]
        except Exception:  # corrupt entry (e.g. a full disk): re-encode it
            return None
        return v if tuple(v.shape) == shape and v.dtype == torch.float32 else None

    def put(self, folder: Path, sha: str, v: torch.Tensor) -> None:
        if not self.enabled:
            return
        from safetensors.torch import save

        p = self.path(folder, sha)
        p.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(p, save({"v": v.detach().float().cpu().contiguous()}, metadata={"sha256": sha}))


class _CropDataset(torch.utils.data.Dataset):
    """Reads a file, hashes it, and (when not cached) cuts its crops; runs in DataLoader workers."""

    def __init__(
        self, paths, n, size, detail, view, cache: FeatureCache, folder: Path, shape, images_only: bool = False
    ):
        self.paths, self.n, self.size, self.detail, self.view = paths, n, size, detail, view
        self.cache, self.folder, self.shape = cache, folder, shape
        self.images_only = images_only  # return the (viewed) PIL image; crops are cut on the GPU

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, i):
        path = self.paths[i]
        try:
            data = Path(path).read_bytes()
        except OSError as e:
            return i, None, None, None, f"cannot read the file ({e.strerror or e})"
        sha = sha256_bytes(data)
        hit = self.cache.get(self.folder, sha, self.shape)
        if hit is not None:
            return i, sha, hit, None, None
        try:
            img = load_image(data).image
        except ImageError as e:
            return i, sha, None, None, str(e).replace("the image", Path(path).name, 1)
        img = apply_view(img, self.view)
        if self.images_only:
            return i, sha, None, img, None
        return i, sha, None, hierarchical_crops(img, self.n, self.size, self.detail), None


def _collate(batch):
    return batch


def extract_features(
    model,
    paths: Sequence,
    labels: Sequence[int | None] | None = None,
    groups: Sequence[str] | None = None,
    cache: FeatureCache | None = None,
    view: str = "orig",
    batch_size: int = 16,
    workers: int | None = None,
    progress: bool = True,
    desc: str = "encoding",
    strict: bool = False,
) -> FeatureSet:
    """Crop embeddings of every readable image in ``paths`` (from the cache when there).

    Unreadable images are skipped and listed in ``FeatureSet.skipped`` (``strict=True`` raises
    ``ImageError`` instead). Crops of ``batch_size`` images go through the encoder together
    (``model.encode_crops``; on the GPU when the model is there)."""
    cache = cache if cache is not None else FeatureCache(enabled=False)
    paths = [str(p) for p in paths]
    labels = list(labels) if labels is not None else [None] * len(paths)
    groups = list(groups) if groups is not None else [""] * len(paths)
    n, size = model.n, model.backbone.image_size
    M = num_crops(n)
    folder = cache.folder(model, view)
    if workers is None:
        workers = min(8, max(0, (os.cpu_count() or 1) - 1)) if model.device.type == "cuda" else 0
    on_device = bool(getattr(model, "crops_on_device", False))
    ds = _CropDataset(
        paths, n, size, model.detail, view, cache, folder, (M, model.backbone.embed_dim), images_only=on_device
    )
    loader = torch.utils.data.DataLoader(
        ds, batch_size=batch_size, shuffle=False, num_workers=workers, collate_fn=_collate
    )
    out: dict[int, torch.Tensor] = {}
    shas: dict[int, str] = {}
    skipped: list[tuple[str, str]] = []
    hits = 0
    bar = None
    if progress:
        from tqdm import tqdm

        bar = tqdm(total=len(paths), desc=desc, unit="img", leave=False)
    for batch in loader:
        todo = []
        for i, sha, hit, crops, err in batch:
            if err is not None:
                if strict:
                    raise ImageError(f"{paths[i]}: {err}")
                skipped.append((paths[i], err))
            elif hit is not None:
                out[i] = hit
                hits += 1
            else:
                todo.append((i, sha, crops))
        if todo:
            if on_device:  # upsample and cut where the encoder runs
                todo = [
                    (i, sha, hierarchical_crops(img, n, size, model.detail, device=model.device))
                    for i, sha, img in todo
                ]
            v = model.encode_crops(torch.cat([c for _, _, c in todo])).float().cpu()
            v = v.view(len(todo), M, -1)
            for (i, sha, _), vi in zip(todo, v):
                vi = vi.clone()
                cache.put(folder, sha, vi)
                out[i] = vi
                shas[i] = sha
        if bar is not None:
            bar.update(len(batch))
    if bar is not None:
        bar.close()
    keep = sorted(out)
    d = out[keep[0]].shape[-1] if keep else model.backbone.embed_dim
    v = torch.stack([out[i] for i in keep]) if keep else torch.zeros(0, M, d)
    lab = torch.tensor([-1 if labels[i] is None else int(labels[i]) for i in keep], dtype=torch.long)
    return FeatureSet(
        v=v, paths=[paths[i] for i in keep], labels=lab, groups=[groups[i] for i in keep], skipped=skipped, hits=hits
    )


def features_of_items(
    model, items, cache: FeatureCache | None = None, views: Sequence[str] = ("orig",), **kw
) -> FeatureSet:
    """``extract_features`` for ``hvl_tools.data.Item`` lists; extra views are appended as extra samples."""
    sets = []
    desc = kw.pop("desc", "encoding")
    for view in views:
        fs = extract_features(
            model,
            [it.path for it in items],
            [it.label for it in items],
            [it.group for it in items],
            cache=cache,
            view=view,
            desc=desc if view == "orig" else f"{desc} ({view})",
            **kw,
        )
        if view != "orig":
            fs.skipped = []  # already reported with the original view
        sets.append(fs)
    return FeatureSet.concat(sets) if len(sets) > 1 else sets[0]
