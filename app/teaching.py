"""Teaching mode: the steps of HVL for *this* image, with its own numbers, in plain words.

Pure text from a ``Prediction`` and a little context (image size, backbone, options); the
formulas are the paper's (Lai et al., MICCAI 2025; HVL_SPEC.md §1–6).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from hvl_core import scores
from hvl_core.model import DROPPED_LABEL, OTHER_LABEL

from .decision import above, decision_text, fmt_num, fmt_score, fmt_signed, separating_digits, threshold_note
from .figures import candidates
from .single_scale import score_noun, single_scale_sentence

MAX_TABLE_GRID = 4  # entropy tables up to 4×4 cells; larger grids get a summary
#: the figures each step of the walk-through is about (element ids on the page); the step
#: selector highlights them
STEP_FIGURES = {
    1: ("thumbnail",),
    2: ("scales",),
    3: ("entropy-mid", "entropy-high", "patch-classes"),
    4: ("scales", "top-classes"),
    5: ("entropy-gain",),
    6: ("decision", "distribution"),
    7: ("single-scale",),
}
STEP_TITLES = {
    1: "Crops at three scales",
    2: "Fusion, coarse to fine",
    3: "Patch predictions and the entropy filter",
    4: "The fused score",
    5: "Pseudo-OOD patches",
    6: "Decision",
    7: "One scale or three",
}


@dataclass
class Context:
    """What the text needs beyond the ``Prediction``."""

    original_size: tuple[int, int] | None = None  # (W, H) of the upload
    image_notes: list[str] = field(default_factory=list)
    backbone: str = ""  # describe() of the backbone
    image_size: int = 224  # S, the encoder's input side
    entropy_filter: bool = True
    renormalize: bool = False
    calibrated: bool = False
    checkpoint: str | None = None
    detail: str = "upsample"
    similarity: str = "cosine"
    class_bias: bool = False  # the backbone adds a per-class logit bias (a classifier's bias)
    kind: str = "vision-language"  # the backbone: "vision-language" (text tower) or "label-only" (a classifier)
    threshold_measured: bool = True  # False: no threshold was measured or calibrated for this score


def cells_text(cells) -> str:
    cells = [tuple(int(v) for v in rc) for rc in cells]
    return ", ".join(f"({r}, {c})" for r, c in cells) if cells else "none"


def _dropped(keep: np.ndarray) -> list[tuple[int, int]]:
    return [(int(r), int(c)) for r, c in zip(*np.nonzero(~np.asarray(keep, dtype=bool)))]


def _entropy_table(h: np.ndarray, keep: np.ndarray, digits: int = 3) -> str:
    g = h.shape[0]
    head = "| row \\ col | " + " | ".join(str(c) for c in range(g)) + " |"
    sep = "|---" * (g + 1) + "|"
    rows = []
    for r in range(g):
        vals = [fmt_num(h[r, c], digits) + ("" if keep[r, c] else " ✗") for c in range(g)]
        rows.append(f"| **{r}** | " + " | ".join(vals) + " |")
    return "\n".join([head, sep, *rows])


def scale_paragraph(
    name: str, sym: str, h: np.ndarray, keep: np.ndarray, p: np.ndarray, ctx: Context, other: float = 0.0
) -> str:
    g = h.shape[0]
    n_all = g * g
    dropped = _dropped(keep)
    kept = n_all - len(dropped)
    d = separating_digits(h, float(h.mean()), lo=3, hi=6)  # a dropped cell never reads as equal to the mean
    lines = [f"- **{name} scale ({g}×{g} = {n_all} patches).** Mean entropy H̄{sym} = {fmt_num(h.mean(), d)}."]
    if not ctx.entropy_filter:
        lines.append("  The entropy filter is **off**: every patch counts.")
    elif dropped:
        mean_dropped = float(h[~keep].mean())
        lines.append(
            f"  Dropped (H > H̄{sym}, treated as disease-irrelevant): **{len(dropped)}** cells "
            f"{cells_text(dropped)}, mean entropy {fmt_num(mean_dropped, d)}; kept {kept}."
        )
    else:
        lines.append("  No patch is above the mean (all equally unsure), so none is dropped.")
    if g <= MAX_TABLE_GRID:
        lines.append("")
        lines.append(_entropy_table(h, keep, d))
        lines.append("")
        lines.append("  (✗ = dropped)" if ctx.entropy_filter and dropped else "")
    div = f"the {kept} kept patches" if ctx.renormalize and ctx.entropy_filter else f"all {n_all} patches"
    lines.append(
        f"  p{sym} = (sum of the kept patches' probabilities) ÷ {div}"
        + (
            ""
            if ctx.renormalize or not ctx.entropy_filter
            else " — divided by *all* patches, as the paper writes, so dropped patches lower it"
        )
        + f": here p{sym} sums to {fmt_num(float(np.sum(p)), 3)} over the known classes"
        + (f", {fmt_num(other, 3)} went to the negative classes (“other”)" if other > 0 else "")
        + (
            f", and the {n_all - kept} dropped patches' share {fmt_num((n_all - kept) / n_all, 3)} is missing"
            if ctx.entropy_filter and not ctx.renormalize and kept < n_all
            else ""
        )
        + "."
    )
    return "\n".join(line for line in lines if line is not None)


def score_words(ctx: Context) -> str:
    words = "cosine similarity" if ctx.similarity == "cosine" else "dot product"
    return words + (" plus the backbone's per-class bias" if ctx.class_bias else "")


def head_words(ctx: Context) -> str:
    """Trained head or zero-shot, as it is."""
    if ctx.checkpoint:
        return f"The head was trained (checkpoint {ctx.checkpoint}): its learnt weights shape these embeddings."
    if ctx.kind == "label-only":
        return (
            "The head is untrained: its learnable weights are zero, so the class scores are the classifier's "
            "own (it was trained on these labels)."
        )
    return (
        "The head is untrained (zero-shot): its learnable weights are zero, so the class scores come from the "
        "backbone alone."
    )


def compare_words(ctx: Context, C: int) -> str:
    """How a patch is scored against the classes, true for this backbone."""
    if ctx.kind == "label-only":
        return (
            f"Every patch is scored by the classifier itself: the {score_words(ctx)} of its features with the "
            f"output row of each of the C = {C} known classes (this backbone is label-only: it has no text "
            "tower, and a class is one of its labels)"
        )
    return (
        f"Every patch is compared with the text of each of the C = {C} known classes (its prompt through the "
        f"text tower; {score_words(ctx)})"
    )


def softmax_words(pred) -> str:
    """The classes the softmax runs over, and the even split the entropy scale tops out at."""
    C, R = len(pred.classes), pred.entropy_classes or len(pred.classes)
    top = fmt_num(pred.entropy_max if R > 1 else 0.0, 3)
    if R > C:
        return (
            f"softmax over the {C} known and {R - C} negative classes (the backbone's other labels or prompts: "
            "they take their share, “other”, but are never the answer): one probability per class. Its entropy "
            f"H = −Σ p·log p, over all {R}, says how unsure it is: 0 = certain of one class, "
            f"ln {R} = {top} = evenly split over all {R}"
        )
    return (
        "softmax): one probability per class. Its entropy H = −Σ p·log p says how unsure it is: 0 = certain "
        f"of one class, ln {R} = {top} = evenly split"
    )


def _shortfall(pred) -> str:
    """Where the fused probability that no known class holds went: negative classes, dropped patches."""
    other, dropped = float(pred.p_other.get("p_id", 0.0)), float(pred.p_dropped.get("p_id", 0.0))
    parts = []
    if other >= 0.005:
        parts.append(f"{fmt_num(other, 2)} went to “other (not a known class)”, the negative classes")
    if dropped >= 0.005:
        parts.append(f"{fmt_num(dropped, 2)} is the share of patches the entropy filter dropped (they count as zero)")
    if not parts:
        return ""
    return f" Of the fused probability, {' and '.join(parts)}; the known classes hold {fmt_num(float(np.sum(pred.p_id)), 2)}."


def score_paragraph(pred) -> str:
    """How this image's decision score is made from the fused prediction (every §9 score)."""
    thr = pred.threshold
    if pred.scale_scores is None:
        return f"MSP = the largest p_ID = {fmt_score(pred.score, thr)} ({pred.label})."
    t = " + ".join(fmt_num(v, 3) for v in pred.scale_scores)
    what = scores.SCORES[pred.score_name].term_text if pred.score_name in scores.SCORES else "its per-scale term"
    return (
        f"The {score_noun(pred)} is {what}, averaged over the kept patches of each scale and then over the "
        f"three scales: ({t}) ÷ 3 = {fmt_score(pred.score, thr)}. The class is the largest p_ID, {pred.label}."
    )


def why_sentence(pred) -> str:
    """One or two sentences: why this image was accepted or rejected."""
    thr, score, name = pred.threshold, pred.score, score_noun(pred)
    if not math.isfinite(score):  # a Prediction made without a score: the MSP is the score
        score = pred.msp
    picks = [pred.classes[int(np.argmax(p))] for p in (pred.p0, pred.p1, pred.p2)]
    if len(set(picks)) == 1:
        agree = f"all three scales pick {picks[0]}"
    else:
        agree = f"the scales disagree (whole image: {picks[0]}, mid: {picks[1]}, high: {picks[2]})"
    conf = "fused confidence" if pred.score_name == "msp" else f"fused {name}"
    if pred.outcome == "out of scope":
        return f"**Out of scope — not judged**: {stage_words(pred)}"
    if pred.known:
        return (
            f"**Accepted** as {pred.label}: its {conf} {fmt_score(score, thr)} reaches the threshold "
            f"{fmt_score(thr, score)} (margin {fmt_signed(score - thr, 3)}); {agree}."
        )
    best = (
        f"The best, {pred.label}, reaches only {fmt_score(score, thr)}"
        if pred.score_name == "msp"
        else f"The {name} is {fmt_score(score, thr)} (best class {pred.label}, p_ID {fmt_num(pred.msp, 3)})"
    )
    return (
        f"**Rejected — refer to a specialist**: no known class is close enough. {best}, {fmt_num(thr - score, 3)} "
        f"below the threshold {fmt_score(thr, score)}; {agree}." + _shortfall(pred)
    )


def teaching_steps(pred, ctx: Context) -> list[tuple[int, str, str]]:
    """The walk-through as steps ``(number, title, markdown)``, each with this image's numbers;
    ``STEP_FIGURES[number]`` are the figures it is about."""
    n, S = pred.n, ctx.image_size
    C = len(pred.classes)
    M = 1 + n * n + 4 * n * n
    c = pred.class_index
    size = f"{ctx.original_size[0]}×{ctx.original_size[1]} px" if ctx.original_size else "the image"
    notes = f" ({'; '.join(ctx.image_notes)})" if ctx.image_notes else ""
    src = "cut from your image's own pixels (native detail)" if ctx.detail == "native" else "an enlargement of the view"
    steps = {}
    steps[1] = (
        f"Your upload ({size}{notes}) becomes the encoder's view: short side "
        f"resized to {S} px, centre {S}×{S} kept. *Scale 0* is that view (1 crop). *Scale 1* enlarges it {n}× and "
        f"cuts a {n}×{n} grid: {n * n} crops of {S}×{S}. *Scale 2* enlarges it {2 * n}× and cuts a "
        f"{2 * n}×{2 * n} grid: {4 * n * n} crops (each grid is {src}). All 1 + {n * n} + {4 * n * n} = "
        f"**{M} crops** go through the encoder ({pred.backbone}) in one batch."
    )
    steps[2] = (
        "(Eq. 1) Each mid-scale patch gets the whole-image embedding added, "
        "weighted by how similar the two are (their cosine): û¹ᵢ = u¹ᵢ + cos(u¹ᵢ, u⁰)·u⁰. Each high-scale patch "
        "then does the same with its already-fused parent mid-scale patch: û²ⱼ = u²ⱼ + cos(u²ⱼ, û¹ⱼ*)·û¹ⱼ*. "
        "A small patch is thus read in the context of the region around it. " + head_words(ctx)
    )
    steps[3] = "\n".join(
        [
            f"(Eq. 2–3) {compare_words(ctx, C)}, ÷ τ = {pred.tau:g}, then a {softmax_words(pred)}. Patches less "
            "certain than their scale's average are dropped as *disease-irrelevant* (background, hair, blank slide).",
            "",
            scale_paragraph("Mid", "¹", pred.entropy1, pred.keep1, pred.p1, ctx, pred.p_other.get("p1", 0.0)),
            scale_paragraph("High", "²", pred.entropy2, pred.keep2, pred.p2, ctx, pred.p_other.get("p2", 0.0)),
        ]
    )
    table = ["| class | p⁰ whole | p¹ mid | p² high | p_ID |", "|---|---|---|---|---|"]
    for i in np.argsort(-pred.p_id, kind="stable"):
        table.append(
            f"| {pred.classes[i]} | {pred.p0[i]:.3f} | {pred.p1[i]:.3f} | {pred.p2[i]:.3f} | {pred.p_id[i]:.3f} |"
        )
    series = ("p0", "p1", "p2", "p_id")
    for label, shares in ((OTHER_LABEL, pred.p_other), (DROPPED_LABEL, pred.p_dropped)):
        if label == OTHER_LABEL and not pred.negatives or label == DROPPED_LABEL and shares.get("p_id", 0.0) <= 0:
            continue
        table.append(f"| *{label}* | " + " | ".join(fmt_num(shares[s], 3) for s in series) + " |")
    if pred.p_other or pred.p_dropped:  # every column sums to 1 with the rows above
        totals = [
            float(np.sum(getattr(pred, s))) + pred.p_other.get(s, 0.0) + pred.p_dropped.get(s, 0.0) for s in series
        ]
        table.append("| **total** | " + " | ".join(fmt_num(t, 3) for t in totals) + " |")
    steps[4] = "\n".join(
        [
            f"p_ID = (p⁰ + p¹ + p²) ÷ 3, the average of what the three scales say. "
            f"For {pred.label}: ({pred.p0[c]:.3f} + {pred.p1[c]:.3f} + {pred.p2[c]:.3f}) ÷ 3 = **{pred.p_id[c]:.3f}**.",
            "",
            *table,
        ]
    )
    gains = [f"{cells_text([rc])} ΔH = {fmt_signed(pred.entropy_gain[rc[0], rc[1]], 3)}" for rc in pred.pseudo_ood]
    positive = len(candidates(pred))
    steps[5] = (
        f"(Eq. 4–5, a training signal) The entropy gain ΔH = H(high patch) − H(its mid "
        f"parent) is largest where zooming in makes the model *less* sure — often a lesion's boundary. The K = "
        f"{pred.k} largest here: {'; '.join(gains) if gains else 'none'}; the {positive} with ΔH > 0 are outlined "
        "on the ΔH map as candidates. In training, HVL pushes these patches towards 'no known class' (high "
        "entropy at every scale), which teaches it what unknown looks like; at inference they are only shown."
    )
    op = "≥" if above(pred) else "<"
    name = score_noun(pred)
    steps[6] = "\n".join(
        [
            f"{score_paragraph(pred)} {threshold_note(pred, ctx.threshold_measured, where=True)} "
            f"{name} {op} threshold; {stage_words(pred)} Verdict: **{decision_text(pred)}**. Move the threshold slider to see where the decision flips: a "
            "higher threshold rejects more. The score distribution shows where this image sits among the reference "
            "images.",
            "",
            why_sentence(pred),
        ]
    )
    steps[7] = single_scale_sentence(pred)
    return [(i, STEP_TITLES[i], steps[i]) for i in sorted(steps)]


def teaching_markdown(pred, ctx: Context) -> str:
    """The walk-through for this image: every step, each headed by its number and title."""
    out = ["## How HVL reached this decision", ""]
    if "random" in (pred.backbone or ""):
        out += [
            "> ⚠ This backbone has **random weights** (a test backbone): the numbers below show the "
            "mechanics, not medical meaning.",
            "",
        ]
    for i, title, text in teaching_steps(pred, ctx):
        out += [f"**{i}. {title}.** {text}", ""]
    return "\n".join(out).rstrip() + "\n"


def stage_words(pred) -> str:
    """How the two questions (HVL_SPEC §11) were answered for this image, one sentence."""
    if pred.scope is None:
        return "this model has no in-scope check, so the score alone decides."
    s = pred.scope
    asked = (
        f"first, is it {s['scope'] or 'the kind of image the model reads'}? KNN similarity "
        f"{fmt_num(s['knn'], 3)} (needs ≥ {fmt_num(s['t_knn'], 3)}), gate {fmt_num(s['gate'], 2)} "
        f"(needs ≥ {fmt_num(s['t_gate'], 2)})"
        + (
            f", nearer the known images than any other kind by {fmt_num(s['contrast'], 3)} "
            f"(needs ≥ {fmt_num(s['t_contrast'], 3)})"
            if s.get("contrast") is not None
            else ""
        )
    )
    if not s["in_scope"]:
        return f"but {asked}: no, so the score is not asked — the model cannot judge this image."
    return f"{asked}: yes, so the score decides."
