"""Stage 1 on the corpus (HVL_SPEC §11): fit the in-scope detector of a preset on its train and
calib sources, and measure it, alone and against the classifier's own scores, on the test sources.

- **Positives / the KNN bank**: the preset's ID images of the train and calib sources.
- **Negatives** (the gate's outlier exposure): far-OOD images, the other preset's ID images and
  the other preset's near-OOD images, of the same splits. The preset's own near-OOD images (other
  skin lesions; other tissue) are neither: they are in scope, stage 2's question.
- **Thresholds**: pooled leave-one-source-out over the positives (``ScopeDetector.fit``).
- **Measured** on test sources only: the in-scope share per role, kind and source with bootstrap
  CIs; far-OOD AUROC of KNN, gate and the classifier's MSP/energy; and leave-kind-out rows: the
  gate refitted without one far-OOD kind among its negatives, that kind's test images then.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Sequence

import numpy as np
import torch

from hvl_core.conformal import ALPHA, conformal_threshold
from hvl_core.scope import KNN_K, ScopeDetector, gate_logodds, knn_similarity, unit

#: what each preset reads, in the words of the verdict
SCOPE_OF = {
    "dermatology-isic4": "a skin-lesion photo (dermoscopic or clinical)",
    "histology-nct-crc": "an H&E-stained colorectal tissue tile",
}
FIT_SPLITS = ("train", "calib")
#: roles whose images the gate learns as out of scope
NEGATIVE_ROLES = ("far", "other", "near-other")
#: the gate's inverse regularisation (scikit-learn's C) on unit-norm features, chosen on the train and
#: calib sources only (``held_out_negatives``: each far-OOD source among the negatives left out in
#: turn, how many of its images then pass as in scope; dermatology + histology, of 152 each):
#: C = 1: 29 (dermatology), 10: 27 + 17, 100: 23 + 17, 1000: 20 + 17, 10000: 20 + 18
GATE_C = 1000.0


def fit_gate(pos: torch.Tensor, neg: torch.Tensor, c: float = GATE_C) -> tuple[torch.Tensor, torch.Tensor]:
    """(w, b) of a class-balanced logistic regression, positives ``pos`` against ``neg`` (unit rows)."""
    from sklearn.linear_model import LogisticRegression

    x = torch.cat([pos, neg]).double().numpy()
    y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
    lr = LogisticRegression(C=c, class_weight="balanced", max_iter=5000).fit(x, y)
    return torch.from_numpy(lr.coef_[0]).float(), torch.tensor(float(lr.intercept_[0]))


def loso_scores(
    pos: torch.Tensor, sources: Sequence[str], neg: torch.Tensor, k: int = KNN_K, c: float = GATE_C
) -> tuple[np.ndarray, np.ndarray]:
    """(knn, gate) of every ID embedding ``pos (N,d)``, each scored by a bank and gate fitted
    without its own source (``sources``, one per row): the pooled leave-one-source-out scores."""
    src = np.asarray(sources)
    if len(set(src)) < 2:
        raise ValueError("leave-one-source-out needs ID images from at least two sources")
    knn, gate = np.empty(len(src)), np.empty(len(src))
    for s in sorted(set(src)):
        out, keep = torch.from_numpy(src == s), torch.from_numpy(src != s)
        w, b = fit_gate(pos[keep], neg, c)
        knn[out.numpy()] = knn_similarity(pos[out], pos[keep], k).double().numpy()
        gate[out.numpy()] = gate_logodds(pos[out], w, b).double().numpy()
    return knn, gate


def fit_detector(
    pos: torch.Tensor,
    sources: Sequence[str],
    neg: torch.Tensor,
    scope: str = "",
    k: int = KNN_K,
    alpha: float = ALPHA,
    c: float = GATE_C,
    fitted_on: dict | None = None,
) -> ScopeDetector:
    """Stage 1 fitted: bank = ``pos``; gate = ``pos`` against ``neg`` (raw or unit embeddings);
    thresholds at ``alpha/2`` each over the pooled leave-one-source-out ID scores (HVL_SPEC §11)."""
    pos, neg = unit(pos), unit(neg)
    knn, gate = loso_scores(pos, sources, neg, k, c)
    w, b = fit_gate(pos, neg, c)
    return ScopeDetector(
        bank=pos,
        w=w,
        b=b,
        t_knn=conformal_threshold(knn, alpha / 2),
        t_gate=conformal_threshold(gate, alpha / 2),
        calibration={"knn": np.sort(knn), "gate": np.sort(gate)},
        k=k,
        alpha=alpha,
        scope=scope,
        fitted_on=dict(fitted_on or {}),
    )


def _mask(rows, test) -> np.ndarray:
    return np.array([test(r) for r in rows])


def fit_scope(preset: str, rows, v0: torch.Tensor, exclude_kind: str | None = None) -> ScopeDetector:
    """The preset's stage 1 from the rows of the fitting splits (optionally without one far-OOD kind)."""
    fit = _mask(rows, lambda r: r.split in FIT_SPLITS)
    pos = fit & _mask(rows, lambda r: r.role(preset) == "id")
    neg = (
        fit
        & _mask(rows, lambda r: r.role(preset) in NEGATIVE_ROLES)
        & _mask(rows, lambda r: not (r.role(preset) == "far" and r.kind == exclude_kind))
    )
    pos_rows = [r for r, m in zip(rows, pos) if m]
    neg_rows = [r for r, m in zip(rows, neg) if m]
    fitted_on = {
        "id_sources": dict(sorted(Counter(r.source for r in pos_rows).items())),
        "negative_sources": dict(sorted(Counter(r.source for r in neg_rows).items())),
        "negative_kinds": dict(sorted(Counter(f"{r.category}: {r.kind}" for r in neg_rows).items())),
    }
    return fit_detector(
        v0[torch.from_numpy(pos)],
        [r.source for r in pos_rows],
        v0[torch.from_numpy(neg)],
        scope=SCOPE_OF.get(preset, ""),
        fitted_on=fitted_on,
    )


def _rate(x: np.ndarray) -> float:
    return float(x.mean()) if len(x) else math.nan


def evaluate_scope(preset: str, rows, v0: torch.Tensor, det: ScopeDetector, classifier: dict, n_boot: int) -> dict:
    """Stage 1 on the test sources: in-scope shares (CIs), AUROCs of each detector, per kind and source,
    and leave-kind-out rows."""
    from .corpus_eval import auroc_fast, bootstrap_ci, role_masks, split_mask

    test = split_mask(rows, "test")
    masks = role_masks(rows, preset)
    res = det.predict(v0)
    inside = res.in_scope
    groups = {g: m & test for g, m in masks.items()}
    out = {
        "t_knn": det.t_knn,
        "t_gate": det.t_gate,
        "n_calibration": det.n_calibration,
        "fitted_on": det.fitted_on,
        "in_scope": {g: bootstrap_ci(_rate, [inside[m]], n_boot) for g, m in groups.items()},
        "n": {g: int(m.sum()) for g, m in groups.items()},
    }
    far_like = groups["far"] | groups["other"]
    detectors = {"KNN": res.knn, "gate": res.gate, "KNN and gate": np.minimum(res.p_value, 1.0), **classifier}
    out["auroc_far"] = {
        name: bootstrap_ci(auroc_fast, [s[groups["id"]], s[far_like]], n_boot) for name, s in detectors.items()
    }
    out["auroc_near"] = {name: auroc_fast(s[groups["id"]], s[groups["near"]]) for name, s in detectors.items()}
    out["per_kind"] = _table(rows, inside, test & ~masks["id"], lambda r: f"{r.category}: {r.kind}")
    out["per_source"] = _table(rows, inside, test, lambda r: f"{r.source} ({r.role(preset)})")
    out["leave_kind_out"] = leave_kind_out(preset, rows, v0, test, masks)
    out["held_out_negatives"] = held_out_negatives(preset, rows, v0)
    return out


def _table(rows, inside, mask, key) -> list[dict]:
    t: dict[str, list[bool]] = {}
    for r, s, m in zip(rows, inside, mask):
        if m:
            t.setdefault(key(r), []).append(bool(s))
    return [{"group": k, "n": len(v), "in_scope": sum(v)} for k, v in sorted(t.items())]


def held_out_negatives(preset: str, rows, v0: torch.Tensor) -> list[dict]:
    """Validation on the fitting splits alone: each far-OOD source among the negatives left out of
    the fit in turn, how many of its images stage 1 then lets in (what chose ``GATE_C``)."""
    fit = _mask(rows, lambda r: r.split in FIT_SPLITS)
    sources = sorted({r.source for r, m in zip(rows, fit) if m and r.role(preset) == "far"})
    out = []
    for s in sources:
        keep = _mask(rows, lambda r, s=s: not (r.source == s and r.role(preset) == "far"))
        det = fit_scope(preset, [r for r, k in zip(rows, keep) if k], v0[torch.from_numpy(keep)])
        own = ~keep
        out.append(
            {"source": s, "n": int(own.sum()), "in_scope": int(det.predict(v0[torch.from_numpy(own)]).in_scope.sum())}
        )
    return out


def leave_kind_out(preset: str, rows, v0: torch.Tensor, test, masks) -> list[dict]:
    """For each far-OOD kind among the negatives: refit without it, then its test images' in-scope share
    (and the ID images', which the refit may move)."""
    kinds = sorted({r.kind for r, m in zip(rows, masks["far"]) if m and r.split in FIT_SPLITS})
    out = []
    for kind in kinds:
        det = fit_scope(preset, rows, v0, exclude_kind=kind)
        inside = det.predict(v0).in_scope
        own = test & masks["far"] & _mask(rows, lambda r, k=kind: r.kind == k)
        out.append(
            {
                "kind": kind,
                "n_test": int(own.sum()),
                "in_scope": int(inside[own].sum()),
                "id_in_scope": _rate(inside[test & masks["id"]]),
            }
        )
    return out
