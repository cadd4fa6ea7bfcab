"""The head on a session's cached encoding, with the threshold rules the page follows: the
slider at the model's own threshold keeps its source, and a score the model has no threshold
for starts just under the image's own score."""

from __future__ import annotations

import math
from dataclasses import replace

from hvl_core import Encoded, HVLModel, Prediction, ScoreError
from hvl_core.head import score_range


def decide_on(
    model: HVLModel,
    encoded: Encoded,
    threshold: float | None,
    k: int,
    entropy_filter: bool,
    renormalize: bool,
    score: str | None = None,
) -> Prediction:
    """The head on a cached encoding. A threshold outside the score's range raises
    ``ScoreError``; with no threshold where the model has none for ``score`` (nothing
    measured or calibrated), the image's own score is the starting threshold ("given")."""
    opts = dict(
        k=max(1, min(int(k), 4 * model.n**2)),
        entropy_filter=bool(entropy_filter),
        renormalize=bool(renormalize),
        score=score or model.score_name,
    )
    if threshold is not None and threshold == own_threshold(model, opts["score"]):
        threshold = None  # the slider still at the model's own: keep its source (calibrated, measured)
    try:
        return model.decide(encoded, threshold=threshold, **opts)
    except ScoreError:
        if threshold is not None or has_threshold(model, opts["score"]):
            raise
    lo, _ = score_range(replace(model.head.config, score=opts["score"]), len(model.classes.names))
    probe = model.decide(encoded, threshold=probe_threshold(model, opts["score"]), **opts)
    return model.decide(encoded, threshold=max(lo, start_threshold([probe.score])), **opts)


def probe_threshold(model: HVLModel, score: str) -> float:
    """A threshold inside ``score``'s range, to read the scores with where the model has none."""
    lo, hi = score_range(replace(model.head.config, score=score), len(model.classes.names))
    return max(lo, min(0.0, hi))


def start_threshold(scores) -> float:
    """Where a score the model has no threshold for starts: just under ``scores``' median, on the
    slider's 0.01 steps (one image: its own score)."""
    s = sorted(float(x) for x in scores)
    return math.floor(s[(len(s) - 1) // 2] * 100) / 100


def own_threshold(model: HVLModel, score: str) -> float | None:
    """The model's own threshold for ``score`` (calibrated, measured or the MSP default), or None."""
    try:
        return model.resolve_threshold(None, score)[0]
    except ScoreError:
        return None


def has_threshold(model: HVLModel, score: str) -> bool:
    """Whether the model has a threshold of its own for ``score``."""
    return own_threshold(model, score) is not None
