"""HVL on the real corpus: train per preset, calibrate conformally, measure on held-out sources,
and set the OOD zoo beside it (``hvl corpus run``).

For each preset, on the offline backbone (``medmnist-densenet121``, the only one with real
weights here):

1. **Train** the HVL head with the paper's loss (spec §4–§8: L_ID + L_OOD, pseudo-OOD by ΔH) on
   the ID images of the ``train`` sources.
2. **Choose the score** (MSP / energy / max-logit) by AUROC on the ``calib`` sources (their ID
   images against their OOD images) and **calibrate** its threshold conformally on the ID images
   of the ``calib`` sources (``hvl_core.conformal``, 5% false rejection); the calibration scores
   ship in the checkpoint.
3. **Measure** on the ``test`` sources only: acceptance of ID, far-OOD, the other preset's ID and
   near-OOD images at the default threshold; AUROC (ID vs all others, vs near-OOD, vs far-OOD),
   FPR95 (spec §7 exact) and ID accuracy, each with a bootstrap CI (images resampled within
   each group); acceptance per source and per kind.
4. **Zoo**, leave one ID source out (fit on the others' ID images, test on the held-out source's
   ID images against every OOD image — no method ever fits on OOD images): trained HVL, the
   untrained head, the classifier's own single-scale MSP / energy / max-logit, and
   pytorch-ood's Mahalanobis, KNN and ViM on the same pooled features (scale 0). MCM needs a
   text encoder; this backbone has none.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hvl_core.conformal import ALPHA, conformal_threshold
from hvl_core.geometry import split_scales
from hvl_core.scores import SCORES as REGISTERED

from . import metrics as M
from .config import TrainConfig
from .corpus import ID_CATEGORY, ID_CLASSES, Row, default_root, read_manifest
from .embedding_scores import head_scores
from .features import FeatureCache, FeatureSet, extract_features

BACKBONE = "medmnist-densenet121"
PRESETS = tuple(ID_CATEGORY)
#: the scores compared: the registry's at import (a score registered later is not compared)
SCORES = tuple(REGISTERED)
#: OOD groups reported apart: far-OOD, the other preset's ID images, this preset's near-OOD
GROUPS = ("far", "other", "near")
#: zoo settings, fixed before any run (no tuning on test sources): KNN's k (small sets), ViM's
#: principal-subspace dimension
KNN_K = 10
VIM_DIM = 64
#: a zoo fold needs this many ID images in its held-out source (smaller ones give no usable AUROC)
ZOO_MIN_ID = 20


def checkpoint_name(preset: str) -> str:
    """The folder the trained checkpoint goes to, where ``shipped_checkpoint`` finds it."""
    from hvl_core.checkpoint import SHIPPED_PREFIX

    return f"{SHIPPED_PREFIX}{BACKBONE}-{preset}"


@dataclass
class EncodedCorpus:
    rows: list[Row]
    feats: FeatureSet


def encode_corpus(model, rows: list[Row], root: Path, cache: FeatureCache, progress: bool = True) -> EncodedCorpus:
    """Features of every row (n = model.n), from the cache when there; rows that fail to read are dropped."""
    paths = [str(root / r.file) for r in rows]
    fs = extract_features(model, paths, cache=cache, progress=progress, batch_size=8, desc="encoding corpus")
    keep = set(fs.paths)
    return EncodedCorpus([r for r, p in zip(rows, paths) if p in keep], fs)


def id_labels(rows: list[Row], preset: str, class_names) -> np.ndarray:
    """Class index of each ID row of ``preset`` (-1 for every other row)."""
    index = {c: i for i, c in enumerate(class_names)}
    code = ID_CLASSES[preset]
    return np.array([index[code[r.kind]] if r.role(preset) == "id" else -1 for r in rows])


def subset(fs: FeatureSet, mask: np.ndarray, labels: np.ndarray | None = None) -> FeatureSet:
    idx = np.flatnonzero(mask)
    lab = torch.from_numpy(labels[idx]).long() if labels is not None else fs.labels[idx]
    return FeatureSet(fs.v[idx], [fs.paths[i] for i in idx], lab, [fs.groups[i] for i in idx])


def train_hvl(model, fs: FeatureSet, cfg: TrainConfig):
    """A fresh head trained on ``fs`` (ID, labelled) with the paper's loss; the model's head is untouched."""
    from hvl_core.head import HVLHead

    from .train import train_head

    head = HVLHead(model.head.dim, model.head.num_classes, **model.head.config.to_dict())
    torch.manual_seed(cfg.seed)
    train_head(head, model.text, model.logit_bias, fs, cfg, device=model.device, progress=False, log=lambda m: None)
    return head.eval()


def all_scores(head, model, fs: FeatureSet) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """{score name: (N,)} for the three scores, and the predicted class (argmax p_ID)."""
    out, pred = {}, None
    for s in SCORES:
        score, p = head_scores(head, model.text, model.logit_bias, fs, device=model.device, score=s)
        out[s] = score.numpy().astype(np.float64)
        pred = p.argmax(-1).numpy()
    return out, pred


# --------------------------------------------------------------------------- statistics


def auroc_fast(pos: np.ndarray, neg: np.ndarray) -> float:
    """AUROC of ``pos`` (ID) against ``neg`` by the Mann–Whitney U statistic (ties count ½);
    equals sklearn's ``roc_auc_score``."""
    from scipy.stats import rankdata

    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    r = rankdata(np.concatenate([pos, neg]))
    return float((r[: len(pos)].sum() - len(pos) * (len(pos) + 1) / 2) / (len(pos) * len(neg)))


def bootstrap_ci(
    stat, groups: list[np.ndarray], n_boot: int, seed: int = 0, level: float = 0.95
) -> tuple[float, float, float]:
    """(value, lower, upper): ``stat(*groups)`` and its percentile bootstrap interval, each group
    resampled with replacement on its own."""
    value = stat(*groups)
    rng = np.random.default_rng(seed)
    boots = []
    for _ in range(n_boot):
        boots.append(stat(*[g[rng.integers(0, len(g), len(g))] if len(g) else g for g in groups]))
    boots = np.array([b for b in boots if not math.isnan(b)])
    if not len(boots):
        return value, math.nan, math.nan
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return float(value), float(lo), float(hi)


def fpr95_of(pos: np.ndarray, neg: np.ndarray) -> float:
    if len(pos) == 0 or len(neg) == 0:
        return math.nan
    return float(M.fpr95(np.r_[np.ones(len(pos)), np.zeros(len(neg))], np.r_[pos, neg]))


def rate_at(threshold: float):
    return lambda s: float((s >= threshold).mean()) if len(s) else math.nan


# --------------------------------------------------------------------------- one preset


def role_masks(rows: list[Row], preset: str) -> dict[str, np.ndarray]:
    roles = np.array([r.role(preset) for r in rows])
    return {
        "id": roles == "id",
        "far": roles == "far",
        "other": roles == "other",
        "near": np.isin(roles, ["near", "near-other"]),
    }


def split_mask(rows: list[Row], split: str) -> np.ndarray:
    return np.array([r.split == split for r in rows])


def evaluate_at(
    scores: np.ndarray,
    pred: np.ndarray,
    labels: np.ndarray,
    masks: dict,
    test: np.ndarray,
    threshold: float,
    n_boot: int,
) -> dict:
    """Test-split acceptance, AUROC, FPR95, ID accuracy with CIs."""
    idm = masks["id"] & test
    pos = scores[idm]
    ood = {g: scores[masks[g] & test] for g in GROUPS}
    every = np.concatenate(list(ood.values()))
    out = {"n": {"id": int(idm.sum()), **{g: len(v) for g, v in ood.items()}}}
    rate = rate_at(threshold)
    out["accepted"] = {"id": bootstrap_ci(rate, [pos], n_boot)}
    for g, v in ood.items():
        out["accepted"][g] = bootstrap_ci(rate, [v], n_boot)
    out["auroc"] = {
        "all": bootstrap_ci(auroc_fast, [pos, every], n_boot),
        **{g: bootstrap_ci(auroc_fast, [pos, v], n_boot) for g, v in ood.items()},
    }
    out["fpr95"] = {"all": bootstrap_ci(fpr95_of, [pos, every], n_boot // 4)}
    correct = (pred[idm] == labels[idm]).astype(np.float64)
    out["id_accuracy"] = bootstrap_ci(lambda c: float(c.mean()) if len(c) else math.nan, [correct], n_boot)
    return out


def per_source(rows: list[Row], scores: np.ndarray, test: np.ndarray, threshold: float, preset: str) -> list[dict]:
    """Acceptance per test source and role."""
    table: dict[tuple[str, str], list[bool]] = {}
    for r, s, t in zip(rows, scores, test):
        if t:
            table.setdefault((r.source, r.role(preset)), []).append(bool(s >= threshold))
    return [{"source": src, "role": role, "n": len(v), "accepted": sum(v)} for (src, role), v in sorted(table.items())]


def per_kind(rows: list[Row], scores: np.ndarray, mask: np.ndarray, threshold: float) -> list[dict]:
    table: dict[str, list[bool]] = {}
    for r, s, m in zip(rows, scores, mask):
        if m:
            table.setdefault(f"{r.category}: {r.kind}", []).append(bool(s >= threshold))
    return [{"kind": k, "n": len(v), "accepted": sum(v)} for k, v in sorted(table.items())]


def run_preset(
    preset: str,
    enc: EncodedCorpus,
    model,
    cfg: TrainConfig,
    out: Path,
    weights: Path | None,
    n_boot: int,
    alpha: float = ALPHA,
    log=print,
) -> dict:
    """Both stages of HVL_SPEC §11 for one preset: stage 1 fitted on the train and calib sources,
    stage 2 (trained or untrained head) with its threshold from pooled leave-one-source-out ID
    scores, each measured on the test sources; the default written as the shipped checkpoint."""
    from hvl_core.checkpoint import save_checkpoint

    from .scope_eval import corpus_features, evaluate_scope, fit_scope

    rows, fs = enc.rows, enc.feats
    labels = id_labels(rows, preset, model.classes.names)
    masks = role_masks(rows, preset)
    train, calib, test = (split_mask(rows, s) for s in ("train", "calib", "test"))
    v0, f = fs.v[:, 0], corpus_features(fs.v, model.n)
    scope = fit_scope(preset, rows, f)
    logits0 = classifier_logits(model, v0.float())
    classifier = {
        "classifier MSP": logits0.softmax(-1).max(-1).values.double().numpy(),
        "classifier energy": torch.logsumexp(logits0, -1).double().numpy(),
    }
    result: dict = {"preset": preset, "backbone": BACKBONE, "train_config": cfg.to_dict(), "alpha": alpha}
    result["scope"] = evaluate_scope(preset, rows, f, scope, classifier, n_boot)
    in_scope = scope.predict(f).in_scope
    log(f"{preset}: stage 1 in scope on test — " + _short_scope(result["scope"]))
    fitting = train | calib
    fit_set = subset(fs, masks["id"] & fitting, labels)
    head = train_hvl(model, fit_set, cfg)
    result["n_train"], result["source_folds"] = len(fit_set), SOURCE_FOLDS
    result["train_accuracy"] = float((all_scores(head, model, fit_set)[1] == fit_set.labels.numpy()).mean())
    log(f"  trained on {len(fit_set)} ID images; accuracy on them {result['train_accuracy']:.3f}")
    heads = {"trained": head, "untrained": model.head}
    result["sources"] = {
        s: sorted({r.source for r, m in zip(rows, sm & masks["id"]) if m})
        for s, sm in (("train", train), ("calib", calib), ("test", test))
    }
    for which, h in heads.items():
        scores, pred = all_scores(h, model, fs)
        held_out = cross_fitted_scores(which, model, fs, rows, labels, masks, fitting, cfg, scores)
        # stage 2 sees in-scope images: chosen by ID against near-OOD of the fitting sources, each
        # image scored by a head that never saw its source
        selection = {
            s: auroc_fast(held_out[s][masks["id"] & fitting], held_out[s][masks["near"] & fitting]) for s in SCORES
        }
        best = max(SCORES, key=lambda s: selection[s])
        pooled = {s: held_out[s][masks["id"] & fitting] for s in SCORES}
        # as the checkpoint stores them (rounded down), so a threshold is one of its calibration scores
        pooled = {s: np.array(_rounded(np.sort(v))) for s, v in pooled.items()}
        entry = {"selection_auroc": selection, "score": best}
        entry["pooled_calibration"] = {s: [float(x) for x in v] for s, v in pooled.items()}
        for s in SCORES:
            thr = conformal_threshold(pooled[s], alpha)
            entry[s] = {
                "threshold": thr,
                "n_calibration": int(len(pooled[s])),
                "test": evaluate_at(scores[s], pred, labels, masks, test, thr, n_boot),
                "outcomes": outcomes(scores[s] >= thr, in_scope, pred, labels, masks, test, n_boot),
                "precision": precision(rows, scores[s] >= thr, in_scope, pred, labels, test, model.classes.names),
                "per_source": per_source(rows, np.where(in_scope, scores[s], -np.inf), test, thr, preset),
                "per_kind_test": per_kind(rows, np.where(in_scope, scores[s], -np.inf), test & ~masks["id"], thr),
            }
        result[which] = entry
        log(f"  {which}: score {best} (held-out near AUROC {selection[best]:.3f}); " + _short_outcomes(entry[best]))
    which, best = max(((w, s) for w in heads for s in SCORES), key=lambda ws: result[ws[0]]["selection_auroc"][ws[1]])
    head, entry = heads[which], result[which]
    thr = entry[best]["threshold"]
    result["default"] = {"head": which, "score": best, "threshold": thr}
    result["mixed_batch"] = mixed_batch(rows, masks, test, scope, entry, best, model, fs, head)
    if weights is not None:
        cal_scores = {s: entry["pooled_calibration"][s] for s in SCORES}
        head.config = dataclasses.replace(head.config, score=best)
        calibration = {
            "rule": "conformal",
            "pooled": "ID scores of the train and calibration sources, none from a head that saw its source (HVL_SPEC §11)",
            "score": best,
            "alpha": alpha,
            "threshold": thr,
            "n": len(cal_scores[best]),
            "scores": cal_scores[best],
            "sources": sorted(set(result["sources"]["train"]) | set(result["sources"]["calib"])),
            "by_score": {
                s: {"threshold": conformal_threshold(cal_scores[s], alpha), "scores": cal_scores[s]}
                for s in SCORES
                if s != best
            },
        }
        o = entry[best]["outcomes"]
        measured = {
            "false_rejection": tuple(1 - x for x in (o["known"]["id"][0], o["known"]["id"][2], o["known"]["id"][1])),
            **{f"accepted_{g}": o["known"][g] for g in GROUPS},
            **{f"out_of_scope_{g}": o["out_of_scope"][g] for g in ("id", *GROUPS)},
            "auroc": entry[best]["test"]["auroc"],
            "id_accuracy": entry[best]["test"]["id_accuracy"],
            "precision": entry[best]["precision"],
            "n": entry[best]["test"]["n"],
            "sources": result["sources"]["test"],
        }
        save_checkpoint(
            weights / checkpoint_name(preset),
            head,
            BACKBONE,
            model.classes,
            threshold=thr,
            detail=model.detail,
            scope=scope,
            extra={
                "calibration": calibration,
                "measured": measured,
                "training": {
                    "train_config": cfg.to_dict(),
                    "n_train": len(fit_set),
                    "train_accuracy": result["train_accuracy"],
                    "sources": sorted(set(result["sources"]["train"]) | set(result["sources"]["calib"])),
                    "head": which,
                    "selection_auroc": {w: result[w]["selection_auroc"] for w in heads},
                },
            },
        )
    return result


def mixed_batch(rows, masks, test, scope, entry, best, model, fs, head, size: int = 10) -> dict:
    """Benjamini–Hochberg at 5% over the deciding stage's p-values of a batch of ``size`` ID and
    ``size`` far-OOD test images (every ``k``-th of each, spread over sources): how many of each it flags."""
    from hvl_core.conformal import bh_select, conformal_pvalue

    ids, fars = np.flatnonzero(masks["id"] & test), np.flatnonzero(masks["far"] & test)
    pick = np.r_[ids[:: max(1, len(ids) // size)][:size], fars[:: max(1, len(fars) // size)][:size]]
    sub = subset(fs, np.isin(np.arange(len(rows)), pick))
    order = np.argsort(np.argsort(pick))  # subset keeps row order; back to pick's order
    s2 = all_scores(head, model, sub)[0][best][order]
    p2 = conformal_pvalue(s2, np.sort(entry["pooled_calibration"][best]))
    r1 = scope.predict(scope.embed(*split_scales(sub.v[order], model.n)))
    p = np.where(r1.in_scope, p2, r1.p_value)
    flagged = bh_select(p, 0.05)
    n_id = min(size, len(ids))
    return {
        "n_id": n_id,
        "n_far": len(pick) - n_id,
        "flagged_id": int(flagged[:n_id].sum()),
        "flagged_far": int(flagged[n_id:].sum()),
        "sources": sorted({rows[i].source for i in pick}),
    }


#: the trained head's held-out scores come from this many heads, each trained without a share of
#: the fitting sources (cross-fitting by source: every image is scored by a head that never saw its source)
SOURCE_FOLDS = 3


def source_folds(sources, k: int = SOURCE_FOLDS) -> list[list[str]]:
    """The fitting sources (sorted) dealt into ``min(k, n)`` folds: fold ``f`` holds every
    ``k``-th source from the ``f``-th."""
    sources = sorted(set(sources))
    k = min(k, len(sources))
    return [sources[f::k] for f in range(k)]


def cross_fitted_scores(which, model, fs, rows, labels, masks, fitting, cfg, scores) -> dict:
    """{score: (N,)}: ``scores`` with every row of the fitting sources (``fitting``) scored again by
    a head that never saw its source — the untrained head as it is; for the trained head, the rows
    of each fold of ID sources (``source_folds``) by a head trained on the other folds' ID images
    (rows of sources without ID images keep the full head's score: it never saw them). What
    chooses the head and score, and the pooled calibration scores (HVL_SPEC §11)."""
    if which == "untrained":
        return scores
    out = {s: scores[s].copy() for s in SCORES}
    src = np.array([r.source for r in rows])
    for held_sources in source_folds(src[masks["id"] & fitting]):
        held = fitting & np.isin(src, held_sources)
        fold = subset(fs, masks["id"] & fitting & ~held, labels)
        fold_scores, _ = all_scores(train_hvl(model, fold, cfg), model, subset(fs, held))
        for s in SCORES:
            out[s][held] = fold_scores[s]
    return out


def outcomes(above, in_scope, pred, labels, masks, test, n_boot) -> dict:
    """The three outcomes' shares per group on the test sources: known (in scope and score ≥ threshold),
    out of scope, unknown (the rest), with bootstrap CIs; ID accuracy among ID images called known."""
    known = above & in_scope
    out = {"known": {}, "out_of_scope": {}, "unknown": {}}
    for g in ("id", *GROUPS):
        m = masks[g] & test
        for name, x in (("known", known), ("out_of_scope", ~in_scope), ("unknown", in_scope & ~above)):
            out[name][g] = bootstrap_ci(lambda v: float(v.mean()) if len(v) else math.nan, [x[m].astype(float)], n_boot)
    idk = masks["id"] & test & known
    out["accuracy_of_known_id"] = float((pred[idk] == labels[idk]).mean()) if idk.any() else math.nan
    return out


def precision(rows, above, in_scope, pred, labels, test, names) -> dict:
    """{class: {"value", "n"}}: of the test images called "known: class", the share that are that
    class (every other image called so counts as wrong)."""
    known = above & in_scope & test
    out = {}
    for c, name in enumerate(names):
        called = known & (pred == c)
        if called.any():
            out[name] = {"value": float((labels[called] == c).mean()), "n": int(called.sum())}
    return out


def _short_scope(s: dict) -> str:
    return ", ".join(f"{g} {s['in_scope'][g][0]:.2f}" for g in ("id", *GROUPS))


def _short_outcomes(e: dict) -> str:
    o = e["outcomes"]
    return (
        "test known: "
        + ", ".join(f"{g} {o['known'][g][0]:.2f}" for g in ("id", *GROUPS))
        + f"; near AUROC {e['test']['auroc']['near'][0]:.3f}"
    )


def _rounded(scores: np.ndarray) -> list[float]:
    """Calibration scores for the checkpoint's JSON; rounding down keeps each threshold (an
    element of the list) at or under the score it was computed from."""
    return [math.floor(float(x) * 1e6) / 1e6 for x in scores]


# --------------------------------------------------------------------------- the zoo


def classifier_logits(model, v0: torch.Tensor) -> torch.Tensor:
    """The backbone classifier's own logits over the preset's C known classes (scale 0)."""
    C = model.head.num_classes
    w = model.text[:C]
    b = model.logit_bias[:C] if model.logit_bias is not None else 0
    return v0 @ w.T + b


def zoo_scores(
    model, fit: FeatureSet, test: FeatureSet, cfg: TrainConfig, trained: bool = True
) -> dict[str, np.ndarray]:
    """Every method's score on ``test`` (higher = more ID), fitted on ``fit`` (ID, labelled);
    ``trained=False`` leaves out the HVL head trained per fold (the costliest row)."""
    from pytorch_ood.detector import KNN, Mahalanobis, ViM

    out: dict[str, np.ndarray] = {}
    heads = [("HVL trained", train_hvl(model, fit, cfg))] if trained else []
    for name, h in (*heads, ("HVL untrained", model.head)):
        sc, _ = all_scores(h, model, test)
        for s in SCORES:
            out[f"{name} ({s})"] = sc[s]
    z_fit, z_test = fit.v[:, 0].float(), test.v[:, 0].float()
    logits = classifier_logits(model, z_test)
    out["classifier MSP"] = logits.softmax(-1).max(-1).values.numpy().astype(np.float64)
    out["classifier energy"] = torch.logsumexp(logits, -1).numpy().astype(np.float64)
    out["classifier max-logit"] = logits.max(-1).values.numpy().astype(np.float64)
    y = fit.labels
    present = torch.unique(y)
    remap = torch.full((int(y.max()) + 1,), -1, dtype=torch.long)
    remap[present] = torch.arange(len(present))
    maha = Mahalanobis(None).fit_features(z_fit, remap[y])
    out["Mahalanobis (pytorch-ood)"] = -maha.predict_features(z_test).double().numpy()
    knn = KNN(None, k=min(KNN_K, len(fit))).fit_features(z_fit, y)
    out[f"KNN k={min(KNN_K, len(fit))} (pytorch-ood)"] = -knn.predict_features(z_test).double().numpy()
    C = model.head.num_classes
    vim = ViM(
        None,
        d=VIM_DIM,
        w=model.text[:C].float(),
        b=(model.logit_bias[:C] if model.logit_bias is not None else torch.zeros(C)).float(),
    )
    vim.fit_features(z_fit, y)
    out[f"ViM d={VIM_DIM} (pytorch-ood)"] = -vim.predict_features(z_test).double().numpy()
    return out


def run_zoo(
    preset: str, enc: EncodedCorpus, model, cfg: TrainConfig, n_boot: int, log=print, trained: bool = True
) -> dict:
    """Leave one ID source out; the metrics pool the held-out sources' scores per method only
    through their per-fold AUROC/FPR95 (means over folds, CIs from the bootstrap of each fold)."""
    rows, fs = enc.rows, enc.feats
    labels = id_labels(rows, preset, model.classes.names)
    masks = role_masks(rows, preset)
    counts = Counter(r.source for r, m in zip(rows, masks["id"]) if m)
    sources = sorted(s for s, c in counts.items() if c >= ZOO_MIN_ID)
    src = np.array([r.source for r in rows])
    folds = []
    for s in sources:
        fit_mask = masks["id"] & (src != s)
        test_mask = (masks["id"] & (src == s)) | ~masks["id"]
        fit, test = subset(fs, fit_mask, labels), subset(fs, test_mask, labels)
        if len(np.unique(labels[fit_mask])) < model.head.num_classes:
            log(f"  zoo fold {s}: the other sources lack a class; fold skipped")
            continue
        sc = zoo_scores(model, fit, test, cfg, trained)
        is_id = masks["id"][test_mask]
        group = {g: masks[g][test_mask] for g in GROUPS}
        fold = {"held_out": s, "n_id": int(is_id.sum()), "methods": {}}
        for name, v in sc.items():
            if not np.isfinite(v).all():
                log(
                    f"  zoo fold {s}: {name} gave non-finite scores on {int((~np.isfinite(v)).sum())} images; "
                    "they count as the least ID"
                )
                v = np.nan_to_num(v, nan=-np.inf)
                v = np.where(np.isfinite(v), v, np.nanmin(v[np.isfinite(v)]) - 1 if np.isfinite(v).any() else 0.0)
            pos = v[is_id]
            fold["methods"][name] = {
                "auroc_all": auroc_fast(pos, v[~is_id]),
                "auroc_far": auroc_fast(pos, v[group["far"] | group["other"]]),
                "auroc_near": auroc_fast(pos, v[group["near"]]),
                "fpr95_all": fpr95_of(pos, v[~is_id]),
            }
        folds.append(fold)
        log(f"  zoo fold {s}: {fold['n_id']} ID images")
    methods = list(folds[0]["methods"]) if folds else []
    summary = {}
    for m in methods:
        summary[m] = {}
        for key in ("auroc_all", "auroc_far", "auroc_near", "fpr95_all"):
            vals = np.array([f["methods"][m][key] for f in folds])
            vals = vals[~np.isnan(vals)]
            summary[m][key] = bootstrap_ci(lambda x: float(x.mean()) if len(x) else math.nan, [vals], n_boot)
    return {
        "preset": preset,
        "folds": folds,
        "summary": summary,
        "trained_hvl": trained,
        "note": "mean over held-out ID sources; CI: bootstrap over those sources",
    }


# --------------------------------------------------------------------------- the whole run


def run(
    out: str | os.PathLike,
    root: str | os.PathLike | None = None,
    weights: str | os.PathLike | None = None,
    epochs: int | None = None,
    n_boot: int = 1000,
    cache_dir=None,
    device: str = "cpu",
    zoo: bool = True,
    log=print,
    zoo_trained: bool = True,
) -> dict:
    from hvl_core import load_model

    from .config import default_cache_dir
    from .corpus_report import write_corpus_report

    root = Path(root) if root is not None else default_root()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg = TrainConfig() if epochs is None else TrainConfig(epochs=epochs)
    rows = read_manifest(root)
    cache = FeatureCache(cache_dir or default_cache_dir())
    results = {"presets": {}, "zoo": {}}
    for preset in PRESETS:
        model = load_model(BACKBONE, preset=preset, device=device)
        enc = encode_corpus(model, rows, root, cache)
        results["presets"][preset] = run_preset(
            preset, enc, model, cfg, out, Path(weights) if weights else None, n_boot, log=log
        )
        if zoo:
            results["zoo"][preset] = run_zoo(preset, enc, model, cfg, n_boot, log=log, trained=zoo_trained)
    (out / "results.json").write_text(json.dumps(results, indent=1) + "\n")
    write_corpus_report(results, out)
    return results
