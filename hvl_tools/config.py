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


#: metric conventions (``hvl_tools.metrics``): the spec's exact one, MCM's code, OpenOOD's
CONVENTIONS = ("exact", "mcm", "openood")
DEFAULT_CONVENTION = "exact"

#: MCM's own softmax temperature (its code and OpenOOD use T = 1 on cosine similarities); the
#: ``mcm`` variant uses it unless a run says otherwise (``--mcm-tau``). With tau = 0.01 (CLIP's
#: logit scale, HVL's default) the scale-0 MSP is a different baseline.
MCM_TAU = 1.0

#: the variants a benchmark run trains / evaluates: name -> (trained?, method, head options).
#: Table 2 of the paper has three switches — L_OOD, ΔH selection of the pseudo-OOD patches, and
#: cross-scale fusion (CSF) — and six rows; ΔH only matters with L_OOD on. Fig. 2 (left) ablates
#: the lower-scale propagation of the pseudo-OOD embeddings.
VARIANTS: dict[str, tuple[bool, str, dict]] = {
    "mcm": (False, "mcm", {"tau": MCM_TAU}),
    "zero-shot-hvl": (False, "hvl", {}),
    "bare-head": (True, "hvl", {"use_ood_loss": False, "fusion": False}),  # Table 2 row 1
    "no-ood-loss": (True, "hvl", {"use_ood_loss": False}),  # row 2: CSF only
    "entropy-selection-no-fusion": (True, "hvl", {"pseudo_ood_selection": "entropy", "fusion": False}),  # row 3
    "no-fusion": (True, "hvl", {"fusion": False}),  # row 4: L_OOD + ΔH
    "entropy-selection": (True, "hvl", {"pseudo_ood_selection": "entropy"}),  # row 5: L_OOD + CSF
    "hvl": (True, "hvl", {}),  # row 6: all three
    "no-propagation": (True, "hvl", {"propagate": False}),  # Fig. 2, left
}

#: where each trained variant sits in the paper: (Table 2 row or None, its ✓ columns L_OOD, ΔH, CSF)
PAPER_ROWS: dict[str, tuple[int | None, tuple[bool, bool, bool]]] = {
    "bare-head": (1, (False, False, False)),
    "no-ood-loss": (2, (False, False, True)),
    "entropy-selection-no-fusion": (3, (True, False, False)),
    "no-fusion": (4, (True, True, False)),
    "entropy-selection": (5, (True, False, True)),
    "hvl": (6, (True, True, True)),
    "no-propagation": (None, (True, True, True)),
}

VARIANT_TITLES = {
    "mcm": "MCM (zero-shot CLIP, scale-0 softmax)",
    "zero-shot-hvl": "HVL, untrained head (zero-shot)",
    "bare-head": "Table 2 row 1: no L_OOD, no CSF (multi-scale head, L_ID only)",
    "no-ood-loss": "Table 2 row 2: CSF only, no L_OOD",
    "entropy-selection-no-fusion": "Table 2 row 3: L_OOD with entropy (background) selection, no CSF",
    "no-fusion": "Table 2 row 4: L_OOD with ΔH selection, no CSF",
    "entropy-selection": "Table 2 row 5: L_OOD with entropy (background) selection + CSF",
    "hvl": "Table 2 row 6: HVL (L_OOD with ΔH selection + CSF)",
    "no-propagation": "Fig. 2 left: HVL without lower-scale propagation (q¹ = q⁰ = q²)",
}


def variant_title(name: str, mcm_tau: float = MCM_TAU) -> str:
    """The title of a variant in tables; MCM's says its temperature."""
    if name == "mcm":
        return f"{VARIANT_TITLES['mcm'][:-1]}, T = {mcm_tau:g})"
    return VARIANT_TITLES[name]


#: the feature cache: $HVL_CACHE_DIR, else .hvl_cache/ in the working folder
CACHE_ENV = "HVL_CACHE_DIR"
DEFAULT_CACHE = ".hvl_cache"


def default_cache_dir() -> Path:
    return Path(os.environ.get(CACHE_ENV) or Path.cwd() / DEFAULT_CACHE)
