"""OOD metrics with one convention (HVL_SPEC §7): ID is the positive class, the score is MSP
(or any score where higher means more likely known: energy, max-logit, §9; ``msp`` below stands
for it).

- ``accuracy``: top-1 of argmax p_ID on labelled ID images.
- ``auroc``: ``roc_auc_score(is_id, msp)``.
- ``fpr95``: the fraction of OOD images accepted at the threshold that accepts 95% of ID images:
  ``t95`` = the largest score ``t`` with at least 95% of ID scores ``≥ t``; FPR95 = fraction of OOD
  scores ``≥ t95``. Computed as ``fpr[argmax(tpr >= 0.95)]`` of
  ``roc_curve(is_id, msp, drop_intermediate=False)`` (the default ``drop_intermediate=True`` can
  drop exactly that ROC point when it is collinear with its neighbours, and then reports a larger
  FPR). This is the MCM / LoCoOp / GalLoP quantity, not OpenOOD's FPR@95.
- ``aupr`` (AUPR-In): ``average_precision_score(is_id, msp)``; ``aupr_out``: OOD positive, score −msp.
- ``threshold_at_tpr``: the calibration threshold, the MSP value at that same ROC point
  (computable from ID scores alone).
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

TPR_TARGET = 0.95


def _arrays(is_id, scores) -> tuple[np.ndarray, np.ndarray]:
    y = np.asarray(is_id, dtype=bool).reshape(-1)
    s = np.asarray(scores, dtype=np.float64).reshape(-1)
    if y.shape != s.shape:
        raise ValueError(f"{y.size} labels but {s.size} scores")
    if not np.isfinite(s).all():
        raise ValueError("scores must be finite")
    return y, s


def _need_both(y: np.ndarray) -> bool:
    return bool(y.any() and (~y).any())


def accuracy(pred: Sequence[int], label: Sequence[int]) -> float | None:
    """Top-1 accuracy; None when there are no labelled images."""
    p, t = np.asarray(pred).reshape(-1), np.asarray(label).reshape(-1)
    if p.shape != t.shape:
        raise ValueError(f"{p.size} predictions but {t.size} labels")
    return float((p == t).mean()) if p.size else None


def auroc(is_id, scores) -> float | None:
    """Area under the ROC curve, ID positive; None unless both ID and OOD are present."""
    from sklearn.metrics import roc_auc_score

    y, s = _arrays(is_id, scores)
    return float(roc_auc_score(y, s)) if _need_both(y) else None


def roc_point(is_id, scores, tpr_target: float = TPR_TARGET) -> tuple[float, float, float]:
    """(fpr, tpr, threshold) at the first ROC point with ``tpr >= tpr_target`` (exact curve)."""
    from sklearn.metrics import roc_curve

    y, s = _arrays(is_id, scores)
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    i = int(np.argmax(tpr >= tpr_target))
    return float(fpr[i]), float(tpr[i]), float(thr[i])


def fpr_at_tpr(is_id, scores, tpr_target: float = TPR_TARGET) -> float | None:
    """FPR95 (for ``tpr_target=0.95``): OOD fraction with score ≥ t95; None without both kinds."""
    y, _ = _arrays(is_id, scores)
    if not _need_both(y):
        return None
    return roc_point(is_id, scores, tpr_target)[0]


def fpr95(is_id, scores) -> float | None:
    return fpr_at_tpr(is_id, scores, TPR_TARGET)


def aupr(is_id, scores) -> float | None:
    """AUPR-In: average precision with ID as the positive class."""
    from sklearn.metrics import average_precision_score

    y, s = _arrays(is_id, scores)
    return float(average_precision_score(y, s)) if _need_both(y) else None


def aupr_out(is_id, scores) -> float | None:
    """AUPR-Out: average precision with OOD as the positive class and −score."""
    from sklearn.metrics import average_precision_score

    y, s = _arrays(is_id, scores)
    return float(average_precision_score(~y, -s)) if _need_both(y) else None


def threshold_at_tpr(id_scores, tpr_target: float = TPR_TARGET) -> float:
    """The calibration threshold ``t95``: the largest ``t`` such that at least ``tpr_target`` of the
    ID scores are ``≥ t``, i.e. the ⌈tpr·N⌉-th largest ID score. Equal to the ROC threshold at
    ``argmax(tpr >= tpr_target)`` whatever OOD scores are added (the test checks this)."""
    s = np.sort(np.asarray(id_scores, dtype=np.float64).reshape(-1))[::-1]
    if s.size == 0:
        raise ValueError("no ID scores to calibrate on")
    if not 0 < tpr_target <= 1:
        raise ValueError(f"the TPR target must be in (0, 1], got {tpr_target}")
    # the smallest k with k / N >= target, compared in floating point exactly as the ROC curve does
    N = s.size
    k = max(1, min(N, math.ceil(tpr_target * N)))
    while k > 1 and (k - 1) / N >= tpr_target:
        k -= 1
    while k < N and k / N < tpr_target:
        k += 1
    return float(s[k - 1])


def rates_at_threshold(is_id, scores, threshold: float) -> dict:
    """ID acceptance (TPR) and OOD acceptance (FPR) when 'known' means score ≥ threshold."""
    y, s = _arrays(is_id, scores)
    acc = s >= threshold
    return {"threshold": float(threshold), "tpr": float(acc[y].mean()) if y.any() else None,
            "fpr": float(acc[~y].mean()) if (~y).any() else None}


def ood_metrics(is_id, scores, pred=None, label=None) -> dict:
    """All metrics of §7 as a dict of floats (fractions in [0, 1]; None where undefined)."""
    y, s = _arrays(is_id, scores)
    out = {"auroc": auroc(y, s), "fpr95": fpr95(y, s), "aupr": aupr(y, s), "aupr_out": aupr_out(y, s),
           "n_id": int(y.sum()), "n_ood": int((~y).sum())}
    if y.any():
        out["t95"] = threshold_at_tpr(s[y])
    if pred is not None and label is not None:
        out["accuracy"] = accuracy(pred, label)
    else:
        out["accuracy"] = None
    return out


def mean_std(values: Iterable[float | None]) -> tuple[float | None, float | None, int]:
    """(mean, sample standard deviation (n−1; 0 for one value), count) over the non-None values."""
    v = np.array([x for x in values if x is not None], dtype=np.float64)
    if v.size == 0:
        return None, None, 0
    return float(v.mean()), float(v.std(ddof=1)) if v.size > 1 else 0.0, int(v.size)


def fmt_pct(mean: float | None, std: float | None = None, digits: int = 2) -> str:
    """'88.43 ± 1.20' (percent) or '–'."""
    if mean is None:
        return "–"
    s = f"{100 * mean:.{digits}f}"
    return s + (f" ± {100 * std:.{digits}f}" if std is not None else "")


def compute_metrics(scored, class_names: Sequence[str], threshold: float | None = None) -> dict:
    y = scored.is_id
    out = ood_metrics(y, scored.msp)
    labelled = y & (scored.label >= 0)
    if labelled.any():
        out["accuracy"] = accuracy(scored.pred[labelled], scored.label[labelled])
        out["n_labelled"] = int(labelled.sum())
        out["per_class_accuracy"] = {
            c: (accuracy(scored.pred[labelled & (scored.label == i)], scored.label[labelled & (scored.label == i)])
                if (labelled & (scored.label == i)).any() else None) for i, c in enumerate(class_names)}
    else:
        out["accuracy"] = None
        out["n_labelled"] = 0
    if threshold is not None:
        r = rates_at_threshold(y, scored.msp, threshold)
        out["threshold"] = r["threshold"]
        out["id_accepted_at_threshold"] = r["tpr"]
        out["ood_accepted_at_threshold"] = r["fpr"]
    return out

