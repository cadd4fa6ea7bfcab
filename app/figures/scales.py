"""The per-scale chart: p⁰, p¹, p² and the fused p_ID of the likeliest classes, as bars."""

from __future__ import annotations

import html
from dataclasses import dataclass

import numpy as np

from hvl_core import scores
from hvl_core.model import DROPPED_LABEL, OTHER_LABEL

from ..decision import fmt_num
from .base import Figure, array_key

#: bar colours of the per-scale chart (Okabe–Ito): p⁰, p¹, p², and p_ID in black
SERIES = (
    ("p⁰", "whole image", "#56B4E9"),
    ("p¹", "mid scale", "#E69F00"),
    ("p²", "high scale", "#009E73"),
    ("p_ID", "fused: (p⁰ + p¹ + p²) ÷ 3", "#000000"),
)


# --------------------------------------------------------------------------- per-scale chart


def scales_key(pred) -> str:
    return array_key(
        pred.p0,
        pred.p1,
        pred.p2,
        pred.p_id,
        tuple(sorted(pred.p_other.items())),
        tuple(sorted(pred.p_dropped.items())),
        round(float(pred.threshold), 6),
        pred.score_name,
        tuple(pred.classes),
    )


def scale_rows(pred, max_classes: int = 3) -> list[tuple[str, list[float], bool]]:
    """The chart's rows as (label, [p⁰, p¹, p², p_ID], is a known class): the likeliest known
    classes, the rest of them together, "other (not a known class)" and the dropped share —
    each column sums to 1 over the rows."""
    names = ("p0", "p1", "p2", "p_id")
    series = [getattr(pred, s) for s in names]
    order = np.argsort(-pred.p_id, kind="stable")
    rows = [(pred.classes[i], [float(p[i]) for p in series], True) for i in order[:max_classes]]
    rest = order[max_classes:]
    if len(rest):
        rows.append((f"the {len(rest)} less likely known classes", [float(p[rest].sum()) for p in series], False))
    if pred.negatives:
        rows.append((OTHER_LABEL, [float(pred.p_other[s]) for s in names], False))
    if any(pred.p_dropped[s] > 0 for s in names):
        rows.append((DROPPED_LABEL, [float(pred.p_dropped[s]) for s in names], False))
    return rows


def scales_html(pred, max_classes: int = 3) -> str:
    """Horizontal bars per row of ``scale_rows``: p⁰, p¹, p² and the fused p_ID; with the MSP
    score, the threshold drawn across the known classes' p_ID bars; the legend above the bars."""
    rows_data = scale_rows(pred, max_classes)
    msp = pred.score_name == "msp"
    thr = min(max(float(pred.threshold), 0.0), 1.0) * 100
    legend = "".join(
        f"<li><span class='hvl-swatch' style='background:{col}'></span>{sym} {html.escape(what)}</li>"
        for sym, what, col in SERIES
    )
    rows = []
    for label, values, known in rows_data:
        bars = []
        for (sym, _, col), v in zip(SERIES, values):
            line = (
                f"<span class='hvl-thr' style='left:{thr:.2f}%' title='threshold'></span>"
                if msp and known and sym == "p_ID"
                else ""
            )
            bars.append(
                f"<div class='hvl-barrow'><span class='hvl-sym'>{sym}</span><div class='hvl-track'>"
                f"<div class='hvl-fill' style='width:{min(max(v, 0), 1) * 100:.2f}%;background:{col}'></div>{line}</div>"
                f"<span class='hvl-val'>{fmt_num(v, 3)}</span></div>"
            )
        cls = "hvl-class" if known else "hvl-class hvl-rest"
        rows.append(
            f"<div class='{cls}'><div class='hvl-class-name'>{html.escape(label)}</div>"
            f"<div class='hvl-bars'>{''.join(bars)}</div></div>"
        )
    notes = [
        "Each colour sums to 1 over the rows: the known classes, "
        + (
            "“other (not a known class)” — the negative classes, in every softmax but never the answer — "
            if pred.negatives
            else ""
        )
        + "and the share of patches the entropy filter dropped (p¹ and p² divide by all patches)."
    ]
    if msp:
        notes.append(
            f"The vermillion line across the p_ID bars is the threshold {fmt_num(pred.threshold, 3)}: the "
            "image is known only if the top p_ID reaches it."
        )
    else:
        notes.append(
            f"The decision uses the {scores.label(pred.score_name)} score, not these "
            "probabilities: its threshold is on the verdict's bar."
        )
    return (
        f"<figure class='hvl-fig' id='scales-fig' aria-label='Where the probability of each scale goes'>"
        f"<figcaption class='hvl-fig-title'>What each scale says, and the fused prediction</figcaption>"
        f"<ul class='hvl-legend'>{legend}</ul><div class='hvl-chart'>{''.join(rows)}</div>"
        f"<div class='hvl-fig-notes'>{''.join(f'<p>{n}</p>' for n in notes)}</div></figure>"
    )


@dataclass(frozen=True)
class ScalesChart(Figure):
    """The per-scale chart of a prediction."""

    pred: object

    def key(self) -> str:
        return scales_key(self.pred)

    def html(self) -> str:
        return scales_html(self.pred)
