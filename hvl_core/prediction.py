"""What one image's prediction holds (``Prediction``), and how a head pass becomes one per image
(``predictions``): the decision, every distribution and grid the page draws, as numpy / python
values."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .conformal import conformal_pvalue
from .head import HVLConfig, HVLOutput, scale_scores, score_range
from .scores import SCORES

#: how the page names the probability mass of the negative classes, and the mass of the patches
#: the entropy filter dropped (the remainder of the sub-normalised p¹, p²)
OTHER_LABEL = "other (not a known class)"
DROPPED_LABEL = "dropped by the entropy filter"
#: the head's outputs a prediction keeps, per image
_FIELDS = (
    "p0",
    "p1",
    "p2",
    "p_id",
    "msp",
    "score",
    "score0",
    "p1_patches",
    "p2_patches",
    "entropy1",
    "entropy2",
    "keep1",
    "keep2",
    "entropy_gain",
    "pseudo_ood",
    "neg0",
    "neg1",
    "neg2",
)


@dataclass
class Prediction:
    """Everything a UI needs to draw, as numpy / python values. Grids are row-major (row, col).

    Decision: ``known = score >= threshold``; ``score`` is the ``score_name`` score ("msp", the
    paper's; "energy" or "maxlogit", HVL_SPEC §9), ``threshold`` is in its units and
    ``score_range`` is the interval it can take (``None`` ends: unbounded). ``msp`` = max p_ID
    is always given. ``threshold_source``: "calibrated" (a checkpoint's 95%-TPR threshold),
    "measured" (the backbone's default for this preset, chosen on real images:
    bench/results/decision_defaults.md), "default" (0.5 for MSP, not measured) or "given" (the
    caller's).
    ``scale_scores`` = the per-scale terms (S⁰, S¹, S²) of a logit score, whose mean is
    ``score`` (None for MSP, which is not a mean over scales).

    Where the probability goes. ``p0, p1, p2, p_id`` cover the C known classes only. Each scale's
    softmax also runs over the Q negative classes (``negatives``, possibly none), and the
    entropy filter drops patches from p¹ and p² without renormalising (the paper's
    sub-normalised p¹, p²). So for each distribution ``s`` in ("p0", "p1", "p2", "p_id"):
    ``sum(s) + p_other[s] + p_dropped[s] == 1``, where ``p_other[s]`` is the mass that went to
    the negative classes ("other (not a known class)") and ``p_dropped[s]`` the share of the
    patches the filter dropped (0 for p0, and with ``renormalize``). ``p_negatives`` (Q,) splits
    ``p_other["p_id"]`` by negative class. ``shares(s)`` lists all of it, summing to 1.

    The decision (HVL_SPEC §11) has two stages: ``scope`` (in scope?) and then the score against
    the threshold (known class?); ``p_value`` is stage 2's, ``scope["p_value"]`` stage 1's, and
    ``deciding_p_value`` the one of the stage that decided.

    Entropies (``entropy1``, ``entropy2``, ``entropy_gain``) are over the full softmax of
    ``entropy_classes`` = C + Q classes, so their maximum (an even split) is
    ``entropy_max`` = ln(C + Q).
    """

    label: str
    class_index: int
    msp: float
    known: bool
    threshold: float
    classes: list[str]
    p_id: np.ndarray  # (C,)
    p0: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    p1_patches: np.ndarray  # (n, n, C)
    p2_patches: np.ndarray  # (2n, 2n, C)
    entropy1: np.ndarray  # (n, n)
    entropy2: np.ndarray  # (2n, 2n)
    keep1: np.ndarray  # (n, n) bool
    keep2: np.ndarray  # (2n, 2n) bool
    entropy_gain: np.ndarray  # (2n, 2n)
    pseudo_ood: list[tuple[int, int]]  # top-K high-scale cells (row, col), by the selection rule
    n: int
    k: int
    tau: float
    backbone: str
    backbone_note: str
    score: float = math.nan
    score_name: str = "msp"
    score_range: tuple[float | None, float | None] = (0.0, 1.0)
    scale_scores: tuple[float, float, float] | None = None
    score0: float | None = None  # the decision score of scale 0 alone (the single-scale, MCM-style verdict)
    threshold_source: str = "default"
    #: conformal p-value (``hvl_core.conformal``) against the checkpoint's known calibration
    #: images, when it ships their scores in this score's units; None otherwise
    p_value: float | None = None
    n_calibration: int = 0
    negatives: list[str] = field(default_factory=list)
    p_negatives: np.ndarray = None  # (Q,) fused, by negative class
    p_other: dict = field(default_factory=dict)  # {"p0", "p1", "p2", "p_id"} -> mass of the negatives
    p_dropped: dict = field(default_factory=dict)  # {"p0", "p1", "p2", "p_id"} -> mass the filter dropped
    entropy_classes: int = 0
    entropy_max: float = 0.0
    #: HVL_SPEC §11: "out of scope" (stage 1 said this is not the kind of image the model reads),
    #: "unknown" (in scope, score under the threshold) or "known"; ``known`` is outcome == "known"
    outcome: str = "known"
    #: stage 1's answer when the model has one: {"in_scope", "knn", "gate", "contrast" (None without
    #: a negatives bank), "t_knn", "t_gate", "t_contrast",
    #: "p_value", "n_calibration", "scope"}; None: no stage 1 (every image counts as in scope)
    scope: dict | None = None
    #: the predicted class's precision on held-out sources, {"value", "n"}, when it was measured
    precision: dict | None = None
    image: np.ndarray = field(repr=False, default=None)  # the view the grids cover (S, S, 3) uint8
    notes: list[str] = field(default_factory=list)

    @property
    def deciding_p_value(self) -> float | None:
        """The p-value of the stage that decided: stage 1's for an image out of scope, else stage 2's."""
        return self.scope["p_value"] if self.outcome == "out of scope" else self.p_value

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.p_id, kind="stable")[:k]
        return [(self.classes[i], float(self.p_id[i])) for i in order]

    def shares(self, which: str = "p_id") -> list[tuple[str, float]]:
        """Distribution ``which`` ("p0", "p1", "p2" or "p_id") as (label, mass) pairs that sum
        to 1: the known classes, then "other (not a known class)" when there are negative
        classes, then "dropped by the entropy filter" when the filter dropped any mass."""
        out = [(c, float(v)) for c, v in zip(self.classes, getattr(self, which))]
        if self.negatives:
            out.append((OTHER_LABEL, self.p_other[which]))
        if self.p_dropped[which] > 0:
            out.append((DROPPED_LABEL, self.p_dropped[which]))
        return out

    def to_dict(self) -> dict:
        """JSON-ready (no image; an unbounded end of ``score_range`` is ``None``)."""
        out = {}
        for k, v in self.__dict__.items():
            if k == "image":
                continue
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        out["pseudo_ood"] = [list(rc) for rc in self.pseudo_ood]
        out["score_range"] = list(self.score_range)
        out["scale_scores"] = None if self.scale_scores is None else list(self.scale_scores)
        return out


def _numpy(t: torch.Tensor) -> np.ndarray:
    return (t.float() if t.is_floating_point() else t).cpu().numpy()


def predictions(
    out: HVLOutput,
    cfg: HVLConfig,
    names: Sequence[str],
    negatives: Sequence[str],
    encoded: Sequence,
    threshold: float,
    source: str,
    backbone: tuple[str, str],
    calibration: np.ndarray | None = None,
    scope=None,
    precision: dict | None = None,
) -> list[Prediction]:
    """One ``Prediction`` per image of a head pass (``out``, batch-first) under ``cfg``: the
    known classes ``names`` (C), the negative ones (Q), each image's ``Encoded`` (its view and
    notes), the threshold and its source, ``backbone`` = (name, note), the sorted known
    calibration scores for conformal p-values (§ HVL_SPEC 9; None: no p-value), the stage 1
    ``ScopeDetector`` (§11; None: none) and the classes' measured ``precision`` ({name: {value, n}})."""
    n, C = cfg.n, len(names)
    g = 2 * n
    negatives = list(negatives)
    lo, hi = score_range(cfg, C)
    rng = (lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None)
    logit_terms = None
    if SCORES[cfg.score].per_scale:  # a logit score: its per-scale terms (§9)
        terms = scale_scores(cfg.score, out.logits0, out.logits1, out.logits2, out.keep1, out.keep2, cfg.energy_t)
        logit_terms = torch.stack(terms, -1).float().cpu().numpy()
    o = {f: _numpy(getattr(out, f)) for f in _FIELDS}
    rows = C + len(negatives)
    p_values = [None] * len(encoded)
    if calibration is not None:
        p_values = [float(p) for p in conformal_pvalue(o["score"], calibration)]
    # batch-wide sums once, not per image
    other_all = np.stack([o[f"neg{j}"].sum(-1) for j in range(3)], -1)  # (B, 3)
    kept = np.stack([o["keep1"].mean(-1), o["keep2"].mean(-1)], -1)  # (B, 2)
    labels = o["p_id"].argmax(-1)
    stage1 = None
    if scope is not None:
        v0, v1, v2 = (torch.stack([getattr(e, f) for e in encoded]) for f in ("v0", "v1", "v2"))
        stage1 = scope.predict(scope.embed(v0, v1, v2))
    preds = []
    for i, e in enumerate(encoded):
        idx = int(labels[i])
        score = float(o["score"][i])
        other = dict(zip(("p0", "p1", "p2"), (float(x) for x in other_all[i])))
        other["p_id"] = (other["p0"] + other["p1"] + other["p2"]) / 3
        # what neither a known nor a negative class holds: the share of the patches the filter
        # dropped, since §4 divides the kept patches' sum by all patches
        d1, d2 = (0.0, 0.0) if cfg.renormalize else (1.0 - float(kept[i, 0]), 1.0 - float(kept[i, 1]))
        dropped = {"p0": 0.0, "p1": d1, "p2": d2, "p_id": (d1 + d2) / 3}
        in_scope = True if stage1 is None else bool(stage1.in_scope[i])
        outcome = "out of scope" if not in_scope else ("known" if score >= threshold else "unknown")
        preds.append(
            Prediction(
                label=names[idx],
                class_index=idx,
                msp=float(o["msp"][i]),
                known=outcome == "known",
                threshold=threshold,
                classes=list(names),
                p_id=o["p_id"][i],
                p0=o["p0"][i],
                p1=o["p1"][i],
                p2=o["p2"][i],
                p1_patches=o["p1_patches"][i].reshape(n, n, C),
                p2_patches=o["p2_patches"][i].reshape(g, g, C),
                entropy1=o["entropy1"][i].reshape(n, n),
                entropy2=o["entropy2"][i].reshape(g, g),
                keep1=o["keep1"][i].reshape(n, n),
                keep2=o["keep2"][i].reshape(g, g),
                entropy_gain=o["entropy_gain"][i].reshape(g, g),
                pseudo_ood=[(int(j) // g, int(j) % g) for j in o["pseudo_ood"][i]],
                n=n,
                k=int(cfg.k),
                tau=float(cfg.tau),
                backbone=backbone[0],
                backbone_note=backbone[1],
                score=score,
                score0=float(o["score0"][i]),
                score_name=cfg.score,
                score_range=rng,
                scale_scores=None if logit_terms is None else tuple(float(x) for x in logit_terms[i]),
                threshold_source=source,
                negatives=negatives,
                p_value=p_values[i],
                n_calibration=0 if calibration is None else len(calibration),
                p_negatives=(o["neg0"][i] + o["neg1"][i] + o["neg2"][i]) / 3,
                p_other=other,
                p_dropped=dropped,
                entropy_classes=rows,
                entropy_max=math.log(rows),
                outcome=outcome,
                scope=None if stage1 is None else _scope_entry(scope, stage1, i),
                precision=(precision or {}).get(names[idx]),
                image=e.view,
                notes=list(e.notes),
            )
        )
    return preds


def _scope_entry(scope, result, i: int) -> dict:
    return {
        "in_scope": bool(result.in_scope[i]),
        "knn": float(result.knn[i]),
        "gate": float(result.gate[i]),
        "t_knn": scope.t_knn,
        "t_gate": scope.t_gate,
        "contrast": None if result.contrast is None else float(result.contrast[i]),
        "t_contrast": scope.t_contrast,
        "p_value": float(result.p_value[i]),
        "n_calibration": scope.n_calibration,
        "smallest_p": scope.smallest_p,
        "scope": scope.scope,
    }
