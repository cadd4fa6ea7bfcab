"""``HVLConfig``: every option and ablation switch of the head (HVL_SPEC §2–6, §9), the one place
its defaults are set. Needs no torch, so a command line can show them in its help."""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .scores import SCORES, ScoreError

SELECTIONS = ("entropy_gain", "entropy")
SIMILARITIES = ("cosine", "linear")


@dataclass(frozen=True)
class HVLConfig:
    """Every option and ablation switch of the spec. Defaults are the paper's [pinned] choices."""

    n: int = 2
    k: int = 4
    tau: float = 0.01
    #: divide a scale's kept-patch sum by the number of kept patches instead of all patches
    renormalize: bool = False
    #: the entropy filter (paper §2.2, used by Eq. 3; off: every patch counts)
    entropy_filter: bool = True
    #: cross-scale fusion of Eq. 1 (ablation: off means û = u)
    fusion: bool = True
    #: train with L_OOD (ablation: off)
    use_ood_loss: bool = True
    #: weight of L_OOD in the total loss
    lambda_ood: float = 1.0
    #: how pseudo-OOD patches are chosen: by entropy gain ΔH (paper) or by highest entropy H
    #: (the "background" selection of LoCoOp/SCT; ablation)
    pseudo_ood_selection: str = "entropy_gain"
    #: propagate pseudo-OOD embeddings to lower scales, Eq. 4 (ablation: off means q¹ = q⁰ = q²)
    propagate: bool = True
    #: "cosine" (paper) or "linear": logits = (u·t + class bias) / tau, for backbones whose class
    #: embeddings are a trained linear classifier (inputs are then not L2-normalised)
    similarity: str = "cosine"
    #: trailing class rows that are *negative classes*: they take part in every softmax but
    #: are not known classes; p0/p1/p2/p_ID and the decision cover the first C rows only
    num_negatives: int = 0
    #: the decision score (§6, §9), a name in :data:`hvl_core.scores.SCORES`; thresholds are in its units
    score: str = "msp"
    #: the energy score's temperature T (§9)
    energy_t: float = 1.0

    def __post_init__(self):
        if self.n < 1:
            raise ValueError(f"n must be >= 1, got {self.n}")
        if self.k < 1:
            raise ValueError(f"k must be >= 1, got {self.k}")
        if not self.tau > 0:
            raise ValueError(f"tau must be > 0, got {self.tau}")
        if self.pseudo_ood_selection not in SELECTIONS:
            raise ValueError(f"pseudo_ood_selection must be one of {SELECTIONS}")
        if self.similarity not in SIMILARITIES:
            raise ValueError(f"similarity must be one of {SIMILARITIES}")
        if self.num_negatives < 0:
            raise ValueError("num_negatives must be >= 0")
        if self.score not in SCORES:
            raise ScoreError(f"unknown score {self.score!r}: use one of {', '.join(SCORES)}")
        if not (math.isfinite(self.energy_t) and self.energy_t > 0):
            raise ScoreError(f"the energy temperature T must be a finite number > 0, got {self.energy_t}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> HVLConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise ValueError(f"unknown HVL options: {sorted(unknown)}")
        return cls(**d)
