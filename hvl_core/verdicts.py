"""The three outcomes of HVL_SPEC §11 in words a clinician reads, in one place for the page, the
API, the MCP tools and the command line: the headline, what it means and what to do, and the
p-value of the stage that decided.

- *out of scope*: stage 1 says this is not the kind of image the model reads; it cannot judge it;
- *unknown*: in scope, but its score is under the threshold: not one of the known classes, refer;
- *known*: the best known class, with how often that answer was right on held-out sources —
  a suggestion to check, never a confirmed diagnosis.
"""

from __future__ import annotations

import math

OUT_OF_SCOPE, UNKNOWN, KNOWN = "out of scope", "unknown", "known"
OUTCOMES = (OUT_OF_SCOPE, UNKNOWN, KNOWN)
#: the p-value under which an image is unusual for the stage's known images (the default α)
RARE = 0.05


def headline(pred) -> str:
    """ "Out of scope — this model cannot judge it", "Unknown — refer to a specialist" or "Known: <class>"."""
    if pred.outcome == OUT_OF_SCOPE:
        return "Out of scope — this model cannot judge it"
    if pred.outcome == UNKNOWN:
        return "Unknown — refer to a specialist"
    return f"Known: {pred.label}"


def scope_of(pred) -> str:
    """What the model reads ("a skin-lesion photo …"), or "" when it has no stage 1."""
    return (pred.scope or {}).get("scope") or ""


def meaning(pred) -> str:
    """What the outcome means and what to do, in a sentence."""
    if pred.outcome == OUT_OF_SCOPE:
        what = scope_of(pred) or "the kind of image it was built for"
        return f"Not {what}: the model reads only those and cannot judge this image."
    if pred.outcome == UNKNOWN:
        return (
            f"Of the kind it reads, but none of its {len(pred.classes)} known classes: possibly a disease it "
            "never learned. Refer to a specialist."
        )
    prec = pred.precision
    if prec and prec.get("n"):
        return (
            f"Right in {100 * prec['value']:.0f}% of {prec['n']} held-out images it called {pred.label}: "
            "a suggestion to check, not a diagnosis."
        )
    return f"Its best match among {len(pred.classes)} known classes: a suggestion to check, not a diagnosis."


def qualifier(p: float) -> str:
    """How unusual a p-value is for a known image, in words."""
    if p <= RARE:
        return "rarer than 1 in 20 known images"
    if p <= 2 * RARE:
        return "borderline, near the 1-in-20 line"
    if p <= 0.25:
        return "unusual but not rare"
    return "typical"


def p_value_words(pred) -> str:
    """The deciding stage's conformal p-value as a sentence, or "" when it has none."""
    p = pred.deciding_p_value
    if p is None or not math.isfinite(p):
        return ""
    if pred.outcome == OUT_OF_SCOPE:
        return f"In-scope p = {p:.2f} against {pred.scope['n_calibration']} known images — {qualifier(p)}."
    return f"p = {p:.2f}: {100 * p:.0f}% of {pred.n_calibration} known images score this low or lower — {qualifier(p)}."


def summary(pred) -> dict:
    """The outcome for an API answer: ``outcome``, ``verdict`` (the headline), ``meaning``,
    ``p_value`` (the deciding stage's), ``p_value_words`` and ``decided_by``."""
    return {
        "outcome": pred.outcome,
        "verdict": headline(pred),
        "meaning": meaning(pred),
        "p_value": pred.deciding_p_value,
        "p_value_words": p_value_words(pred),
        "decided_by": "stage 1: in scope?" if pred.outcome == OUT_OF_SCOPE else "stage 2: known class?",
    }


def smallest_p(n_calibration: int, scope_smallest: float | None = None) -> float | None:
    """The smallest p-value a model can give: ``1/(N+1)`` over its N calibration scores (stage 2),
    or stage 1's (``ScopeDetector.smallest_p``) when smaller; None without either (HVL_SPEC §11)."""
    ps = [p for p in (1 / (n_calibration + 1) if n_calibration else None, scope_smallest) if p is not None]
    return min(1.0, min(ps)) if ps else None


def bh_note(p_min: float | None, m: int, fdr: float) -> str:
    """ "" when Benjamini–Hochberg at ``fdr`` can flag single images among ``m``; else a sentence
    saying what it can flag at this size."""
    from .conformal import bh_min_flagged

    if p_min is None or m < 1 or p_min <= fdr / m:
        return ""
    k = bh_min_flagged(p_min, m, fdr)
    if k is None:
        return (
            f"Benjamini–Hochberg at {fdr:.0%} cannot flag anything among {m} images: with this model's "
            f"calibration images no p-value is under {p_min:.3f}."
        )
    return (
        f"Benjamini–Hochberg at {fdr:.0%} over {m} images flags only groups of at least {k} unusual images "
        f"(no p-value is under {p_min:.3f} with this model's calibration images): one alone is never flagged."
    )
