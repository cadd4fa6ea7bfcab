"""Teaching mode: the steps of HVL for *this* image, with its own numbers, in plain words.

Pure text from a ``Prediction`` and a little context (image size, backbone, options); the
formulas are the paper's (Lai et al., MICCAI 2025; HVL_SPEC.md §1–6).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np

from .decision import fmt_num, fmt_score, fmt_signed, separating_digits

MAX_TABLE_GRID = 4  # entropy tables up to 4×4 cells; larger grids get a summary


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


def scale_paragraph(name: str, sym: str, h: np.ndarray, keep: np.ndarray, p: np.ndarray, ctx: Context) -> str:
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
        lines.append(f"  Dropped (H > H̄{sym}, treated as disease-irrelevant): **{len(dropped)}** cells "
                     f"{cells_text(dropped)}, mean entropy {fmt_num(mean_dropped, d)}; kept {kept}.")
    else:
        lines.append("  No patch is above the mean (all equally unsure), so none is dropped.")
    if g <= MAX_TABLE_GRID:
        lines.append("")
        lines.append(_entropy_table(h, keep, d))
        lines.append("")
        lines.append("  (✗ = dropped)" if ctx.entropy_filter and dropped else "")
    div = f"the {kept} kept patches" if ctx.renormalize and ctx.entropy_filter else f"all {n_all} patches"
    lines.append(f"  p{sym} = (sum of the kept patches' probabilities) ÷ {div}"
                 + ("" if ctx.renormalize or not ctx.entropy_filter else
                    " — divided by *all* patches, as the paper writes, so dropped patches lower it")
                 + f": here p{sym} sums to {float(np.sum(p)):.3f}.")
    return "\n".join(line for line in lines if line is not None)


def score_words(ctx: Context) -> str:
    words = "cosine similarity" if ctx.similarity == "cosine" else "dot product"
    return words + (" plus the backbone's per-class bias" if ctx.class_bias else "")


def why_sentence(pred) -> str:
    """One or two sentences: why this image was accepted or rejected."""
    thr, msp = pred.threshold, pred.msp
    picks = [pred.classes[int(np.argmax(p))] for p in (pred.p0, pred.p1, pred.p2)]
    if len(set(picks)) == 1:
        agree = f"all three scales pick {picks[0]}"
    else:
        agree = f"the scales disagree (whole image: {picks[0]}, mid: {picks[1]}, high: {picks[2]})"
    if pred.known:
        return (f"**Accepted** as {pred.label}: its fused confidence {fmt_score(msp, thr)} reaches the threshold "
                f"{fmt_score(thr, msp)} (margin {msp - thr:+.3f}); {agree}.")
    s = (f"**Rejected — refer to a specialist**: no known class is confident enough. The best, {pred.label}, "
         f"reaches only {fmt_score(msp, thr)}, {thr - msp:.3f} below the threshold {fmt_score(thr, msp)}; {agree}.")
    sums = float(np.sum(pred.p1)), float(np.sum(pred.p2))
    if min(sums) < 0.99:
        s += (f" Part of the shortfall is the entropy filter: dropped patches count as zero, so p¹ and p² sum "
              f"to {sums[0]:.2f} and {sums[1]:.2f}, not 1.")
    return s


def teaching_markdown(pred, ctx: Context) -> str:
    """The walk-through for this image."""
    n, S = pred.n, ctx.image_size
    C = len(pred.classes)
    M = 1 + n * n + 4 * n * n
    c = pred.class_index
    out = ["### How HVL reached this decision", ""]
    if "random" in (pred.backbone or ""):
        out += ["> ⚠ This backbone has **random weights** (a test backbone): the numbers below show the "
                "mechanics, not medical meaning.", ""]
    size = f"{ctx.original_size[0]}×{ctx.original_size[1]} px" if ctx.original_size else "the image"
    notes = f" ({'; '.join(ctx.image_notes)})" if ctx.image_notes else ""
    src = ("cut from your image's own pixels (native detail)" if ctx.detail == "native"
           else "an enlargement of the view")
    out += [
        f"**1. Crops at three scales.** Your upload ({size}{notes}) becomes the encoder's view: short side "
        f"resized to {S} px, centre {S}×{S} kept. *Scale 0* is that view (1 crop). *Scale 1* enlarges it {n}× and "
        f"cuts a {n}×{n} grid: {n * n} crops of {S}×{S}. *Scale 2* enlarges it {2 * n}× and cuts a "
        f"{2 * n}×{2 * n} grid: {4 * n * n} crops (each grid is {src}). All 1 + {n * n} + {4 * n * n} = **{M} crops** "
        f"go through the encoder ({pred.backbone}) in one batch.",
        "",
        "**2. Fusion, coarse to fine (Eq. 1).** Each mid-scale patch gets the whole-image embedding added, "
        "weighted by how similar the two are (their cosine): û¹ᵢ = u¹ᵢ + cos(u¹ᵢ, u⁰)·u⁰. Each high-scale patch "
        "then does the same with its already-fused parent mid-scale patch: û²ⱼ = u²ⱼ + cos(u²ⱼ, û¹ⱼ*)·û¹ⱼ*. "
        "A small patch is thus read in the context of the region around it.",
        "",
        f"**3. Patch predictions and the entropy filter (Eq. 2–3).** Every patch is compared with the text of each "
        f"of the C = {C} known classes ({score_words(ctx)} ÷ τ = {pred.tau:g}, then softmax): one probability per "
        f"class. Its entropy H = −Σ p·log p says how unsure it is: 0 = certain of one class, "
        f"ln C = {math.log(C) if C > 1 else 0.0:.3f} = evenly split. Patches less certain than their scale's "
        "average are dropped as *disease-irrelevant* (background, hair, blank slide).",
        "",
        scale_paragraph("Mid", "¹", pred.entropy1, pred.keep1, pred.p1, ctx),
        scale_paragraph("High", "²", pred.entropy2, pred.keep2, pred.p2, ctx),
        "",
        f"**4. The fused score.** p_ID = (p⁰ + p¹ + p²) ÷ 3, the average of what the three scales say. "
        f"For {pred.label}: ({pred.p0[c]:.3f} + {pred.p1[c]:.3f} + {pred.p2[c]:.3f}) ÷ 3 = **{pred.p_id[c]:.3f}**.",
        "",
        "| class | p⁰ whole | p¹ mid | p² high | p_ID |",
        "|---|---|---|---|---|",
    ]
    for i in np.argsort(-pred.p_id, kind="stable"):
        out.append(f"| {pred.classes[i]} | {pred.p0[i]:.3f} | {pred.p1[i]:.3f} | {pred.p2[i]:.3f} | {pred.p_id[i]:.3f} |")
    gains = [f"{cells_text([rc])} ΔH = {fmt_signed(pred.entropy_gain[rc[0], rc[1]], 3)}" for rc in pred.pseudo_ood]
    positive = sum(pred.entropy_gain[r, c] > 0 for r, c in pred.pseudo_ood)
    out += [
        "",
        f"**5. Pseudo-OOD patches (Eq. 4–5, a training signal).** The entropy gain ΔH = H(high patch) − H(its mid "
        f"parent) is largest where zooming in makes the model *less* sure — often a lesion's boundary. The K = "
        f"{pred.k} largest here: {'; '.join(gains) if gains else 'none'}; the {positive} with ΔH > 0 are outlined on the ΔH map as candidates. "
        "In training, HVL pushes these patches "
        "towards 'no known class' (high entropy at every scale), which teaches it what unknown looks like; at "
        "inference they are only shown.",
        "",
    ]
    thr_src = ("calibrated on the checkpoint's validation data so that 95% of known-class images pass"
               if ctx.calibrated else "the documented default (this head has no calibrated threshold)")
    op = "≥" if pred.known else "<"
    verdict = f"known: **{pred.label}**" if pred.known else "**unknown — refer to a specialist**"
    out += [
        f"**6. Decision.** MSP = the largest p_ID = {fmt_score(pred.msp, pred.threshold)} ({pred.label}). "
        f"Threshold t = {fmt_score(pred.threshold, pred.msp)}, {thr_src}. MSP {op} t, so the image is {verdict}. "
        "Move the threshold slider to see where the decision flips: a higher threshold rejects more.",
        "",
        why_sentence(pred),
    ]
    return "\n".join(out)
