"""The decision as words and as a bar: what the clinician reads first.

Pure functions of a ``Prediction``: ``pred.outcome`` is hvl_core's verdict (HVL_SPEC §11: out of
scope, unknown or known; ``pred.known`` when known: in scope and score ≥ threshold), worded by
``hvl_core.verdicts``;
``pred.score`` the decision score named ``pred.score_name`` ("msp", "energy" or "maxlogit",
HVL_SPEC §9) and the threshold is in its units. ``score_window`` is the stretch of the score
that the threshold slider and the verdict bar cover.
"""

from __future__ import annotations

import dataclasses
import html
import math

import numpy as np

from hvl_core import scores, verdicts
from hvl_core.head import score_range

UNKNOWN_TEXT = "Unknown — refer to a specialist"
#: an unbounded (or very wide) score gets a window reaching this far past the threshold and the score
WINDOW_MARGIN = 5.0


def fmt_score(x: float, other: float | None = None) -> str:
    """A score with 3 decimals, or more when 3 would make it look equal to ``other``."""
    for digits in (3, 4, 5, 6):
        s = fmt_num(x, digits)
        if other is None or x == other or s != fmt_num(other, digits):
            return s
    return fmt_num(x, 6)


def fmt_num(x: float, digits: int = 2) -> str:
    """``x`` with ``digits`` decimals, never "-0.00": a value that rounds to zero is written 0."""
    s = f"{float(x):.{digits}f}"
    return s[1:] if s.startswith("-") and float(s) == 0 else s


def fmt_signed(x: float, digits: int = 2) -> str:
    """A signed value: "+0.12", "−0.12" (a true minus sign), and "0.00" when it rounds to zero."""
    s = fmt_num(abs(float(x)), digits)
    if float(s) == 0:
        return s
    return ("+" if x > 0 else "−") + s


def separating_digits(values, ref: float, lo: int = 2, hi: int = 5) -> int:
    """The fewest decimals (``lo``..``hi``) at which every value's rounded form is above the
    rounded ``ref`` exactly when the value is: so a patch shown as "0.00" is never marked as
    above a mean shown as "0.00"."""
    v = np.asarray(values, dtype=float).ravel()
    for d in range(lo, hi + 1):
        if np.array_equal(np.round(v, d) > round(float(ref), d), v > ref):
            return d
    return hi


def score_label(pred) -> str:
    """The page's short name of the prediction's score ("MSP", "energy")."""
    return scores.label(pred.score_name)


def unit(score_name: str) -> str:
    """How a threshold in score ``score_name`` is read ("MSP, 0 to 1", "energy units")."""
    return scores.SCORES[score_name].unit if score_name in scores.SCORES else score_name


def score_window(score_range, values, current: tuple[float, float] | None = None) -> tuple[float, float]:
    """The stretch of the score the threshold slider and the verdict bar cover.

    ``score_range`` = (lo, hi), ``None`` for an unbounded end. A bounded range of width ≤ 1
    (MSP's [0, 1]) is used whole. Otherwise (energy, max-logit: unbounded, or ±1/τ wide) a
    window around ``values`` (the threshold and the image's score), ``WINDOW_MARGIN`` past both
    and rounded out to whole units, inside the range. ``current`` is kept while it still holds
    every value, so the slider does not move under the hand."""
    lo, hi = score_range
    if lo is not None and hi is not None and hi - lo <= 1:
        return float(lo), float(hi)
    vals = [float(v) for v in values if v is not None and math.isfinite(float(v))]
    if current is not None and all(current[0] <= v <= current[1] for v in vals):
        return current
    if not vals:
        vals = [0.0]
    a, b = math.floor(min(vals) - WINDOW_MARGIN), math.ceil(max(vals) + WINDOW_MARGIN)
    return float(a if lo is None else max(a, lo)), float(b if hi is None else min(b, hi))


def threshold_slider(score_name: str, rng, values, current=None, **extra) -> dict:
    """``gr.update`` arguments for the threshold slider: its label in the score's units, and the
    range ``score_window`` gives (kept while it holds the threshold and the score)."""
    lo, hi = score_window(rng, values, current)
    return dict(minimum=lo, maximum=hi, label=f"Threshold ({unit(score_name)})", **extra)


def model_score_range(model, score: str | None = None) -> tuple:
    """The model's score range with ``None`` for an unbounded end (as ``Prediction.score_range``)."""
    cfg = model.head.config if score is None else dataclasses.replace(model.head.config, score=score)
    lo, hi = score_range(cfg, len(model.classes.names))
    return (lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None)


#: verdict colours (text, background), each ≥ 4.5:1 on its background
COLOURS = {
    verdicts.KNOWN: ("#1a7f37", "#e9f7ee"),
    verdicts.UNKNOWN: ("#b35900", "#fff4e5"),
    verdicts.OUT_OF_SCOPE: ("#44546a", "#eef1f5"),
}


def decision_text(pred) -> str:
    """``"Known: <class> (score)"`` — the score named unless it is the paper's MSP —,
    ``"Unknown — refer to a specialist"`` or ``"Out of scope — this model cannot judge it"``."""
    o = pred.outcome
    if o == verdicts.KNOWN:
        name = "" if pred.score_name == "msp" else score_label(pred) + " "
        return f"Known: {pred.label} ({name}{fmt_score(pred.score, pred.threshold)})"
    return UNKNOWN_TEXT if o == verdicts.UNKNOWN else verdicts.headline(pred)


def above(pred) -> bool:
    """Stage 2's answer alone: the score reaches the threshold (known, if the image is in scope)."""
    return pred.score >= pred.threshold


def comparison_text(pred) -> str:
    """``"MSP 0.612 ≥ threshold 0.500"`` (or ``<``), in the decision score's units."""
    op = "≥" if above(pred) else "<"
    return (
        f"{score_label(pred)} {fmt_score(pred.score, pred.threshold)} {op} threshold "
        f"{fmt_score(pred.threshold, pred.score)}"
    )


def bar_position(value: float, window: tuple[float, float] = (0.0, 1.0)) -> float:
    """Percent position of a score on the bar that spans ``window`` (clipped)."""
    lo, hi = window
    return round(min(max((float(value) - lo) / (hi - lo), 0.0), 1.0) * 100, 2)


def decision_html(pred, threshold_note: str = "", window: tuple[float, float] | None = None) -> str:
    """The verdict, and the decision score drawn against the threshold on a bar spanning
    ``window`` (default: the score's own range, or one around the score and the threshold)."""
    window = window or score_window(pred.score_range, (pred.score, pred.threshold))
    known = bool(pred.known)
    o = pred.outcome
    colour, bg = COLOURS[o]
    pos, thr = bar_position(pred.score, window), bar_position(pred.threshold, window)
    sub = html.escape(comparison_text(pred))
    lines = [verdicts.meaning(pred)]
    if o == verdicts.OUT_OF_SCOPE and pred.score >= pred.threshold:
        lines.append(f"The known-class score alone would have said {pred.label}: the in-scope check stopped it first.")
    elif o == verdicts.UNKNOWN:
        lines.append(f"Nearest known class, for reference only: {pred.label} (p_ID {fmt_score(pred.msp)}).")
    said = "".join(f"<div class='hvl-meaning' style='margin-top:2px'>{html.escape(t)}</div>" for t in lines)
    note = (
        f"<div style='font-size:0.85em;color:#444;margin-top:4px'>{html.escape(threshold_note)}</div>"
        if threshold_note
        else ""
    )
    pv = verdicts.p_value_words(pred)
    pv_line = f"<div class='hvl-pvalue' style='margin-top:4px'>{html.escape(pv)}</div>" if pv else ""
    lo, hi = (fmt_num(v, 0 if float(v).is_integer() else 2) for v in window)
    return f"""
<div class="hvl-decision" data-known="{int(known)}" data-outcome="{html.escape(o)}" data-score="{pred.score:.6f}" data-msp="{pred.msp:.6f}"
     data-threshold="{pred.threshold:.6f}" data-score-name="{html.escape(pred.score_name)}"
     style="border:2px solid {colour};background:{bg};border-radius:10px;padding:12px 16px;color:#111">
  <div class="hvl-verdict" style="font-size:1.6em;font-weight:700;color:{colour}">{html.escape(verdicts.headline(pred))}</div>
  {said}
  <div style="font-size:0.95em;margin-top:4px">{sub}</div>
  <div class="hvl-bar" style="position:relative;height:22px;margin:10px 0 4px 0;background:#ddd;border-radius:4px">
    <div class="hvl-bar-fill" style="position:absolute;left:0;top:0;bottom:0;width:{pos}%;background:{colour};border-radius:4px"></div>
    <div class="hvl-bar-threshold" title="threshold" style="position:absolute;top:-6px;bottom:-6px;left:calc({thr}% - 2px);width:4px;background:#111"></div>
  </div>
  <div style="position:relative;height:1.4em;font-size:0.8em;color:#333;white-space:nowrap">
    <span style="position:absolute;left:0">{lo}</span>
    <span class="hvl-threshold-label" style="position:absolute;left:clamp(2.5em, calc({thr}% - 5em), calc(100% - 12.5em));width:10em;text-align:center">threshold {fmt_score(pred.threshold, pred.score)}</span>
    <span style="position:absolute;right:0">{hi}</span>
  </div>
  {pv_line}
  {note}
</div>"""


def threshold_note(pred, measured_elsewhere: bool = True, where: bool = False) -> str:
    """Where the threshold comes from, in the score's units. ``measured_elsewhere`` False: the
    model has no threshold of its own for this score (none measured or calibrated), so the
    slider started at the image's own score. ``where``: name the file with the measurements."""
    t = f"Threshold {fmt_score(pred.threshold)} ({unit(pred.score_name)})"
    source = pred.threshold_source
    if source == "calibrated":
        if getattr(pred, "n_calibration", 0):
            return f"{t}: calibrated on {pred.n_calibration} known images (≤ 5% referred)."
        return f"{t}: calibrated on the checkpoint's validation images so that 95% of its known images pass."
    if source == "measured":
        return f"{t}: this backbone's default for these classes, measured on real images" + (
            " (bench/results/decision_defaults.md)." if where else "."
        )
    if source == "default":
        return f"{t}: a neutral default, not measured for this backbone and class set."
    if not measured_elsewhere:
        return (
            f"{t}: no {score_label(pred)} threshold was measured or calibrated for this backbone and class set, "
            "so it started just under the image's own score; set it yourself."
        )
    return f"{t}: set by you."


def error_html(message: str) -> str:
    return (
        f"<div class='hvl-error' style='border:2px solid #b42318;background:#fef3f2;border-radius:10px;"
        f"padding:12px 16px;color:#111'><div style='font-weight:700;color:#b42318;font-size:1.2em'>"
        f"Could not analyse</div><div class='hvl-error-message'>{html.escape(message)}</div></div>"
    )


def empty_html() -> str:
    return (
        "<div class='hvl-empty' style='border:2px dashed #999;border-radius:10px;padding:12px 16px;color:#444'>"
        "Upload an image or click an example to get a decision.</div>"
    )


def top_classes(pred, k: int = 4) -> dict[str, float]:
    """Where the fused probability goes, for ``gr.Label``: the ``k`` likeliest known classes,
    the rest of the known classes together, then "other (not a known class)" (the negative
    classes) and the share the entropy filter dropped — summing to 1, so nothing is hidden."""
    shares = pred.shares("p_id")
    C = len(pred.classes)
    known = sorted(shares[:C], key=lambda kv: -kv[1])
    out = {name: round(p, 6) for name, p in known[:k]}
    if len(known) > k:
        out[f"the {len(known) - k} less likely known classes"] = round(sum(p for _, p in known[k:]), 6)
    out.update({name: round(p, 6) for name, p in shares[C:]})
    return out
