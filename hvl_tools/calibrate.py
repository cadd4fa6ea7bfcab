"""Calibration: the threshold at 95% ID TPR on held-out ID images (HVL_SPEC §7, §9).

The threshold is ``t95`` = the largest score ``t`` such that at least 95% of the validation ID
images score ``≥ t`` — the score at the ROC point FPR95 is read from. The score is the head's
``score`` option (MSP, the paper's, or energy / max-logit), and the threshold is in its units.
It is stored in the checkpoint (``threshold`` of its ``config.json``; the score is in its ``config``);
``load_model`` then uses it, and the demo's slider starts there. Known = ``score ≥ threshold``,
so about 95% of ID images like the validation set are accepted as known.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from hvl_core.checkpoint import head_from_checkpoint, load_checkpoint, save_checkpoint

from . import metrics as M
from .embedding_scores import head_scores
from .features import FeatureSet

#: keys save_checkpoint writes itself; everything else in the config is carried over on re-saving
CORE_KEYS = {
    "format",
    "format_version",
    "backbone",
    "embed_dim",
    "num_classes",
    "classes",
    "config",
    "detail",
    "threshold",
    "weights_sha256",
    "versions",
    "created",
}


def calibrate_threshold(
    head, text, logit_bias, val_feats: FeatureSet, tpr: float = M.TPR_TARGET, device="cpu", **overrides
) -> dict:
    """The threshold accepting ``tpr`` of ``val_feats`` (ID images), with a summary of the scores."""
    if len(val_feats) == 0:
        raise ValueError("no validation images to calibrate on")
    score, p = head_scores(head, text, logit_bias, val_feats, device=device, **overrides)
    s = score.numpy().astype(np.float64)
    thr = M.threshold_at_tpr(s, tpr)
    name = overrides.get("score", head.config.score)
    out = {
        "threshold": thr,
        "score": name,
        "tpr_target": tpr,
        "n_val": int(len(s)),
        "val_tpr": float((s >= thr).mean()),
        f"val_{name}_median": float(np.median(s)),
    }
    labels = val_feats.labels.numpy()
    if (labels >= 0).all():
        out["val_accuracy"] = M.accuracy(p.argmax(-1).numpy(), labels)
    return out


def carried_meta(meta: dict) -> dict:
    """The parts of a checkpoint's config that save_checkpoint does not write itself."""
    return {k: v for k, v in meta.items() if k not in CORE_KEYS}


def recalibrate_checkpoint(
    source: str | os.PathLike,
    model,
    val_feats: FeatureSet,
    out: str | os.PathLike | None = None,
    tpr: float = M.TPR_TARGET,
    note: str = "",
    score: str | None = None,
) -> tuple[Path, dict]:
    """Calibrate the checkpoint at ``source`` (a local folder) on ``val_feats`` encoded by ``model``
    (loaded from that checkpoint) and write it back (or to ``out``) with the new threshold.
    ``score``: calibrate for this score instead of the checkpoint's; it is saved with the threshold."""
    ck = load_checkpoint(source)
    head = head_from_checkpoint(ck, **({} if score is None else {"score": score}))
    cal = calibrate_threshold(head, model.text, model.logit_bias, val_feats, tpr, device=model.device)
    if note:
        cal["data"] = note
    extra = carried_meta(ck.meta)
    extra["calibration"] = cal
    target = Path(out) if out is not None else Path(source)
    if target.is_file():
        target = target.parent
    save_checkpoint(
        target,
        head,
        ck.backbone,
        ck.classes,
        threshold=cal["threshold"],
        detail=ck.meta.get("detail", "upsample"),
        extra=extra,
    )
    return target, cal
