"""The fields of a checkpoint's config, decided from their text alone before anything is built:
types and ranges, the class texts and their prompt template (``presets.check_template``: one
``{}``, no other brace), the embedding width against the one the backbone catalog declares for
the named backbone, and the calibration record. Every refusal is a ``ValueError`` naming the
first bad field; ``load_checkpoint`` turns it into a ``CheckpointError``.
"""

from __future__ import annotations

import math
from dataclasses import fields

from .backbones.catalog import declared_width
from .head import HVLConfig, check_threshold
from .presets import check_template

#: a checkpoint's files (the hub's names), here so that the model card and the checkpoint module
#: both read them without importing each other
WEIGHTS_NAME = "model.safetensors"
CONFIG_NAME = "config.json"
CARD_NAME = "README.md"
LEGACY_WEIGHTS_NAME = "head.safetensors"
LEGACY_CONFIG_NAME = "hvl.json"
#: (config, weights) file names, newest first
LAYOUTS = ((CONFIG_NAME, WEIGHTS_NAME), (LEGACY_CONFIG_NAME, LEGACY_WEIGHTS_NAME))


FORMAT_VERSION = 2  # 2: hub layout (config.json + model.safetensors); 1: head.safetensors + hvl.json
#: bounds on what a checkpoint may ask for: a public server builds whatever it names
MAX_CONFIG_BYTES = 1 << 20
MAX_EMBED_DIM = 4096
MAX_CLASSES = 1000
MAX_N = 16
MAX_TEXT = 2000  # characters in one class name, prompt or template
MAX_BACKBONE_NAME = 300
MAX_CALIBRATION_SCORES = 20000


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
    dim = _int_in(meta, "embed_dim", 1, MAX_EMBED_DIM)
    width = declared_width(b)
    if width is not None and dim != width:
        raise ValueError(f"embed_dim is {dim}, but the backbone {b[:80]} gives {width}-d embeddings")
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
    check_template(cs.get("template", "{}"))
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
        if cal.get("score") != cfg.get("score", HVLConfig.score):
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


def reject_constant(name: str):
    """``json.loads(parse_constant=...)``: NaN and ±Infinity are not JSON numbers."""
    raise ValueError(f"{name} is not a number JSON allows")
