"""HVL head checkpoints, laid out as the Hugging Face hub expects: ``model.safetensors`` (W, b0, b2),
``config.json`` (everything to rebuild the head: backbone, classes, options, threshold, the weights'
sha256) and a model card ``README.md``.

The layout follows ``huggingface_hub.PyTorchModelHubMixin`` (same file names, so hub tooling and
``snapshot_download`` see a normal model repo), but loading is our own: the mixin falls back to
unpickling ``pytorch_model.bin`` and checks neither a hash nor the config. Here nothing is ever
unpickled, the weights must match the sha256 recorded in the config, and every config field is
type- and range-checked, so a bad file gives one sentence (``CheckpointError``), never a
traceback. Folders of the first layout (``head.safetensors`` + ``hvl.json``) still load.

Written atomically (temp file + rename; the config, written after the weights, records their
sha256, so a crash between the two is detected on load). Loads from a local folder/file or from
the hub (``hf_hub_download``).
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import importlib.metadata
import json
import os
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .checkpoint_fields import (  # noqa: F401  (the bounds and file names are this module's public names too)
    CARD_NAME,
    CONFIG_NAME,
    FORMAT_VERSION,
    LAYOUTS,
    LEGACY_CONFIG_NAME,
    LEGACY_WEIGHTS_NAME,
    MAX_BACKBONE_NAME,
    MAX_CALIBRATION_SCORES,
    MAX_CLASSES,
    MAX_CONFIG_BYTES,
    MAX_EMBED_DIM,
    MAX_N,
    MAX_TEXT,
    WEIGHTS_NAME,
    reject_constant,
    validate_meta,
)
from .files import atomic_write
from .head import HVLConfig, HVLHead, check_threshold
from .hub import is_hub_id, offline_unless_reachable
from .model_card import model_card
from .presets import ClassSet
from .scope import SCOPE_WEIGHTS, ScopeDetector, read_scope, scope_blob

FORMAT = "hvl-head"


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, foreign or mismatched."""


@dataclass
class Checkpoint:
    state: dict[str, torch.Tensor]
    meta: dict
    source: str
    #: sha256 of the weights file as read (not as claimed)
    weights_sha256: str = ""
    #: stage 1 of HVL_SPEC §11 (in scope?), when the checkpoint ships one
    scope: ScopeDetector | None = None

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

    @property
    def calibration_scores(self) -> dict[str, list[float]]:
        """{score name: the known calibration images' scores} for every score the checkpoint
        was calibrated in (conformal p-values); empty when it ships none."""
        cal = self.meta.get("calibration") or {}
        out = {s: list(e["scores"]) for s, e in (cal.get("by_score") or {}).items()}
        if cal.get("scores"):
            out[cal["score"]] = list(cal["scores"])
        return out

    def calibrated_threshold(self, score: str) -> float | None:
        """The calibrated threshold for ``score``: the checkpoint's own for its score, else one
        calibrated on the same images for another score (``calibration.by_score``), else None."""
        if score == self.config.score:
            return self.threshold
        entry = ((self.meta.get("calibration") or {}).get("by_score") or {}).get(score)
        return None if entry is None else float(entry["threshold"])

    def fingerprint(self) -> str:
        """sha256 of everything that changes a decision: the weights, backbone, embedding width,
        classes and prompts, head options, detail mode, threshold and calibration scores (p-values). Two checkpoints with the
        same weights but another threshold or other class names differ; use it as a cache key."""
        m = self.meta
        decision = {
            "weights_sha256": self.weights_sha256,
            "backbone": m["backbone"],
            "embed_dim": m["embed_dim"],
            "num_classes": m["num_classes"],
            "classes": m["classes"],
            "config": m["config"],
            "detail": m.get("detail", "upsample"),
            "threshold": m.get("threshold"),
            "calibration_scores": self.calibration_scores,
            "scope": m.get("scope"),
        }
        return hashlib.sha256(json.dumps(decision, sort_keys=True, allow_nan=False).encode()).hexdigest()


def _versions() -> dict:
    import numpy
    import safetensors

    from . import __version__

    v = {
        "hvl_core": __version__,
        "torch": torch.__version__,
        "safetensors": safetensors.__version__,
        "numpy": numpy.__version__,
    }
    try:  # the installed version, without importing open_clip (and transformers with it)
        v["open_clip"] = importlib.metadata.version("open_clip_torch")
    except importlib.metadata.PackageNotFoundError:
        pass
    return v


def save_checkpoint(
    directory: str | os.PathLike,
    head: HVLHead,
    backbone: str,
    classes: ClassSet,
    threshold: float | None = None,
    detail: str = "upsample",
    extra: dict | None = None,
    scope: ScopeDetector | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` into
    ``directory`` (and ``scope.safetensors`` with a stage 1, HVL_SPEC §11); returns the folder."""
    if threshold is not None:  # finite and within the score's range: never NaN in the JSON
        threshold = check_threshold(threshold, head.config, head.num_classes)
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    state = {k: v.detach().float().cpu().contiguous() for k, v in head.state_dict().items()}
    blob = st_save(state, metadata={"format": FORMAT})
    meta = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "backbone": backbone,
        "embed_dim": head.dim,
        "num_classes": head.num_classes,
        "classes": classes.to_dict(),
        "config": head.config.to_dict(),
        "detail": detail,
        "threshold": None if threshold is None else float(threshold),
        "weights_sha256": hashlib.sha256(blob).hexdigest(),
        "versions": _versions(),
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        **(extra or {}),
    }
    if scope is not None:
        scope_bytes, meta["scope"] = scope_blob(scope)
        atomic_write(d / SCOPE_WEIGHTS, scope_bytes)
    text = json.dumps(meta, indent=2, allow_nan=False)  # never write NaN: it is not JSON
    atomic_write(d / WEIGHTS_NAME, blob)
    atomic_write(d / CONFIG_NAME, text.encode())
    atomic_write(d / CARD_NAME, model_card(meta).encode())
    return d


def _local_pair(p: Path) -> tuple[Path, Path] | None:
    """(weights, config) for a local folder or one file of it; None if ``p`` does not exist."""
    if p.is_dir():
        for cfg, weights in LAYOUTS:
            if (p / cfg).is_file():
                return p / weights, p / cfg
        return p / WEIGHTS_NAME, p / CONFIG_NAME
    if not p.is_file():
        return None
    for cfg, weights in LAYOUTS:
        if p.name == cfg:
            return p.parent / weights, p
        if p.name == weights:
            return p, p.parent / cfg
    if p.suffix == ".json":
        return p.parent / WEIGHTS_NAME, p
    return p, next((p.parent / c for c, _ in LAYOUTS if (p.parent / c).is_file()), p.parent / CONFIG_NAME)


def hub_files(repo: str) -> tuple[Path, Path]:
    """Download a hub checkpoint's (weights, config), whichever layout the repo has, and its
    ``scope.safetensors`` beside them when it has one; never a local folder of the same name."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        with offline_unless_reachable():
            for cfg_name, weights_name in LAYOUTS:
                try:
                    cfg = hf_hub_download(repo, cfg_name)
                except RemoteEntryNotFoundError:  # the repo exists without this layout
                    continue
                weights = Path(hf_hub_download(repo, weights_name))
                if _has_scope(Path(cfg)):  # stage 1 (§11): beside the weights in the snapshot
                    hf_hub_download(repo, SCOPE_WEIGHTS)
                return weights, Path(cfg)
    except Exception as e:  # the hub client raises many kinds; all mean "cannot have it"
        raise CheckpointError(
            f"checkpoint {repo}: could not download it from the Hugging Face hub "
            f"({type(e).__name__}); pass a local checkpoint folder instead"
        ) from e
    raise CheckpointError(f"checkpoint {repo}: the hub repo has neither {CONFIG_NAME} nor {LEGACY_CONFIG_NAME}")


def _has_scope(cfg: Path) -> bool:
    try:
        return cfg.stat().st_size <= MAX_CONFIG_BYTES and "scope" in json.loads(cfg.read_bytes())
    except (OSError, ValueError):
        return False  # _read_config says what is wrong with it


def _resolve(source: str) -> tuple[Path, Path, str]:
    """(weights, config, the checkpoint's name): a local folder is named by its own name, never
    its path on this machine (answers and messages show the name); a hub repo by its id."""
    pair = _local_pair(Path(source))
    if pair is not None:
        return *pair, os.path.basename(os.path.abspath(pair[1].parent))
    repo = source[len("hf://") :] if source.startswith("hf://") else source
    if not is_hub_id(repo):
        raise CheckpointError(f"checkpoint {source}: no such file or folder (a hub checkpoint is written org/name)")
    return *hub_files(repo), repo


def _read_config(cfg: Path, source: str) -> dict:
    if cfg.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        meta = json.loads(cfg.read_bytes().decode("utf-8"), parse_constant=reject_constant)
    except RecursionError:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {source}: not an HVL head checkpoint ({cfg.name} lacks format={FORMAT!r})")
    return meta


def _expected_shapes(meta: dict) -> dict[str, tuple[int, int]]:
    d, rows = meta["embed_dim"], meta["num_classes"] + meta["config"].get("num_negatives", 0)
    return {"W": (d, d), "b0": (rows, d), "b2": (rows, d)}


def load_checkpoint(source: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint from a folder, one of its files, or a hub repo id. Its
    ``source`` (and every message) names the folder or repo, never a path."""
    weights, cfg, source = _resolve(os.fspath(source))
    for f in (weights, cfg):
        if not f.is_file():
            raise CheckpointError(f"checkpoint {source}: {f.name} is missing")
    meta = _read_config(cfg, source)
    try:
        validate_meta(meta)
        HVLConfig.from_dict(meta["config"])
        ClassSet.from_dict(meta["classes"])
    except (KeyError, TypeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is incomplete or invalid ({e})") from None
    expected = _expected_shapes(meta)
    # float32 tensors plus a small header: refuse a bigger file before reading it
    if weights.stat().st_size > 4 * sum(a * b for a, b in expected.values()) + 65536:
        raise CheckpointError(f"checkpoint {source}: {weights.name} is larger than the shapes in {cfg.name} allow")
    blob = weights.read_bytes()
    sha = hashlib.sha256(blob).hexdigest()
    if meta.get("weights_sha256") and sha != meta["weights_sha256"]:
        raise CheckpointError(
            f"checkpoint {source}: {weights.name} does not match the sha256 recorded in "
            f"{cfg.name} (truncated, corrupt or from another checkpoint)"
        )
    try:
        state = st_load(blob)
    except (SafetensorError, ValueError, RuntimeError, OSError) as e:
        raise CheckpointError(f"checkpoint {source}: {weights.name} is not a readable safetensors file ({e})") from None
    if set(state) != set(expected):
        raise CheckpointError(f"checkpoint {source}: expected tensors {sorted(expected)}, found {sorted(state)}")
    for k, shape in expected.items():
        if tuple(state[k].shape) != shape:
            raise CheckpointError(f"checkpoint {source}: {k} has shape {tuple(state[k].shape)}, expected {shape}")
        if not state[k].is_floating_point() or not torch.isfinite(state[k]).all():
            raise CheckpointError(f"checkpoint {source}: {k} holds non-finite or non-float values")
    scope = None
    if meta.get("scope") is not None:
        try:
            if not isinstance(meta["scope"], dict):
                raise ValueError("scope must be an object")
            scope = read_scope(weights.parent / SCOPE_WEIGHTS, meta["scope"], meta["embed_dim"])
        except (ValueError, TypeError, KeyError) as e:
            raise CheckpointError(f"checkpoint {source}: its in-scope stage cannot be used ({e})") from None
    return Checkpoint(state=state, meta=meta, source=source, weights_sha256=sha, scope=scope)


#: trained checkpoints ship as ``<weights>/hvl-<backbone>-<preset>/`` (hub layout)
SHIPPED_PREFIX = "hvl-"


def shipped_checkpoint(backbone: str, preset: str | None) -> Path | None:
    """The calibrated checkpoint shipped for ``backbone`` and ``preset`` (in the weights folder,
    ``$HVL_WEIGHTS_DIR``, else the checkout's ``weights/``), or None."""
    if not preset or not backbone or "/" in backbone or "/" in preset or ":" in backbone:
        return None
    from .backbones.medmnist import weights_dir

    name = f"{SHIPPED_PREFIX}{backbone}-{preset}"
    for folder in (weights_dir() / name, Path(__file__).resolve().parents[1] / "weights" / name):
        if (folder / CONFIG_NAME).is_file():
            return folder
    return None


def head_from_checkpoint(ck: Checkpoint, **overrides) -> HVLHead:
    """The trained head; ``overrides`` change options (``n`` too: W, b0, b2 do not depend on it)."""
    head = HVLHead(ck.meta["embed_dim"], ck.meta["num_classes"], **{**ck.config.to_dict(), **overrides})
    head.load_state_dict(ck.state)
    return head
