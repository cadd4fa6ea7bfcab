"""The decision as words and as a bar: what the clinician reads first.

Pure functions of a ``Prediction`` (``pred.known`` is hvl_core's verdict: MSP ≥ threshold).
"""
from __future__ import annotations

import html

import numpy as np

UNKNOWN_TEXT = "Unknown — refer to a specialist"


def fmt_score(x: float, other: float | None = None) -> str:
    """A score with 3 decimals, or more when 3 would make it look equal to ``other``."""
    for digits in (3, 4, 5, 6):
        s = f"{x:.{digits}f}"
        if other is None or x == other or s != f"{other:.{digits}f}":
            return s
    return f"{x:.6f}"


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


def decision_text(pred) -> str:
    """``"Known: <class> (score)"`` or ``"Unknown — refer to a specialist"``."""
    if pred.known:
        return f"Known: {pred.label} ({fmt_score(pred.msp, pred.threshold)})"
    return UNKNOWN_TEXT


def comparison_text(pred) -> str:
    """``"MSP 0.612 ≥ threshold 0.500"`` (or ``<``)."""
    op = "≥" if pred.known else "<"
    return (f"MSP {fmt_score(pred.msp, pred.threshold)} {op} threshold "
            f"{fmt_score(pred.threshold, pred.msp)}")


def bar_position(value: float) -> float:
    """Percent position of a score on the 0–1 bar (clipped)."""
    return round(min(max(float(value), 0.0), 1.0) * 100, 2)


def decision_html(pred, threshold_note: str = "") -> str:
    """The verdict, and the MSP drawn against the threshold on a 0–1 bar."""
    known = bool(pred.known)
    colour = "#1a7f37" if known else "#b35900"
    bg = "#e9f7ee" if known else "#fff4e5"
    msp, thr = bar_position(pred.msp), bar_position(pred.threshold)
    sub = html.escape(comparison_text(pred))
    best = "" if known else (f"<div style='font-size:0.95em;margin-top:2px'>Closest known class: "
                             f"{html.escape(pred.label)} ({fmt_score(pred.msp, pred.threshold)}), "
                             f"not confident enough.</div>")
    note = f"<div style='font-size:0.85em;color:#555;margin-top:4px'>{html.escape(threshold_note)}</div>" if threshold_note else ""
    return f"""
<div class="hvl-decision" data-known="{int(known)}" data-msp="{pred.msp:.6f}" data-threshold="{pred.threshold:.6f}"
     style="border:2px solid {colour};background:{bg};border-radius:10px;padding:12px 16px;color:#111">
  <div class="hvl-verdict" style="font-size:1.6em;font-weight:700;color:{colour}">{html.escape(decision_text(pred))}</div>
  {best}
  <div style="font-size:0.95em;margin-top:4px">{sub} &nbsp;·&nbsp; MSP = max<sub>c</sub> p_ID, the fused confidence</div>
  <div class="hvl-bar" style="position:relative;height:22px;margin:14px 0 4px 0;background:#ddd;border-radius:4px">
    <div class="hvl-bar-fill" style="position:absolute;left:0;top:0;bottom:0;width:{msp}%;background:{colour};border-radius:4px"></div>
    <div class="hvl-bar-threshold" title="threshold" style="position:absolute;top:-6px;bottom:-6px;left:calc({thr}% - 2px);width:4px;background:#111"></div>
  </div>
  <div style="position:relative;height:1.4em;font-size:0.8em;color:#333;white-space:nowrap">
    <span style="position:absolute;left:0">0</span>
    <span class="hvl-threshold-label" style="position:absolute;left:clamp(1.5em, calc({thr}% - 5em), calc(100% - 11.5em));width:10em;text-align:center">threshold {pred.threshold:.3f}</span>
    <span style="position:absolute;right:0">1</span>
  </div>
  {note}
</div>"""


def error_html(message: str) -> str:
    return (f"<div class='hvl-error' style='border:2px solid #b42318;background:#fef3f2;border-radius:10px;"
            f"padding:12px 16px;color:#111'><div style='font-weight:700;color:#b42318;font-size:1.2em'>"
            f"Could not analyse</div><div class='hvl-error-message'>{html.escape(message)}</div></div>")


def empty_html() -> str:
    return ("<div class='hvl-empty' style='border:2px dashed #999;border-radius:10px;padding:12px 16px;color:#444'>"
            "Upload an image or click an example to get a decision.</div>")


def top_classes(pred, k: int = 5) -> dict[str, float]:
    """The top classes by p_ID for ``gr.Label``."""
    return {name: round(p, 6) for name, p in pred.top(k)}
