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
import math
import os
from dataclasses import dataclass, fields
from pathlib import Path

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from .files import atomic_write
from .head import HVLConfig, HVLHead, check_threshold
from .hub import is_hub_id, offline_unless_reachable
from .presets import ClassSet

WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
LEGACY_WEIGHTS_NAME = "head.safetensors"
LEGACY_CONFIG_NAME = "hvl.json"
#: (config, weights) file names, newest first
LAYOUTS = ((CONFIG_NAME, WEIGHTS_NAME), (LEGACY_CONFIG_NAME, LEGACY_WEIGHTS_NAME))
FORMAT = "hvl-head"
FORMAT_VERSION = 2  # 2: hub layout (config.json + model.safetensors); 1: head.safetensors + hvl.json

# Bounds on what a checkpoint may ask for: a public server builds whatever it names.
MAX_CONFIG_BYTES = 1 << 20
MAX_EMBED_DIM = 4096
MAX_CLASSES = 1000
MAX_N = 16
MAX_TEXT = 2000  # characters in one class name, prompt or template
MAX_BACKBONE_NAME = 300
MAX_CALIBRATION_SCORES = 20000


class CheckpointError(ValueError):
    """A checkpoint that cannot be used: missing, corrupt, truncated, foreign or mismatched."""


@dataclass
class Checkpoint:
    state: dict[str, torch.Tensor]
    meta: dict
    source: str
    #: sha256 of the weights file as read (not as claimed)
    weights_sha256: str = ""

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


def model_card(meta: dict) -> str:
    """A short model card with hub metadata (the publishing tool writes a fuller one)."""
    from .backbones.catalog import backbone_info

    info = backbone_info(meta["backbone"])
    base = info.hub_files[0][0] if info is not None and info.hub_files and info.twin_of is None else None
    thr = meta.get("threshold")
    lines = [
        "---",
        "library_name: hvl",
        "tags:",
        "- hvl",
        "- medical-imaging",
        "- out-of-distribution-detection",
        "pipeline_tag: image-classification",
        *([f"base_model: {base}"] if base else []),
        "---",
        "",
        "# HVL head",
        "",
        f"An HVL head (Lai et al., MICCAI 2025) for the frozen backbone `{meta['backbone']}`: it names one of "
        f'{meta["num_classes"]} known classes or answers "unknown".',
        "",
        "Known classes: " + ", ".join(meta["classes"]["names"]) + ".",
        "",
        f"Calibrated {meta['config'].get('score', 'msp')} threshold: {thr:.4f}."
        if thr is not None
        else "Not calibrated (threshold 0.5).",
        "",
        *_provenance(meta),
        "```python",
        "import hvl_core",
        'model = hvl_core.load_model(checkpoint="ORG/NAME")  # or a local folder',
        'pred = model.predict("image.png")',
        "```",
        "",
        f"Files: `{WEIGHTS_NAME}` (W, b0, b2), `{CONFIG_NAME}` (backbone, classes, options, threshold, "
        "the weights' sha256).",
        "",
    ]
    return "\n".join(lines)


def _pct(ci) -> str:
    return f"{100 * ci[0]:.1f}% (95% CI {100 * ci[1]:.0f}–{100 * ci[2]:.0f}%)"


def _provenance(meta: dict) -> list[str]:
    """Model-card lines on what a checkpoint was trained, calibrated and measured on, when its
    config records it (``training.sources``, ``calibration``, ``measured``)."""
    lines = []
    train = meta.get("training") or {}
    if train.get("sources"):
        what = (
            f"{train.get('n_train', '?')} known images of these sources (the paper's loss, "
            f"{(train.get('train_config') or {}).get('epochs', '?')} epochs): " + ", ".join(train["sources"])
        )
        if train.get("head") == "untrained":
            lines += [
                "**Trained on** nothing: this head is untrained (W, b⁰, b² zero; the backbone's own scores). "
                f"A head trained on {what} separated known from unknown images worse on the calibration "
                "sources, so it is not the one shipped.",
                "",
            ]
        else:
            lines += [f"**Trained on** {what}.", ""]
    cal = meta.get("calibration") or {}
    if cal.get("rule") == "conformal":
        lines += [
            f"**Calibrated** on {cal['n']} known images of other sources ({', '.join(cal.get('sources', []))}): "
            f"the threshold is their conformal quantile for {100 * cal['alpha']:.0f}% false rejection, valid "
            "for new images exchangeable with them (taken the same way); their scores ship in config.json "
            "for conformal p-values.",
            "",
        ]
    m = meta.get("measured") or {}
    if m.get("false_rejection"):
        lines += [
            f"**Measured** on {m['n']['id']} known images of sources never trained or calibrated on "
            f"({', '.join(m.get('sources', []))}): {_pct(m['false_rejection'])} referred; accepted as known: "
            f"far-OOD {_pct(m['accepted_far'])}, the other class set {_pct(m['accepted_other'])}, "
            f"near-OOD {_pct(m['accepted_near'])}. Details: results/corpus/README.md.",
            "",
            "**Never seen**: any image unlike those sources — other cameras, scanners, stains, "
            "populations (corpus/README.md lists what they hold); its verdicts there are unmeasured.",
            "",
        ]
    return lines


def save_checkpoint(
    directory: str | os.PathLike,
    head: HVLHead,
    backbone: str,
    classes: ClassSet,
    threshold: float | None = None,
    detail: str = "upsample",
    extra: dict | None = None,
) -> Path:
    """Write ``model.safetensors``, ``config.json`` and a model card ``README.md`` into
    ``directory``; returns the folder."""
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
    """Download a hub checkpoint's (weights, config), whichever layout the repo has; never a
    local folder of the same name."""
    from huggingface_hub import hf_hub_download
    from huggingface_hub.errors import RemoteEntryNotFoundError

    try:
        with offline_unless_reachable():
            for cfg_name, weights_name in LAYOUTS:
                try:
                    cfg = hf_hub_download(repo, cfg_name)
                except RemoteEntryNotFoundError:  # the repo exists without this layout
                    continue
                return Path(hf_hub_download(repo, weights_name)), Path(cfg)
    except Exception as e:  # the hub client raises many kinds; all mean "cannot have it"
        raise CheckpointError(
            f"checkpoint {repo}: could not download it from the Hugging Face hub "
            f"({type(e).__name__}); pass a local checkpoint folder instead"
        ) from e
    raise CheckpointError(f"checkpoint {repo}: the hub repo has neither {CONFIG_NAME} nor {LEGACY_CONFIG_NAME}")


def _resolve(source: str) -> tuple[Path, Path]:
    pair = _local_pair(Path(source))
    if pair is not None:
        return pair
    repo = source[len("hf://") :] if source.startswith("hf://") else source
    if not is_hub_id(repo):
        raise CheckpointError(f"checkpoint {source}: no such file or folder (a hub checkpoint is written org/name)")
    return hub_files(repo)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not a number JSON allows")


def _read_config(cfg: Path, source: str) -> dict:
    if cfg.stat().st_size > MAX_CONFIG_BYTES:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is larger than {MAX_CONFIG_BYTES >> 20} MiB")
    try:
        meta = json.loads(cfg.read_bytes().decode("utf-8"), parse_constant=_reject_constant)
    except RecursionError:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is nested too deeply") from None
    except (UnicodeDecodeError, ValueError) as e:
        raise CheckpointError(f"checkpoint {source}: {cfg.name} is not valid JSON ({e})") from None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        raise CheckpointError(f"checkpoint {source}: not an HVL head checkpoint ({cfg.name} lacks format={FORMAT!r})")
    return meta


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v) -> bool:
    return (isinstance(v, (int, float)) and not isinstance(v, bool)) and math.isfinite(v)


def _int_in(meta: dict, key: str, lo: int, hi: int) -> int:
    v = meta.get(key)
    if not _is_int(v) or not lo <= v <= hi:
        raise ValueError(f"{key} must be a whole number from {lo} to {hi}, got {v!r}"[:200])
    return v


def _texts(v, key: str, count: int | None = None) -> None:
    if not isinstance(v, list) or not all(isinstance(s, str) and len(s) <= MAX_TEXT for s in v):
        raise ValueError(f"classes.{key} must be a list of short strings")
    if count is not None and len(v) != count:
        raise ValueError(f"classes.{key} has {len(v)} entries, expected {count}")


def validate_meta(meta: dict) -> None:
    """Type- and range-check a checkpoint config; raises ValueError naming the first bad field."""
    version = meta.get("format_version", 1)
    if not _is_int(version) or version < 1:
        raise ValueError(f"format_version must be a whole number, got {version!r}"[:200])
    if version > FORMAT_VERSION:
        raise ValueError(
            f"format version {version} is newer than this hvl_core reads ({FORMAT_VERSION}); upgrade hvl_core"
        )
    b = meta.get("backbone")
    if not isinstance(b, str) or not 0 < len(b) <= MAX_BACKBONE_NAME or not b.isprintable():
        raise ValueError("backbone must be a backbone name")
    _int_in(meta, "embed_dim", 1, MAX_EMBED_DIM)
    classes = _int_in(meta, "num_classes", 1, MAX_CLASSES)
    cfg = meta.get("config")
    if not isinstance(cfg, dict):
        raise ValueError("config must be an object of head options")
    types = {f.name: f.type for f in fields(HVLConfig)}
    for k, v in cfg.items():
        want = types.get(k)
        ok = {
            "int": _is_int,
            "float": _is_number,
            "bool": lambda x: isinstance(x, bool),
            "str": lambda x: isinstance(x, str),
        }.get(want, lambda x: False)(v)
        if not ok:
            raise ValueError(
                f"config.{k} must be of type {want}, got {v!r}"[:200] if want else f"unknown option config.{k}"
            )
    n = _int_in(cfg, "n", 1, MAX_N) if "n" in cfg else 2
    if "k" in cfg:
        _int_in(cfg, "k", 1, 4 * n * n)
    negatives = _int_in(cfg, "num_negatives", 0, MAX_CLASSES) if "num_negatives" in cfg else 0
    cs = meta.get("classes")
    if not isinstance(cs, dict):
        raise ValueError("classes must be an object")
    _texts(cs.get("names"), "names", classes)
    _texts(cs.get("prompts"), "prompts", classes)
    _texts(cs.get("negatives", []), "negatives", negatives)
    _texts(cs.get("descriptions", []), "descriptions")
    template = cs.get("template", "{}")
    if not isinstance(template, str) or len(template) > MAX_TEXT or template.count("{}") != 1:
        raise ValueError("classes.template must be a string with one {}")
    thr = meta.get("threshold")
    if thr is not None:  # in the units of the config's score: [0, 1] for MSP
        if not _is_number(thr):
            raise ValueError(f"threshold must be a number or null, got {thr!r}"[:200])
        check_threshold(thr, HVLConfig.from_dict(cfg), classes)
    if meta.get("detail", "upsample") not in ("upsample", "native"):
        raise ValueError("detail must be 'upsample' or 'native'")
    sha = meta.get("weights_sha256")
    if sha is not None and not (isinstance(sha, str) and len(sha) == 64):
        raise ValueError("weights_sha256 must be a sha256 hex digest")
    _check_calibration(meta.get("calibration"), cfg, classes)


def _check_scores(scores, where: str) -> None:
    if (
        not isinstance(scores, list)
        or not 0 < len(scores) <= MAX_CALIBRATION_SCORES
        or not all(_is_number(x) for x in scores)
    ):
        raise ValueError(f"{where} must be a list of 1 to {MAX_CALIBRATION_SCORES} finite numbers")


def _check_calibration(cal, cfg: dict, classes: int) -> None:
    """The optional calibration record: ``scores`` (the known calibration images' scores in the
    config's score, for conformal p-values) and ``by_score`` ({score: {threshold, scores}} for
    the other scores) must hold finite numbers and thresholds in each score's range."""
    if cal is None:
        return
    if not isinstance(cal, dict):
        raise ValueError("calibration must be an object")
    if cal.get("scores") is not None:
        _check_scores(cal["scores"], "calibration.scores")
        if cal.get("score") != cfg.get("score", "msp"):
            raise ValueError("calibration.score must be the config's score")
    by = cal.get("by_score")
    if by is None:
        return
    if not isinstance(by, dict) or len(by) > 8:
        raise ValueError("calibration.by_score must be an object of scores")
    for name, entry in by.items():
        if not isinstance(entry, dict) or not _is_number(entry.get("threshold")):
            raise ValueError(f"calibration.by_score.{name} must have a numeric threshold"[:200])
        _check_scores(entry.get("scores"), f"calibration.by_score.{name}.scores"[:200])
        check_threshold(entry["threshold"], HVLConfig.from_dict({**cfg, "score": name}), classes)


def _expected_shapes(meta: dict) -> dict[str, tuple[int, int]]:
    d, rows = meta["embed_dim"], meta["num_classes"] + meta["config"].get("num_negatives", 0)
    return {"W": (d, d), "b0": (rows, d), "b2": (rows, d)}


def load_checkpoint(source: str | os.PathLike) -> Checkpoint:
    """Read and validate a checkpoint from a folder, one of its files, or a hub repo id."""
    source = os.fspath(source)
    weights, cfg = _resolve(source)
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
    return Checkpoint(state=state, meta=meta, source=source, weights_sha256=sha)


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
