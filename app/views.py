"""The teaching and comparison views as HTML: where this image's score sits among the reference
images, scale 0 alone beside the fused verdict, two images side by side, and a batch's score
histogram. Pure functions of predictions and scores; numbers in the page's text, not in pixels.
"""

from __future__ import annotations

import html
import math

import numpy as np

from . import decision as dec
from .decision import fmt_score
from .single_scale import SCALE_WORDS, score_noun, single_scale, single_scale_sentence

#: Okabe–Ito: ID blue, OOD orange, this image black
ID_COLOUR, OOD_COLOUR, OTHER_COLOURS = "#0072B2", "#E69F00", ("#009E73", "#CC79A7", "#56B4E9")
#: the known classes in pictures the backbone never saw (near-OOD): Okabe–Ito bluish green
NEAR_COLOUR = "#009E73"
HIST_BINS = 12

CSS = """
.hvl-axis-row { display: grid; grid-template-columns: minmax(7em, 12em) 1fr; align-items: center; gap: 8px; margin: 6px 0; font-size: var(--hvl-small); }
.hvl-axis-track { position: relative; height: 1.6em; background: #eef0f3; border-radius: 3px; }
.hvl-dot { position: absolute; top: 50%; width: 12px; height: 12px; margin: -6px 0 0 -6px; border-radius: 50%; border: 1px solid #222; }
.hvl-mark { position: absolute; top: -3px; bottom: -3px; width: 4px; margin-left: -2px; background: #000; }
.hvl-axis-thr { position: absolute; top: -6px; bottom: -6px; width: 3px; margin-left: -1px; background: #D55E00; }
.hvl-axis-ticks { display: flex; justify-content: space-between; font-size: var(--hvl-small); color: #222; }
.hvl-cards { display: flex; gap: 10px; flex-wrap: wrap; }
.hvl-card { flex: 1 1 220px; border: 2px solid #999; border-radius: 8px; padding: 8px 12px; color: #111; }
.hvl-card-title { font-weight: 700; font-size: max(var(--hvl-small), 0.92em); }
.hvl-card-verdict { font-size: 1.15em; font-weight: 700; margin: 2px 0; }
.hvl-hist { display: flex; align-items: flex-end; gap: 2px; height: 120px; position: relative; border-bottom: 1px solid #333; }
.hvl-hist-bar { flex: 1 1 0; min-height: 1px; }
.hvl-hist-thr { position: absolute; top: 0; bottom: 0; width: 3px; margin-left: -1px; background: #D55E00; }
.hvl-compare { display: grid; grid-template-columns: 1fr 1fr; gap: 12px; }
.hvl-compare-side { min-width: 0; }
.hvl-compare .hvl-pic img { max-height: 300px; width: auto; max-width: 100%; }
@media (max-width: 700px) { .hvl-compare { grid-template-columns: 1fr; } .hvl-axis-row { grid-template-columns: 1fr; }
  #batch-table table, #batch-table td, #batch-table th { font-size: var(--hvl-small) !important; } }
.hvl-highlight { outline: 4px solid #D55E00 !important; outline-offset: 3px; border-radius: 6px; }
"""


def score_axis(values, pred_or_range, threshold: float) -> tuple[float, float]:
    """The axis the scores are drawn on: the score's range when bounded (MSP: 0–1), else the
    values and the threshold with 5% room either side."""
    rng = getattr(pred_or_range, "score_range", pred_or_range)
    lo, hi = rng or (None, None)
    if lo is not None and hi is not None and math.isfinite(lo) and math.isfinite(hi):
        return float(lo), float(hi)
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))] + [float(threshold)]
    a, b = min(v), max(v)
    pad = 0.05 * (b - a) if b > a else 1.0
    return (a - pad if lo is None else float(lo)), (b + pad if hi is None else float(hi))


def position(x: float, lo: float, hi: float) -> float:
    """Percent position of ``x`` on the axis ``[lo, hi]`` (clipped)."""
    return round(min(max((float(x) - lo) / (hi - lo), 0.0), 1.0) * 100, 2) if hi > lo else 50.0


def _ticks(lo: float, hi: float) -> str:
    return "".join(f"<span>{fmt_score(v)}</span>" for v in (lo, (lo + hi) / 2, hi))


# --------------------------------------------------------------------------- score distribution


def reference_groups(ref, unseen: dict[str, str] | None = None) -> list[tuple[str, list[float]]]:
    """The reference set's groups, with the examples of the ID kind whose kind of picture the
    backbone never saw (``unseen``: ``{file name: imaging}``, ``app.messages.unseen_examples``) in a
    group of their own: the known classes, in pictures the backbone never saw — not "known (ID)"."""
    groups = ref.groups()
    if not ref.id_kind or not unseen:
        return groups
    near = [i for i, (n, k) in enumerate(zip(ref.names, ref.kinds)) if k == ref.id_kind and n in unseen]
    if not near:
        return groups
    what = ", ".join(dict.fromkeys(unseen[ref.names[i]] for i in near))
    ids = [s for i, (s, k) in enumerate(zip(ref.scores, ref.kinds)) if k == ref.id_kind and i not in near]
    return [
        groups[0][:1] + (ids,),
        (f"known classes, unseen imaging: {what}", [ref.scores[i] for i in near]),
        *groups[1:],
    ]


def distribution_summary(ref, pred, unseen: dict[str, str] | None = None) -> list[str]:
    """Sentences: how many reference images of each group this image's score beats, and what the
    threshold does to each group."""
    out = []
    for name, scores in reference_groups(ref, unseen):
        if not scores:
            continue
        below = sum(s < pred.score for s in scores)
        passed = sum(s >= pred.threshold for s in scores)
        out.append(
            f"{html.escape(name)}: this image scores above {below} of {len(scores)}; the threshold accepts "
            f"{passed} of {len(scores)}."
        )
    return out


def distribution_html(ref, pred, unseen: dict[str, str] | None = None) -> str:
    """This image's score (black bar) on the reference images' scores (dots, one row per group),
    the threshold drawn across. ``unseen``: see ``reference_groups``."""
    name = score_noun(pred)
    lo, hi = score_axis(list(ref.scores) + [pred.score], pred, pred.threshold)
    thr = position(pred.threshold, lo, hi)
    groups = reference_groups(ref, unseen)
    rows = [("this image", None)] + groups
    html_rows = []
    for i, (group, scores) in enumerate(rows):
        if scores is None:
            marks = f"<span class='hvl-mark' style='left:{position(pred.score, lo, hi)}%' title='this image {fmt_score(pred.score)}'></span>"
        else:
            colour = (
                (ID_COLOUR if i == 1 else NEAR_COLOUR if "unseen" in group else OOD_COLOUR)
                if ref.id_kind
                else OTHER_COLOURS[(i - 1) % len(OTHER_COLOURS)]
            )
            marks = "".join(
                f"<span class='hvl-dot' style='left:{position(s, lo, hi)}%;background:{colour}' "
                f"title='{fmt_score(s)}'></span>"
                for s in scores
            )
        label = html.escape(group) + ("" if scores is None else f" ({len(scores)})")
        html_rows.append(
            f"<div class='hvl-axis-row'><span>{label}</span><div class='hvl-axis-track'>{marks}"
            f"<span class='hvl-axis-thr' style='left:{thr}%'></span></div></div>"
        )
    ticks = f"<div class='hvl-axis-row'><span></span><div class='hvl-axis-ticks'>{_ticks(lo, hi)}</div></div>"
    n = len(ref.scores)
    notes = [
        f"{name} of {n} reference images (the examples shipped with the demo), decided with this model and "
        f"these options; the vermillion line is the threshold {fmt_score(pred.threshold, pred.score)}, the black bar "
        f"this image ({fmt_score(pred.score, pred.threshold)}).",
        *distribution_summary(ref, pred, unseen),
    ]
    if not ref.id_kind:
        notes.append("This class set has no matching example kind, so the images are grouped by kind, not ID/OOD.")
    notes.append("A handful of images: a sketch of where known and unknown images fall, not a calibration.")
    alt = " ".join(notes)
    return (
        f"<figure class='hvl-fig' id='distribution-fig' role='img' aria-label='{html.escape(alt, quote=True)}'>"
        f"<figcaption class='hvl-fig-title'>Where this image's {html.escape(name)} sits among known and unknown "
        f"images</figcaption>{''.join(html_rows)}{ticks}"
        f"<div class='hvl-fig-notes'>{''.join(f'<p>{t}</p>' for t in notes)}</div></figure>"
    )


def waiting_html(what: str) -> str:
    return f"<div class='hvl-fig-notes'><p>{html.escape(what)}</p></div>"


# --------------------------------------------------------------------------- one scale vs three


def _card(title: str, known: bool, label: str, score: float, threshold: float, name: str) -> str:
    colour = "#1a7f37" if known else "#b35900"
    verdict = f"Known: {label}" if known else dec.UNKNOWN_TEXT
    op = "≥" if known else "<"
    return (
        f"<div class='hvl-card' data-known='{int(known)}' style='border-color:{colour}'>"
        f"<div class='hvl-card-title'>{html.escape(title)}</div>"
        f"<div class='hvl-card-verdict' style='color:{colour}'>{html.escape(verdict)}</div>"
        f"<div>{html.escape(name)} {fmt_score(score, threshold)} {op} threshold {fmt_score(threshold, score)}</div></div>"
    )


def single_scale_html(pred) -> str:
    """Scale 0 alone (MCM-style) beside the fused HVL verdict, the three per-scale terms on one
    axis with the threshold, and which scale changed the answer."""
    ss = single_scale(pred)
    name = score_noun(pred)
    cards = _card(
        "Whole image alone (scale 0, MCM-style)", ss.known0, ss.label0, ss.score0, pred.threshold, name
    ) + _card("HVL: three scales fused", dec.above(pred), pred.label, pred.score, pred.threshold, name)
    lo, hi = score_axis(list(ss.terms) + [pred.score, ss.score0], pred, pred.threshold)
    thr = position(pred.threshold, lo, hi)
    term = "p(c*)" if pred.score_name == "msp" else "term"
    rows = []
    for s, (word, v) in enumerate(zip((*SCALE_WORDS, "fused (mean)"), (*ss.terms, pred.score))):
        bold = " style='font-weight:700'" if s == 3 or s in ss.movers else ""
        rows.append(
            f"<div class='hvl-axis-row'><span{bold}>{html.escape(word)} {term if s < 3 else ''} "
            f"{fmt_score(v, pred.threshold)}</span><div class='hvl-axis-track'>"
            f"<span class='hvl-mark' style='left:{position(v, lo, hi)}%'></span>"
            f"<span class='hvl-axis-thr' style='left:{thr}%'></span></div></div>"
        )
    ticks = f"<div class='hvl-axis-row'><span></span><div class='hvl-axis-ticks'>{_ticks(lo, hi)}</div></div>"
    sentence = single_scale_sentence(pred, ss)
    return (
        f"<figure class='hvl-fig' id='single-scale-fig' data-changed='{int(ss.changed)}'>"
        f"<figcaption class='hvl-fig-title'>HVL against a single scale, same image and backbone</figcaption>"
        f"<div class='hvl-cards'>{cards}</div>{''.join(rows)}{ticks}"
        f"<div class='hvl-fig-notes'><p>{html.escape(sentence)}</p></div></figure>"
    )


# --------------------------------------------------------------------------- compare two images


def compare_side_html(title: str, pred, thumbnail: str, main_map: str) -> str:
    ss = single_scale(pred)
    facts = (
        f"<p>{html.escape(score_noun(pred))} {fmt_score(pred.score, pred.threshold)} · top class "
        f"{html.escape(pred.label)} · whole image alone: "
        f"{html.escape('known' if ss.known0 else 'unknown')} ({fmt_score(ss.score0, pred.threshold)})</p>"
    )
    return (
        f"<div class='hvl-compare-side'><h3>{html.escape(title)}</h3>{dec.decision_html(pred)}"
        f"<div class='hvl-fig-notes'>{facts}</div>{thumbnail}{main_map}</div>"
    )


def compare_html(sides: list[str]) -> str:
    return f"<div class='hvl-compare' id='compare-grid'>{''.join(sides)}</div>"


# --------------------------------------------------------------------------- batch histogram


def histogram_counts(
    scores, threshold: float, lo: float, hi: float, bins: int = HIST_BINS
) -> tuple[np.ndarray, np.ndarray]:
    """Counts of ``scores`` in bins of width ``(hi − lo) / bins`` and the bin edges: the edges are
    shifted so that ``threshold`` (when inside ``[lo, hi]``) is one of them, so no bin holds both
    known and unknown images (one more bin then covers the axis). Bins are closed on the left, like
    the decision (score ≥ threshold: known)."""
    width = (hi - lo) / bins
    if not lo < threshold < hi or width <= 0:
        edges = np.linspace(lo, hi, bins + 1)
    else:
        below = math.ceil((threshold - lo) / width - 1e-9)
        above = math.ceil((hi - threshold) / width - 1e-9)
        edges = threshold + width * np.arange(-below, above + 1)
        edges[0], edges[-1] = lo, hi  # the outer bins end at the axis
    x = np.clip(np.asarray(scores, float), lo, hi)
    # left-closed bins: a score equal to an edge belongs to the bin starting there (the last bin holds hi)
    idx = np.clip(np.searchsorted(edges, x, side="right") - 1, 0, len(edges) - 2)
    return np.bincount(idx, minlength=len(edges) - 1), edges


def histogram_html(scores, threshold: float, score_range, name: str, sentence: str = "") -> str:
    """The batch's scores as a histogram, the bins right of the threshold blue (known), the others
    orange, the threshold drawn."""
    scores = [float(s) for s in scores]
    lo, hi = score_axis(scores, score_range, threshold)
    counts, edges = histogram_counts(scores, threshold, lo, hi)
    top = max(int(counts.max()) if len(counts) else 0, 1)
    bars = "".join(
        f"<div class='hvl-hist-bar' title='{fmt_score(a)}–{fmt_score(b)}: {c}' "
        f"style='flex-grow:{(b - a) / (hi - lo):.4f};height:{100 * c / top:.1f}%;"
        f"background:{ID_COLOUR if a >= threshold else OOD_COLOUR}'></div>"
        for a, b, c in zip(edges[:-1], edges[1:], counts)
    )
    thr = position(threshold, lo, hi)
    alt = f"Histogram of {len(scores)} {name} values from {fmt_score(lo)} to {fmt_score(hi)}; threshold {fmt_score(threshold)}. {sentence}"
    legend = (
        f"<ul class='hvl-legend' aria-hidden='true'><li><span class='hvl-swatch' style='background:{ID_COLOUR}'>"
        f"</span>known (≥ threshold)</li><li><span class='hvl-swatch' style='background:{OOD_COLOUR}'></span>"
        "unknown (below it)</li><li><span class='hvl-swatch' style='background:#D55E00;min-width:4px;width:4px'>"
        f"</span>threshold {fmt_score(threshold)}</li></ul>"
    )
    return (
        f"<figure class='hvl-fig' id='batch-hist-fig' role='img' aria-label='{html.escape(alt, quote=True)}'>"
        f"<figcaption class='hvl-fig-title'>{html.escape(name)} of the batch, and the threshold</figcaption>"
        f"{legend}<div class='hvl-hist'>{bars}<span class='hvl-hist-thr' style='left:{thr}%'></span></div>"
        f"<div class='hvl-axis-ticks'>{_ticks(lo, hi)}</div></figure>"
    )
