"""One scale or three: the whole image alone (MCM-style, scale 0) against HVL's fused verdict, with
the same backbone, score and threshold, and the scales that changed the answer (teaching step 7)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hvl_core import scores

from .decision import above, fmt_score

SCALE_WORDS = ("whole image", "mid scale", "high scale")


def score_noun(pred) -> str:
    """What the decision score is called in a sentence: "MSP", "energy score", …"""
    return scores.noun(pred.score_name)


def scale_terms(pred) -> tuple[float, float, float]:
    """The three per-scale terms whose mean is the fused score (HVL_SPEC §5, §9): for MSP the
    whole, mid and high probability of the fused winner c* (p_ID = (p⁰ + p¹ + p²) ÷ 3, so MSP =
    p_ID[c*] is their mean); for a logit score (energy, max-logit) the scale scores themselves."""
    if pred.scale_scores is None:
        c = pred.class_index
        return float(pred.p0[c]), float(pred.p1[c]), float(pred.p2[c])
    return tuple(float(v) for v in pred.scale_scores)


@dataclass(frozen=True)
class SingleScale:
    """The verdict of the whole image alone (MCM-style: scale 0, same backbone, same score and
    threshold) beside the fused HVL verdict, and the scales that changed the answer."""

    score0: float  # the scale-0 score: max p⁰ (MSP) or the scale-0 term (energy, max-logit)
    label0: str  # argmax p⁰
    known0: bool
    terms: tuple[float, float, float]  # per-scale terms of the fused score
    changed: bool  # the verdict or the class differs
    movers: tuple[int, ...]  # the scales (1, 2) whose term sits on HVL's side of the threshold


def single_scale(pred) -> SingleScale:
    """Scale 0 alone against the fused decision (same threshold, same score units)."""
    terms = scale_terms(pred)
    score0 = pred.score0
    label0 = pred.classes[int(np.argmax(pred.p0))]
    known0 = score0 >= pred.threshold
    fused = above(pred)  # stage 2 alone: the scales compared, whatever stage 1 said
    movers: tuple[int, ...] = ()
    if known0 != fused:  # the finer scales pulled the mean across the threshold
        movers = tuple(s for s in (1, 2) if (terms[s] >= pred.threshold) == fused)
    changed = known0 != fused or (fused and label0 != pred.label)
    return SingleScale(score0, label0, known0, terms, changed, movers)


def verdict_words(known: bool, label: str) -> str:
    return f"known: {label}" if known else "unknown — refer to a specialist"


def single_scale_sentence(pred, ss: SingleScale | None = None) -> str:
    """Which scale changed the answer, in one or two sentences with this image's numbers."""
    ss = ss or single_scale(pred)
    name, thr = score_noun(pred), pred.threshold
    t = ", ".join(f"{w} {fmt_score(v, thr)}" for w, v in zip(SCALE_WORDS, ss.terms))
    base = (
        f"The whole image alone (scale 0, MCM-style) gives {name} {fmt_score(ss.score0, thr)}: "
        f"{verdict_words(ss.known0, ss.label0)}. HVL averages the three scales ({t}) to "
        f"{fmt_score(pred.score, thr)}: {verdict_words(above(pred), pred.label)}."
    )
    if not ss.changed:
        return base + " Both say the same; the finer scales did not change the answer."
    if ss.known0 != above(pred):
        which = " and ".join(SCALE_WORDS[s] for s in ss.movers) or "the finer scales together"
        way = "raised" if above(pred) else "lowered"
        return base + (
            f" The {which} {way} the score across the threshold {fmt_score(thr, pred.score)}: "
            f"{'they' if len(ss.movers) > 1 else 'it'} changed the answer."
        )
    return base + (
        f" Both accept, but the class changed: the whole image says {ss.label0}, the finer scales "
        f"tip the fused prediction to {pred.label}."
    )
