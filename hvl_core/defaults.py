"""The default decision of a backbone and class set where no checkpoint calibrated one: the
backbone's measured score and threshold for the preset, else the paper's MSP at its neutral 0.5."""

from __future__ import annotations

from .backbones import Backbone
from .head import HVLConfig, ScoreError
from .scores import SCORES


def decision_default(backbone: Backbone, preset: str | None) -> dict:
    """The default decision for a backbone and class set: ``{"score", "thresholds", "measured"}``.
    The backbone's measured entry for the preset (``Backbone.decision_defaults``), else MSP with
    ``DEFAULT_THRESHOLD`` (not measured)."""
    entry = getattr(backbone, "decision_defaults", {}).get(preset) if preset else None
    if entry is None:
        paper = HVLConfig.score  # the paper's MSP, whose registry entry has a neutral threshold
        return {"score": paper, "thresholds": {paper: SCORES[paper].default_threshold}, "measured": False}
    return {"score": entry["score"], "thresholds": dict(entry["thresholds"]), "measured": True}


def default_threshold(backbone: Backbone, score: str, preset: str | None = None) -> tuple[float, str]:
    """(threshold, source) for ``score`` without a calibrated one: the backbone's measured
    threshold for the preset (source "measured"), else 0.5 for MSP ("default"). Energy and
    max-logit have no neutral value: without a measured one, ``ScoreError`` says what to give."""
    d = decision_default(backbone, preset)
    if score in d["thresholds"]:
        return float(d["thresholds"][score]), "measured" if d["measured"] else "default"
    what = f"the {preset} classes" if preset else "a custom class set"
    raise ScoreError(
        f"the {score} score has no measured default threshold for backbone {backbone.name} with "
        f"{what}: give a threshold in {score} units, or calibrate a checkpoint with this score"
    )
