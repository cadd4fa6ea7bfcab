"""Evaluation: ID accuracy, AUROC, FPR95, AUPR (HVL_SPEC §7), reports, plots, baselines, aggregation.

``evaluate_features`` scores cached embeddings with a head and writes, under an output folder:

- ``metrics.json``: ``accuracy`` (None without labels), ``auroc``, ``fpr95``, ``aupr``,
  ``aupr_out``, ``n_id``, ``n_ood`` (fractions in [0, 1]), ``t95`` (the MSP accepting 95% of these ID
  images), the model's ``threshold`` with the ID/OOD acceptance rates it gives, per-class
  accuracy, and what was skipped;
- ``scores.csv``: ``path,score,is_id,label,pred,known,group`` (the decision score; its name in ``metrics.json``'s ``score_name``) per image;
- ``roc.png`` (the ROC curve, the FPR95 point marked) and ``hist.png`` (ID vs OOD MSP histogram
  with the thresholds);
- ``report.md``: the same numbers as a markdown table.

Methods (all through the same code): ``hvl`` (the head's p_ID), ``mcm`` (zero-shot single-scale
CLIP MCM: softmax of cos(v⁰, t)/tau, evaluated with an untrained head's p⁰). Zero-shot HVL is
``hvl`` with an untrained head; the Table 2 rows are heads trained with switches off (``config.VARIANTS``).
"""

from __future__ import annotations

import os

from .embedding_scores import score_sets
from .features import FeatureSet
from .reports import write_report

# --------------------------------------------------------------------------- models on cached features


def evaluate_features(
    model,
    id_feats: FeatureSet,
    ood_feats: FeatureSet | None,
    out: str | os.PathLike,
    method: str = "hvl",
    threshold: float | None = None,
    overrides: dict | None = None,
    info: dict | None = None,
    title: str | None = None,
    plots: bool = True,
    head=None,
    convention: str = "exact",
) -> dict:
    """Score ID and OOD embeddings with ``model``'s head (or ``head``) and write the report to ``out``."""
    overrides = dict(overrides or {})
    head = head if head is not None else model.head
    thr = model.threshold if threshold is None else float(threshold)
    scored = score_sets(
        head, model.text, model.logit_bias, id_feats, ood_feats, device=model.device, method=method, **overrides
    )
    skipped = list(id_feats.skipped) + (list(ood_feats.skipped) if ood_feats is not None else [])
    meta = {
        "method": method,
        "score_name": scored.score_name,
        "method_name": (info or {}).get("method_name") or ("MCM" if method == "mcm" else "HVL"),
        "backbone": model.backbone.describe(),
        "checkpoint": model.checkpoint,
        "calibrated": model.calibrated,
        "head_config": {**head.config.to_dict(), **overrides},
        "n_skipped": len(skipped),
        "skipped": [{"path": p, "reason": r} for p, r in skipped[:200]],
    }
    meta.update(info or {})
    return write_report(
        out,
        scored,
        list(model.classes.names),
        thr,
        meta,
        title=title or f"{meta['method_name']} on {model.backbone.name}",
        plots=plots,
        convention=convention,
    )
