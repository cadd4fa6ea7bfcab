"""The decision scores, one entry each (HVL_SPEC §6, §9): what a score is called, its units and
meaning, the values it can take, how a scale's term is made, and its default threshold.

Every score is *higher = more likely known*; an image is unknown when its fused score is under
the threshold. Two kinds exist:

- a probability score (MSP, the paper's) is the largest fused probability, max_c p_ID, so it has
  no per-scale term (``term`` is ``None``);
- a logit score applies ``term`` (logits ``(..., C)`` → ``(...)``, temperature T) to each scale's
  logits, averages it over the kept patches of that scale and then over the three scales (§9).

Adding a score is one ``register`` call with its equation (a pure function in
:mod:`hvl_core.equations`); the head, the checkpoint checks, the CLI's choices, the reports and
the page read this registry.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


class ScoreError(ValueError):
    """A score or threshold that does not fit; the message is one sentence saying which and why."""


@dataclass(frozen=True)
class Score:
    """One decision score.

    ``label``: its short name on the page ("MSP", "energy"); ``noun``: in a sentence ("energy
    score"); ``axis``: on a plot axis; ``unit``: how a threshold in it is read; ``meaning``: one
    line saying what it is (HTML allowed); ``term_text``: a logit score's per-scale term in words. ``bounds(lim, T, C)`` → (lo, hi): the values it can take
    when every logit lies in [−lim, lim] (``lim`` = 1/τ for cosine logits, ``inf`` for linear), with
    temperature ``T`` and ``C`` known classes. ``default_threshold``: the threshold used where none
    was measured or calibrated (``None``: the score has none, so one must be measured)."""

    name: str
    label: str
    noun: str
    axis: str
    unit: str
    meaning: str
    bounds: Callable[[float, float, int], tuple[float, float]]
    term: Callable[[torch.Tensor, float], torch.Tensor] | None = None
    term_text: str = ""
    default_threshold: float | None = None
    #: the paper's own score (HVL uses MSP)
    paper: bool = False

    @property
    def per_scale(self) -> bool:
        """Whether the score is a mean of per-scale terms (a logit score, §9)."""
        return self.term is not None


def _energy(s: torch.Tensor, T: float) -> torch.Tensor:
    from .equations import energy  # on use: the registry itself loads without torch (a CLI's help)

    return energy(s, T)


def _max_logit(s: torch.Tensor, T: float) -> torch.Tensor:
    from .equations import max_logit

    return max_logit(s)


#: name → Score, in the order the page and the CLI list them
SCORES: dict[str, Score] = {}


def register(score: Score) -> Score:
    """Add ``score`` to the registry (a name is registered once)."""
    if score.name in SCORES:
        raise ValueError(f"the score {score.name!r} is registered already")
    SCORES[score.name] = score
    return score


def unregister(name: str) -> None:
    """Remove the score ``name`` (for a score added at run time, e.g. by a test)."""
    SCORES.pop(name, None)


def get(name: str) -> Score:
    """The score called ``name``; ``KeyError`` (one sentence) for an unknown one."""
    try:
        return SCORES[name]
    except KeyError:
        raise KeyError(f"unknown score {name!r}: use one of {', '.join(SCORES)}") from None


def label(name: str) -> str:
    """The page's short name of ``name`` (the name itself for an unknown score)."""
    return SCORES[name].label if name in SCORES else name


def noun(name: str) -> str:
    """``name`` as a sentence says it ("MSP", "energy score")."""
    return SCORES[name].noun if name in SCORES else name


register(
    Score(
        name="msp",
        label="MSP",
        noun="MSP",
        axis="MSP (max p_ID)",
        unit="MSP, 0 to 1",
        meaning="MSP = max<sub>c</sub> p_ID, the fused confidence (0 to 1)",
        bounds=lambda lim, T, C: (0.0, 1.0),
        default_threshold=0.5,
        paper=True,
    )
)
register(
    Score(
        name="energy",
        label="energy",
        noun="energy score",
        axis="energy score",
        unit="energy units",
        meaning="energy = T·log Σ exp(known-class logits); higher = more familiar",
        # logsumexp of C logits in [−lim, lim] lies in [−lim + T·ln C, lim + T·ln C]
        bounds=lambda lim, T, C: (-lim + T * math.log(C), lim + T * math.log(C)),
        term=_energy,
        term_text="T·log Σ exp(logit ÷ T) over the known classes",
    )
)
register(
    Score(
        name="maxlogit",
        label="max-logit",
        noun="max-logit score",
        axis="max-logit score",
        unit="max-logit units",
        meaning="max-logit = the largest known-class logit; higher = more familiar",
        bounds=lambda lim, T, C: (-lim, lim),
        term=_max_logit,
        term_text="the largest known-class logit",
    )
)
