"""OOD metrics (HVL_SPEC §7). The score is MSP, or any score where higher means "known" (energy,
max-logit, §9); ``msp`` below stands for it.

Three named conventions (``CONVENTIONS``); a table says which one it uses and never mixes them:

- ``exact`` (default, the spec's): ID positive. ``fpr95`` is the fraction of OOD images accepted
  at the threshold that accepts 95% of ID images: ``t95`` = the largest score ``t`` with at least
  95% of ID scores ``≥ t``; FPR95 = fraction of OOD scores ``≥ t95``. Computed as
  ``fpr[argmax(tpr >= 0.95)]`` of ``roc_curve(is_id, msp, drop_intermediate=False)`` (the default
  ``drop_intermediate=True`` can drop exactly that ROC point when it is collinear with its
  neighbours, and then reports a larger FPR). ``auroc`` = ``roc_auc_score``; ``aupr`` (AUPR-In) =
  ``average_precision_score(is_id, msp)``; ``aupr_out`` the same with OOD positive and −msp.
- ``mcm``: what MCM / LoCoOp / GalLoP's code computes (``fpr_and_fdr_at_recall`` of the
  outlier-exposure code, ID positive): the ROC point whose recall is *nearest* 0.95 (it may be
  below), and among points sharing that recall the largest FPR. Equal to ``exact`` on large
  untied sets, not on small or tied ones (HVL_SPEC §7: 20 ID / 4 OOD, exact 0.25, mcm 0.50).
  AUROC and AUPR as ``exact``.
- ``openood``: OpenOOD v1.5's ``auc_and_fpr_recall``: **OOD positive**, score −msp; FPR@95 is the
  fraction of *ID* images rejected at the first point of ``roc_curve(is_ood, -msp)`` (sklearn's
  default, intermediate points dropped) with OOD recall ≥ 0.95 — a different quantity. AUROC is
  the trapezoid under that curve (the same number); AUPR-In/Out are trapezoids under
  ``precision_recall_curve`` (not average precision).

- ``accuracy``: top-1 of argmax p_ID on labelled ID images (all conventions).
- ``threshold_at_tpr``: the calibration threshold, the MSP value at the ``exact`` ROC point
  (computable from ID scores alone).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

from .config import CONVENTIONS, DEFAULT_CONVENTION

TPR_TARGET = 0.95
CONVENTION_NOTES = {
    "exact": "ID positive; FPR95 = fraction of OOD accepted at the threshold accepting 95% of ID (HVL_SPEC §7, exact "
    "ROC point)",
    "mcm": "ID positive; FPR95 as MCM's code (fpr_and_fdr_at_recall: the ROC point with recall nearest 0.95)",
    "openood": "OpenOOD v1.5: OOD positive; FPR@95 = fraction of ID rejected at 95% OOD recall; AUPR by trapezoid",
}


def check_convention(convention: str) -> str:
    if convention not in CONVENTIONS:
        raise ValueError(f"metric convention must be one of {CONVENTIONS}, got {convention!r}")
    return convention


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


def fpr_at_recall_mcm(is_id, scores, recall_level: float = TPR_TARGET) -> float | None:
    """MCM's FPR95 (``fpr_and_fdr_at_recall``, ID positive): the ROC point (one per distinct score,
    plus the origin) with recall nearest ``recall_level``; among equal recalls, the largest FPR."""
    y, s = _arrays(is_id, scores)
    if not _need_both(y):
        return None
    order = np.argsort(s, kind="mergesort")[::-1]
    s, y = s[order], y[order]
    last = np.r_[np.flatnonzero(np.diff(s)), y.size - 1]  # the last index of each distinct score
    tps = np.cumsum(y, dtype=np.float64)[last]
    fps = 1 + last - tps
    stop = int(tps.searchsorted(tps[-1]))  # the curve ends where recall first reaches 1
    recall = np.r_[(tps / tps[-1])[stop::-1], 1.0]
    fps = np.r_[fps[stop::-1], 0.0]
    return float(fps[int(np.argmin(np.abs(recall - recall_level)))] / (~y).sum())


def fpr_at_recall_openood(is_id, scores, recall_level: float = TPR_TARGET) -> float | None:
    """OpenOOD's FPR@95: OOD positive, score −msp; the fraction of ID images flagged as OOD at the
    first point of sklearn's default (intermediate points dropped) ROC with OOD recall ≥ 0.95."""
    from sklearn.metrics import roc_curve

    y, s = _arrays(is_id, scores)
    if not _need_both(y):
        return None
    fpr, tpr, _ = roc_curve(~y, -s)
    return float(fpr[int(np.argmax(tpr >= recall_level))])


def fpr95(is_id, scores, convention: str = DEFAULT_CONVENTION) -> float | None:
    """FPR95 in the named convention (see the module docstring)."""
    fn = {"exact": fpr_at_tpr, "mcm": fpr_at_recall_mcm, "openood": fpr_at_recall_openood}[check_convention(convention)]
    return fn(is_id, scores, TPR_TARGET)


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


def _pr_trapezoid(positive: np.ndarray, score: np.ndarray) -> float:
    """Area under the precision-recall curve by the trapezoid rule (OpenOOD's AUPR)."""
    from sklearn.metrics import auc, precision_recall_curve

    precision, recall, _ = precision_recall_curve(positive, score)
    return float(auc(recall, precision))


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
    return {
        "threshold": float(threshold),
        "tpr": float(acc[y].mean()) if y.any() else None,
        "fpr": float(acc[~y].mean()) if (~y).any() else None,
    }


def ood_metrics(is_id, scores, pred=None, label=None, convention: str = DEFAULT_CONVENTION) -> dict:
    """All metrics of §7 as a dict of floats (fractions in [0, 1]; None where undefined), in the
    named convention (recorded under ``"convention"``)."""
    y, s = _arrays(is_id, scores)
    both = _need_both(y)
    if check_convention(convention) == "openood":
        pr = {"aupr": _pr_trapezoid(y, s) if both else None, "aupr_out": _pr_trapezoid(~y, -s) if both else None}
    else:
        pr = {"aupr": aupr(y, s), "aupr_out": aupr_out(y, s)}
    out = {
        "auroc": auroc(y, s),
        "fpr95": fpr95(y, s, convention),
        **pr,
        "convention": convention,
        "n_id": int(y.sum()),
        "n_ood": int((~y).sum()),
    }
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


def compute_metrics(
    scored, class_names: Sequence[str], threshold: float | None = None, convention: str = DEFAULT_CONVENTION
) -> dict:
    y = scored.is_id
    out = ood_metrics(y, scored.score, convention=convention)
    labelled = y & (scored.label >= 0)
    if labelled.any():
        out["accuracy"] = accuracy(scored.pred[labelled], scored.label[labelled])
        out["n_labelled"] = int(labelled.sum())
        out["per_class_accuracy"] = {
            c: (
                accuracy(scored.pred[labelled & (scored.label == i)], scored.label[labelled & (scored.label == i)])
                if (labelled & (scored.label == i)).any()
                else None
            )
            for i, c in enumerate(class_names)
        }
    else:
        out["accuracy"] = None
        out["n_labelled"] = 0
    if threshold is not None:
        r = rates_at_threshold(y, scored.score, threshold)
        out["threshold"] = r["threshold"]
        out["id_accepted_at_threshold"] = r["tpr"]
        out["ood_accepted_at_threshold"] = r["fpr"]
    return out


# --------------------------------------------------------------------------- paired bootstrap


def weighted_auroc_fpr95(is_id, scores, weights) -> tuple[np.ndarray, np.ndarray]:
    """AUROC and exact FPR95 (ID positive) of one score vector under many resamplings at once.

    ``weights`` (B, N): how often each image is drawn in each of B resamples (a bootstrap's
    counts). Ties count one half in the AUROC, as in ``roc_auc_score``; FPR95 is the ``exact``
    convention with every image counted ``weights`` times. Returns two (B,) arrays."""
    y, s = _arrays(is_id, scores)
    w = np.atleast_2d(np.asarray(weights, dtype=np.float64))
    if w.shape[1] != y.size:
        raise ValueError(f"{w.shape[1]} weights per resample but {y.size} scores")
    order = np.argsort(-s, kind="mergesort")
    s, y, w = s[order], y[order], w[:, order]
    starts = np.r_[0, np.flatnonzero(np.diff(s)) + 1]  # one group per distinct score, highest first
    wid = np.add.reduceat(w * y, starts, axis=1)
    wood = np.add.reduceat(w * ~y, starts, axis=1)
    n_id, n_ood = wid.sum(1), wood.sum(1)
    cum_ood = np.cumsum(wood, axis=1)
    below = n_ood[:, None] - cum_ood  # OOD weight strictly below each group's score
    auc = (wid * (below + 0.5 * wood)).sum(1) / (n_id * n_ood)
    tpr = np.cumsum(wid, axis=1) / n_id[:, None]
    first = np.argmax(tpr >= TPR_TARGET, axis=1)
    fpr = cum_ood[np.arange(len(w)), first] / n_ood
    return auc, fpr


def bootstrap_counts(is_id, n_boot: int, seed: int = 0) -> np.ndarray:
    """(n_boot, N) draw counts of a bootstrap stratified by kind: each resample keeps the number of
    ID and of OOD images (each drawn with replacement from its own kind)."""
    y = np.asarray(is_id, dtype=bool).reshape(-1)
    rng = np.random.default_rng(seed)
    w = np.zeros((n_boot, y.size))
    for idx in (np.flatnonzero(y), np.flatnonzero(~y)):
        if idx.size:
            w[:, idx] = rng.multinomial(idx.size, np.full(idx.size, 1 / idx.size), size=n_boot)
    return w


def paired_bootstrap(
    is_id, scores: dict, reference: str, n_boot: int = 2000, seed: int = 0, level: float = 0.95
) -> dict:
    """Paired bootstrap of each method minus ``reference`` for AUROC and exact FPR95.

    ``scores``: ``{name: (R, N) or (N,)}`` — R runs (seeds) of each method scored on the same N
    test images (R may differ between methods). Each resample draws the images once (stratified,
    ``bootstrap_counts``) and applies the same draw to every run of every method; the statistic
    is (mean over the method's runs) − (mean over the reference's runs). The interval is over
    test-set sampling with the training seeds averaged out. Returns ``{name: {metric: {delta,
    lo, hi, p_not_above_0, n_boot, runs}}}`` for every name but the reference: ``delta`` on the
    full set, ``lo``/``hi`` the percentile interval at ``level``, ``p_not_above_0`` the fraction of
    resamples with a difference ≤ 0."""
    if reference not in scores:
        raise ValueError(f"the reference {reference!r} is not among the scored methods")
    w = bootstrap_counts(is_id, n_boot, seed)
    ones = np.ones((1, w.shape[1]))
    boot, full = {}, {}
    for name, runs in scores.items():
        runs = np.atleast_2d(np.asarray(runs, dtype=np.float64))
        per_run = [weighted_auroc_fpr95(is_id, r, w) for r in runs]
        boot[name] = [np.mean([m[k] for m in per_run], axis=0) for k in (0, 1)]
        full[name] = [float(np.mean([weighted_auroc_fpr95(is_id, r, ones)[k][0] for r in runs])) for k in (0, 1)]
        full[name].append(len(runs))
    out = {}
    for name in scores:
        if name == reference:
            continue
        out[name] = {}
        for k, metric in enumerate(("auroc", "fpr95")):
            d = boot[name][k] - boot[reference][k]
            lo, hi = np.quantile(d, [(1 - level) / 2, (1 + level) / 2])
            out[name][metric] = {
                "delta": full[name][k] - full[reference][k],
                "lo": float(lo),
                "hi": float(hi),
                "p_not_above_0": float((d <= 0).mean()),
                "n_boot": n_boot,
                "runs": full[name][2],
            }
    return out
