"""HVL head checkpoints: ``head.safetensors`` (W, b0, b2) + ``hvl.json`` (everything to rebuild it).

Never unpickles. Written atomically (temp file + rename; the JSON, written last, records the
weights' sha256, so a crash between the two files is detected on load). Loads from a local
folder/file or from the Hugging Face hub (``hf_hub_download``).
"""
from __future__ import annotations

import datetime as _dt
import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .head import HVLConfig, HVLHead
from .presets import ClassSet

WEIGHTS_NAME = "head.safetensors"
CONFIG_NAME = "hvl.json"
FORMAT = "hvl-head"
FORMAT_VERSION = 1


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, foreign or mismatched."""


@dataclass
class Checkpoint:
    state: dict[str, torch.Tensor]
    meta: dict
    source: str

    @property
    def config(self) -> HVLConfig:
        return HVLConfig.from_dict(self.meta["config"])

    @property
    def classes(self) -> ClassSet:
        return ClassSet.from_dict(self.meta["classes"])

    @property
    def backbone(self) -> str:
        return self.meta["backbone"]

    @property
    def threshold(self) -> float | None:
        return self.meta.get("threshold")


def _versions() -> dict:
    import numpy
    import safetensors

    from . import __version__

    v = {"hvl_core": __version__, "torch": torch.__version__, "safetensors": safetensors.__version__,
         "numpy": numpy.__version__}
    try:
        import open_clip

        v["open_clip"] = open_clip.__version__
    except ImportError:
        pass
    return v


def _atomic_write(path: Path, data: bytes) -> None:
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def save_checkpoint(directory: str | os.PathLike, head: HVLHead, backbone: str, classes: ClassSet,
                    threshold: float | None = None, detail: str = "upsample", extra: dict | None = None) -> Path:
    """Write ``directory/head.safetensors`` and ``directory/hvl.json``; returns the folder."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()}
    blob = st_save(state, metadata={"format": FORMAT})
    meta = {
        "format": FORMAT, "format_version": FORMAT_VERSION, "backbone": backbone, "embed_dim": head.dim,
        "num_classes": head.num_classes, "classes": classes.to_dict(), "config": head.config.to_dict(),
        "detail": detail, "threshold": None if threshold is None else float(threshold),
        "weights_sha256": hashlib.sha256(blob).hexdigest(), "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"), **(extra or {}),
    }
    _atomic_write(d / WEIGHTS_NAME, blob)
    _atomic_write(d / CONFIG_NAME, json.dumps(meta, indent=2).encode())
    return d


def _resolve(source: str) -> tuple[Path, Path]:
    p = Path(source)
    if p.is_dir():
        return p / WEIGHTS_NAME, p / CONFIG_NAME
    if p.is_file():
        if p.name.endswith(".json"):
            return p.parent / WEIGHTS_NAME, p
        return p, p.parent / CONFIG_NAME
    repo = source[len("hf://"):] if source.startswith("hf://") else source
    if source.startswith(("/", ".", "~")) or repo.count("/") != 1:
        raise CheckpointError(f"checkpoint {source}: no such file or folder (a hub checkpoint is written org/name)")
    from huggingface_hub import hf_hub_download

    from .hub import offline_unless_reachable

    try:
        with offline_unless_reachable():
            cfg = hf_hub_download(repo, CONFIG_NAME)
            weights = hf_hub_download(repo, WEIGHTS_NAME)
    except Exception as e:  # the hub client raises many kinds; all mean "cannot have it"
        raise CheckpointError(f"checkpoint {repo}: could not download it from the Hugging Face hub "
                              f"({type(e).__name__}); pass a local checkpoint folder instead") from e
    return Path(weights), Path(cfg)


def load_checkpoint(source: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint from a folder, one of its files, or a hub repo id."""
    source = os.fspath(source)
    weights, cfg = _resolve(source)
    for f in (weights, cfg):
        if not f.is_file():
            raise CheckpointError(f"checkpoint {source}: {f.name} is missing")
    try:
        meta = json.loads(cfg.read_text())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {source}: not an HVL head checkpoint ({cfg.name} lacks format={FORMAT!r})")
    if meta.get("format_version", 0) > FORMAT_VERSION:
        raise CheckpointError(f"checkpoint {source}: format version {meta['format_version']} is newer than this "
                              f"hvl_core reads ({FORMAT_VERSION}); upgrade hvl_core")
    blob = weights.read_bytes()
    if meta.get("weights_sha256") and hashlib.sha256(blob).hexdigest() != meta["weights_sha256"]:
        raise CheckpointError(f"checkpoint {source}: {weights.name} does not match the sha256 recorded in "
                              f"{cfg.name} (truncated, corrupt or from another checkpoint)")
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"checkpoint {source}: {weights.name} is not a readable safetensors file ({e})") from None
    try:
        config = HVLConfig.from_dict(meta["config"])
        ClassSet.from_dict(meta["classes"])
        d, C = int(meta["embed_dim"]), int(meta["num_classes"])
        meta["backbone"]
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is incomplete or invalid ({e})") from None
    rows = C + config.num_negatives
    expected = {"W": (d, d), "b0": (rows, d), "b2": (rows, d)}
    if set(state) != set(expected):
        raise CheckpointError(f"checkpoint {source}: expected tensors {sorted(expected)}, found {sorted(state)}")
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise CheckpointError(f"checkpoint {source}: {k} has shape {tuple(state[k].shape)}, expected {shape}")
    return Checkpoint(state=state, meta=meta, source=source)


def head_from_checkpoint(ck: Checkpoint, **overrides) -> HVLHead:
    """The trained head; ``overrides`` change options (``n`` too: W, b0, b2 do not depend on it)."""
    head = HVLHead(ck.meta["embed_dim"], ck.meta["num_classes"], **{**ck.config.to_dict(), **overrides})
    head.load_state_dict(ck.state)
    return head
