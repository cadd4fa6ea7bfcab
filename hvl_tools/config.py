"""The paper's training settings (HVL_SPEC §8) and the named comparison variants, in one place. No torch here: the command line reads
its defaults from ``TrainConfig`` without loading it."""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass
from pathlib import Path


@dataclass
class TrainConfig:
    """Optimisation settings (the paper's by default)."""

    epochs: int = 100
    batch_size: int = 32
    lr: float = 0.002
    seed: int = 0
    weight_decay: float = 0.0
    #: "cosine" (annealing to eta_min over all epochs, stepped per epoch) or "constant"
    scheduler: str = "cosine"
    eta_min: float = 0.0

    def __post_init__(self):
        if self.epochs < 1:
            raise ValueError(f"epochs must be >= 1, got {self.epochs}")
        if self.batch_size < 1:
            raise ValueError(f"batch size must be >= 1, got {self.batch_size}")
        if not self.lr > 0:
            raise ValueError(f"the learning rate must be > 0, got {self.lr}")
        if self.scheduler not in ("cosine", "constant"):
            raise ValueError(f"scheduler must be cosine or constant, got {self.scheduler!r}")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


#: the variants a benchmark run trains / evaluates (name -> (trained?, method, head options))
VARIANTS: dict[str, tuple[bool, str, dict]] = {
    "mcm": (False, "mcm", {}),
    "zero-shot-hvl": (False, "hvl", {}),
    "hvl": (True, "hvl", {}),
    "no-fusion": (True, "hvl", {"fusion": False}),
    "no-ood-loss": (True, "hvl", {"use_ood_loss": False}),
    "entropy-selection": (True, "hvl", {"pseudo_ood_selection": "entropy"}),
    "no-propagation": (True, "hvl", {"propagate": False}),
}


VARIANT_TITLES = {
    "mcm": "MCM (zero-shot CLIP, single scale)",
    "zero-shot-hvl": "HVL, untrained head (zero-shot)",
    "hvl": "HVL (trained)",
    "no-fusion": "HVL w/o cross-scale fusion",
    "no-ood-loss": "HVL w/o L_OOD",
    "entropy-selection": "HVL, pseudo-OOD by entropy (background)",
    "no-propagation": "HVL w/o lower-scale propagation",
}


CACHE_ENV = "HVL_CACHE_DIR"


DEFAULT_CACHE = ".hvl_cache"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.cwd() / DEFAULT_CACHE)

