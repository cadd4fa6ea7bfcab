"""Stage 1 of HVL_SPEC §11 — *in scope?*: is this the kind of image the preset reads at all?

A classifier's own scores cannot tell "another kind of image altogether" (a fundus, an X-ray) from
"a known class seen badly"; feature-space detectors on the global embedding can. With
``f`` = the L2-normalised scale-0 embedding:

- ``knn(f)``: cosine similarity to the k-th nearest of a bank of the preset's ID training
  embeddings (Sun et al., ICML 2022), k = 10;
- ``gate(f)``: the log-odds of a logistic regression trained with outlier exposure (Hendrycks et
  al., ICLR 2019): positives the ID training images, negatives far-OOD images of many kinds and
  the other preset's images;
- in scope iff ``knn ≥ t_knn`` and ``gate ≥ t_gate``. Each threshold is the conformal one at
  ``α/2`` over ID scores pooled leave-one-source-out (each ID source scored by a bank and gate
  fitted without it), so about ``α`` of in-scope images are rejected in all, never set on one
  source. The stage's p-value is the Bonferroni ``min(1, 2·min(p_knn, p_gate))``: it is ``≤ α``
  exactly when one of the two scores falls under its threshold.

``ScopeDetector`` holds a fitted stage 1 and ``predict``s with it (fitting, with scikit-learn's
logistic regression, is a workflow: ``hvl_tools.scope_eval.fit_detector``). It ships beside a
checkpoint as ``scope.safetensors`` (bank, gate weights) with its thresholds and calibration
scores in the checkpoint's ``config.json`` (``scope``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from .conformal import ALPHA, conformal_pvalue
from .files import sha256_bytes

SCOPE_WEIGHTS = "scope.safetensors"
KNN_K = 10


def unit(v: torch.Tensor) -> torch.Tensor:
    """f = v / |v| along the last dim (§11: the L2-normalised global embedding), float32."""
    return torch.nn.functional.normalize(v.float(), dim=-1)


def knn_similarity(f: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """knn(f) = cos(f, k-th nearest row of ``bank``); ``f (B,d)``, ``bank (N,d)`` unit rows → ``(B,)``.
    With fewer than k rows, the farthest one."""
    sims = f @ bank.T
    return sims.topk(min(k, bank.shape[0]), dim=-1).values[:, -1]


def gate_logodds(f: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """gate(f) = f·w + b, the logistic regression's log-odds of "in scope"; ``f (B,d)`` → ``(B,)``."""
    return f @ w + b


def stage_pvalue(p_knn, p_gate) -> np.ndarray:
    """The stage's p-value, Bonferroni over its two tests: ``min(1, 2·min(p_knn, p_gate))``."""
    return np.minimum(1.0, 2.0 * np.minimum(p_knn, p_gate))


@dataclass
class ScopeResult:
    """Stage 1 for a batch: the two scores, the verdict and the stage's p-value, each ``(B,)``."""

    knn: np.ndarray
    gate: np.ndarray
    in_scope: np.ndarray
    p_value: np.ndarray


@dataclass
class ScopeDetector:
    """The fitted stage 1 of one preset (see the module docstring)."""

    bank: torch.Tensor  # (N, d) unit rows: the ID training embeddings
    w: torch.Tensor  # (d,)
    b: torch.Tensor  # ()
    t_knn: float
    t_gate: float
    calibration: dict  # {"knn": sorted (M,), "gate": sorted (M,)} pooled leave-one-source-out ID scores
    k: int = KNN_K
    alpha: float = ALPHA
    #: what is in scope, for the verdict ("a skin-lesion photo"), and what the stage was fitted on
    scope: str = ""
    fitted_on: dict = field(default_factory=dict)

    @torch.inference_mode()
    def predict(self, v0: torch.Tensor) -> ScopeResult:
        """Stage 1 for raw global embeddings ``v0 (B,d)``."""
        f = unit(v0.cpu())
        knn = knn_similarity(f, self.bank, self.k).double().numpy()
        gate = gate_logodds(f, self.w, self.b).double().numpy()
        p = stage_pvalue(
            conformal_pvalue(knn, self.calibration["knn"]), conformal_pvalue(gate, self.calibration["gate"])
        )
        return ScopeResult(knn, gate, (knn >= self.t_knn) & (gate >= self.t_gate), p)

    @property
    def n_calibration(self) -> int:
        return len(self.calibration["knn"])

    # --- storage: tensors in scope.safetensors, the rest in config.json's "scope" ---------------

    def tensors(self) -> dict[str, torch.Tensor]:
        return {"bank": self.bank.contiguous(), "w": self.w.contiguous(), "b": self.b.reshape(1).contiguous()}

    def meta(self, weights_sha256: str) -> dict:
        return {
            "rule": "knn and gate, each at alpha/2 over pooled leave-one-source-out ID scores (HVL_SPEC §11)",
            "scope": self.scope,
            "k": self.k,
            "alpha": self.alpha,
            "t_knn": self.t_knn,
            "t_gate": self.t_gate,
            "n_bank": int(self.bank.shape[0]),
            "calibration": {key: [float(x) for x in v] for key, v in self.calibration.items()},
            "fitted_on": self.fitted_on,
            "weights_sha256": weights_sha256,
        }

    @classmethod
    def from_parts(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> ScopeDetector:
        cal = {key: np.sort(np.asarray(meta["calibration"][key], dtype=np.float64)) for key in ("knn", "gate")}
        return cls(
            bank=tensors["bank"].float(),
            w=tensors["w"].float(),
            b=tensors["b"].float().reshape(()),
            t_knn=float(meta["t_knn"]),
            t_gate=float(meta["t_gate"]),
            calibration=cal,
            k=int(meta["k"]),
            alpha=float(meta["alpha"]),
            scope=str(meta.get("scope", "")),
            fitted_on=dict(meta.get("fitted_on") or {}),
        )


def validate_scope(meta: dict, tensors: dict[str, torch.Tensor], dim: int) -> None:
    """``ValueError`` with one sentence when a stored stage 1 does not fit a ``dim``-wide backbone."""
    if set(tensors) != {"bank", "w", "b"}:
        raise ValueError(f"{SCOPE_WEIGHTS} must hold bank, w and b, found {sorted(tensors)}")
    bank, w, b = tensors["bank"], tensors["w"], tensors["b"]
    if bank.ndim != 2 or bank.shape[1] != dim or not 1 <= bank.shape[0] <= 100_000 or tuple(w.shape) != (dim,):
        raise ValueError(f"{SCOPE_WEIGHTS} has shapes {tuple(bank.shape)}, {tuple(w.shape)} for {dim}-d embeddings")
    if b.numel() != 1 or not all(torch.isfinite(t).all() for t in (bank, w, b)):
        raise ValueError(f"{SCOPE_WEIGHTS} holds non-finite values or a malformed bias")
    for key in ("t_knn", "t_gate", "alpha"):
        if not isinstance(meta.get(key), (int, float)) or not math.isfinite(meta[key]):
            raise ValueError(f"scope.{key} must be a finite number")
    if not isinstance(meta.get("k"), int) or not 1 <= meta["k"] <= 1000:
        raise ValueError("scope.k must be a whole number from 1 to 1000")
    cal = meta.get("calibration")
    if not isinstance(cal, dict) or any(not isinstance(cal.get(key), list) or not cal[key] for key in ("knn", "gate")):
        raise ValueError("scope.calibration must hold the knn and gate scores")
    if len(cal["knn"]) != len(cal["gate"]) or len(cal["knn"]) > 100_000:
        raise ValueError("scope.calibration's knn and gate lists must be of one length (at most 100000)")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for key in ("knn", "gate") for x in cal[key]):
        raise ValueError("scope.calibration's scores must be finite numbers")


def scope_blob(detector: ScopeDetector) -> tuple[bytes, dict]:
    """(``scope.safetensors`` bytes, the ``scope`` entry of config.json, with their sha256)."""
    from safetensors.torch import save as st_save

    blob = st_save(detector.tensors(), metadata={"format": "hvl-scope"})
    return blob, detector.meta(sha256_bytes(blob))


def read_scope(path: Path, meta: dict, dim: int) -> ScopeDetector:
    """The stage 1 stored at ``path`` (``scope.safetensors``) as ``meta`` describes it; ``ValueError``
    with one sentence when it is missing, larger than its bank allows, altered or malformed."""
    from safetensors.torch import load as st_load

    if not path.is_file():
        raise ValueError(f"{SCOPE_WEIGHTS} is missing")
    n_bank = meta.get("n_bank")
    if not isinstance(n_bank, int) or not 1 <= n_bank <= 100_000:
        raise ValueError("scope.n_bank must be a whole number from 1 to 100000")
    if path.stat().st_size > 4 * (n_bank + 2) * dim + 65536:  # before reading it
        raise ValueError(f"{SCOPE_WEIGHTS} is larger than its bank of {n_bank} allows")
    blob = path.read_bytes()
    if sha256_bytes(blob) != meta.get("weights_sha256"):
        raise ValueError(f"{SCOPE_WEIGHTS} does not match the sha256 recorded in the config")
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises several kinds for a malformed file
        raise ValueError(f"{SCOPE_WEIGHTS} is not a readable safetensors file ({type(e).__name__})") from None
    validate_scope(meta, tensors, dim)
    return ScopeDetector.from_parts(meta, tensors)
