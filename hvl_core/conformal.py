"""Conformal OOD decisions from the scores of known calibration images.

Calibration images are ID images the head was not trained on. If a new ID image and the ``N``
calibration images are exchangeable (drawn the same way: same sources, scanners, cameras), its
conformal p-value is uniform on {1/(N+1), …, 1}, so rejecting it when ``p ≤ alpha`` wrongly
rejects a known image with probability at most ``alpha`` (marginally, over the calibration
draw). Nothing is promised for images from a source unlike the calibration images, and nothing
about accepting unknown images.

Ten lines of numpy are clearer here than a conformal library: those (nonconform, crepes,
mapie) wrap a fitted estimator, and here the "estimator" is the fixed score of spec §6/§9.
Benjamini–Hochberg is scipy's ``false_discovery_control``.
"""

from __future__ import annotations

import math

import numpy as np

#: the false-rejection rate of known images the default threshold is set for
ALPHA = 0.05


def conformal_pvalue(score, calib_scores) -> np.ndarray:
    """p(x) = (1 + #{i : s_i ≤ s(x)}) / (N + 1): the share of calibration images (counting x
    itself) that score as low as x or lower. Higher scores are more ID.

    score: scalar or (B,); calib_scores: (N,). Returns an array shaped like ``score``."""
    cal = np.sort(np.asarray(calib_scores, dtype=np.float64).ravel())
    s = np.asarray(score, dtype=np.float64)
    below = np.searchsorted(cal, s, side="right")  # #{s_i <= s}
    return (1.0 + below) / (cal.size + 1.0)


def conformal_threshold(calib_scores, alpha: float = ALPHA) -> float:
    """The smallest threshold t with ``score < t ⇔ p ≤ alpha``: t = s_(k), the k-th smallest
    calibration score, k = ⌊alpha (N + 1)⌋. Known ⇔ score ≥ t. With k = 0 (N < 1/alpha − 1) no
    image can be rejected at level ``alpha``: ``ValueError``."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must be in (0, 1), got {alpha}")
    cal = np.sort(np.asarray(calib_scores, dtype=np.float64).ravel())
    k = math.floor(alpha * (cal.size + 1))
    if k < 1:
        raise ValueError(
            f"{cal.size} calibration scores cannot reject at level {alpha}: "
            f"at least {math.ceil(1 / alpha) - 1} are needed"
        )
    return float(cal[k - 1])


def bh_select(p_values, fdr: float = ALPHA) -> np.ndarray:
    """Benjamini–Hochberg: which images to flag as unknown so that, among the flagged, the
    expected share of known images is at most ``fdr`` (p-values (B,) → bool (B,))."""
    from scipy.stats import false_discovery_control

    p = np.asarray(p_values, dtype=np.float64).ravel()
    if p.size == 0:
        return np.zeros(0, dtype=bool)
    return false_discovery_control(p, method="bh") <= fdr


def bh_min_flagged(p_min: float, m: int, fdr: float = ALPHA) -> int | None:
    """The fewest images Benjamini–Hochberg at ``fdr`` over ``m`` images can flag, when no p-value
    can be under ``p_min`` (``1/(N+1)`` with N calibration scores): it flags the k smallest only if
    the k-th is ``≤ k·fdr/m``, so at least ``⌈m·p_min/fdr⌉`` images must be that unusual together.
    None when that is more than ``m``: BH can flag nothing at this size (HVL_SPEC §11)."""
    if m < 1:
        return None
    k = max(1, math.ceil(m * p_min / fdr - 1e-12))
    return k if k <= m else None


__all__ = ["ALPHA", "conformal_pvalue", "conformal_threshold", "bh_select", "bh_min_flagged"]
