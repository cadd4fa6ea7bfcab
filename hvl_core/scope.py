"""Stage 1 of HVL_SPEC §11 — *in scope?*: is this the kind of image the preset reads at all?

A classifier's own scores cannot tell "another kind of image altogether" (a fundus, an X-ray) from
"a known class seen badly"; feature-space detectors on the image's embeddings can. ``f`` is
``scope_embedding``: the L2-normalised scale-0 embedding (``"global"``, the spec's), or beside it
the L2-normalised means of the scale-1 and scale-2 patch embeddings (``"scale-means"``: a kind of
image the backbone never saw, such as endoscopy, can sit close to skin in the global embedding
and still differ in its patches), the whole L2-normalised:

- ``knn(f)``: cosine similarity to the k-th nearest of a bank of the preset's ID training
  embeddings (Sun et al., ICML 2022), k = 10;
- ``gate(f)``: the log-odds of a logistic regression trained with outlier exposure (Hendrycks et
  al., ICLR 2019): positives the ID training images, negatives far-OOD images of many kinds and
  the other preset's images;
- ``contrast(f)`` = ``knn(f) − cos(f, nearest negative)``: how much nearer the known images are
  than any of the gate's negatives (a bank of them ships too). A kind of image that lies in one
  pocket of feature space (endoscopy beside skin) needs a negative in that pocket, which a single
  hyperplane cannot spend on it. A stage 1 stored without negatives has the first two tests only.
- in scope iff every test passes. Each threshold is the conformal one at ``α/m`` (m tests) over
  ID scores pooled leave-one-source-out (each ID source scored by banks and a gate fitted without
  it), so about ``α`` of in-scope images are rejected in all, never set on one source.
- the stage's p-value is conformal over the same ID images for the statistic ``u = min_j p_j``
  (the smallest of the tests' own conformal p-values; ``min_pvalue_calibration``), so it counts
  how the tests agree on those images rather than Bonferroni's ``m·min(p)``, which is 3/(N+1)
  at best; an image out of scope has ``p ≤ α``. A stage 1 stored without ``u``'s calibration
  gives Bonferroni's.

``ScopeDetector`` holds a fitted stage 1 and ``predict``s with it (fitting, with scikit-learn's
logistic regression, is a workflow: ``hvl_tools.scope_eval.fit_detector``). It ships beside a
checkpoint as ``scope.safetensors`` (banks, gate weights) with its thresholds and calibration
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
#: what ``f`` is made of, and how many embeddings wide it is (a stored stage 1 without the key: "global")
FEATURES = {"global": 1, "scale-means": 3}


def unit(v: torch.Tensor) -> torch.Tensor:
    """v / |v| along the last dim, float32."""
    return torch.nn.functional.normalize(v.float(), dim=-1)


def scope_embedding(v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor, features: str) -> torch.Tensor:
    """Stage 1's ``f`` from raw crop embeddings ``v0 (B,d)``, ``v1 (B,n²,d)``, ``v2 (B,4n²,d)``:
    ``unit(v0)`` (``"global"``, (B,d)) or ``unit([unit(v0), unit(mean v1), unit(mean v2)])``
    (``"scale-means"``, (B,3d)), whose cosine similarity is the mean of the three scales'."""
    if features == "global":
        return unit(v0)
    if features == "scale-means":
        return unit(torch.cat([unit(v0), unit(v1.float().mean(-2)), unit(v2.float().mean(-2))], -1))
    raise ValueError(f"unknown stage 1 features {features!r}; known: {', '.join(FEATURES)}")


def knn_similarity(f: torch.Tensor, bank: torch.Tensor, k: int) -> torch.Tensor:
    """knn(f) = cos(f, k-th nearest row of ``bank``); ``f (B,d)``, ``bank (N,d)`` unit rows → ``(B,)``.
    With fewer than k rows, the farthest one."""
    sims = f @ bank.T
    return sims.topk(min(k, bank.shape[0]), dim=-1).values[:, -1]


def gate_logodds(f: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """gate(f) = f·w + b, the logistic regression's log-odds of "in scope"; ``f (B,d)`` → ``(B,)``."""
    return f @ w + b


def contrast_score(knn: torch.Tensor, f: torch.Tensor, negatives: torch.Tensor) -> torch.Tensor:
    """contrast(f) = knn(f) − cos(f, nearest row of ``negatives (M,D)``); ``knn (B,)``, ``f (B,D)`` → ``(B,)``."""
    return knn - knn_similarity(f, negatives, 1)


def stage_pvalue(*p_values) -> np.ndarray:
    """Bonferroni over m tests' p-values: ``min(1, m·min(p))`` (a stage stored without ``min_p``)."""
    return np.minimum(1.0, len(p_values) * np.minimum.reduce([np.asarray(p) for p in p_values]))


def min_pvalue_calibration(*scores) -> np.ndarray:
    """``u_i = min_j p_j(i)`` of each ID calibration image, with ``p_j(i) = #{l : s_lj ≤ s_ij} / N``
    (its conformal p-value against the other N − 1 images); ``scores``: one (N,) array per test,
    rows aligned → sorted (N,)."""
    cols = [np.asarray(s, dtype=np.float64) for s in scores]
    n = len(cols[0])
    return np.sort(np.minimum.reduce([np.searchsorted(np.sort(c), c, side="right") / n for c in cols]))


@dataclass
class ScopeResult:
    """Stage 1 for a batch: the two scores, the verdict and the stage's p-value, each ``(B,)``."""

    knn: np.ndarray
    gate: np.ndarray
    in_scope: np.ndarray
    p_value: np.ndarray
    contrast: np.ndarray | None = None


@dataclass
class ScopeDetector:
    """The fitted stage 1 of one preset (see the module docstring)."""

    bank: torch.Tensor  # (N, D) unit rows: the ID training images' f (D = d · FEATURES[features])
    w: torch.Tensor  # (D,)
    b: torch.Tensor  # ()
    t_knn: float
    t_gate: float
    calibration: dict  # {"knn", "gate"[, "contrast"], "min_p": sorted (N,)}: pooled leave-one-source-out ID scores
    k: int = KNN_K
    alpha: float = ALPHA
    #: what is in scope, for the verdict ("a skin-lesion photo"), and what the stage was fitted on
    scope: str = ""
    fitted_on: dict = field(default_factory=dict)
    features: str = "global"
    negatives: torch.Tensor | None = None  # (M, D) unit rows: the gate's negatives, for contrast(f)
    t_contrast: float | None = None

    def embed(self, v0: torch.Tensor, v1: torch.Tensor, v2: torch.Tensor) -> torch.Tensor:
        """``f`` of a batch of raw crop embeddings, as this stage 1 was fitted on (``scope_embedding``)."""
        return scope_embedding(v0.cpu(), v1.cpu(), v2.cpu(), self.features)

    @torch.inference_mode()
    def predict(self, f: torch.Tensor) -> ScopeResult:
        """Stage 1 for a batch's ``f (B,D)`` (``embed``; normalised here again)."""
        f = unit(f.cpu())
        knn_t = knn_similarity(f, self.bank, self.k)
        knn = knn_t.double().numpy()
        gate = gate_logodds(f, self.w, self.b).double().numpy()
        cal = self.calibration
        p = [conformal_pvalue(knn, cal["knn"]), conformal_pvalue(gate, cal["gate"])]
        inside = (knn >= self.t_knn) & (gate >= self.t_gate)
        contrast = None
        if self.negatives is not None:
            contrast = contrast_score(knn_t, f, self.negatives).double().numpy()
            p.append(conformal_pvalue(contrast, cal["contrast"]))
            inside &= contrast >= self.t_contrast
        u = np.minimum.reduce(p)
        p_value = conformal_pvalue(u, cal["min_p"]) if "min_p" in cal else stage_pvalue(*p)
        return ScopeResult(knn, gate, inside, p_value, contrast)

    @property
    def n_calibration(self) -> int:
        return len(self.calibration["knn"])

    @property
    def smallest_p(self) -> float:
        """The smallest p-value the stage can give: ``1/(N+1)``, or Bonferroni's ``m/(N+1)``."""
        m = 1 if "min_p" in self.calibration else (3 if self.negatives is not None else 2)
        return min(1.0, m / (self.n_calibration + 1))

    # --- storage: tensors in scope.safetensors, the rest in config.json's "scope" ---------------

    def tensors(self) -> dict[str, torch.Tensor]:
        t = {"bank": self.bank.contiguous(), "w": self.w.contiguous(), "b": self.b.reshape(1).contiguous()}
        if self.negatives is not None:
            t["negatives"] = self.negatives.contiguous()
        return t

    def meta(self, weights_sha256: str) -> dict:
        tests = (
            "knn, gate and contrast, each at alpha/3" if self.negatives is not None else "knn and gate, each at alpha/2"
        )
        extra = (
            {} if self.negatives is None else {"t_contrast": self.t_contrast, "n_negatives": int(len(self.negatives))}
        )
        return {
            "rule": f"{tests} over pooled leave-one-source-out ID scores (HVL_SPEC §11)",
            **extra,
            "scope": self.scope,
            "k": self.k,
            "alpha": self.alpha,
            "t_knn": self.t_knn,
            "t_gate": self.t_gate,
            "n_bank": int(self.bank.shape[0]),
            "features": self.features,
            "calibration": {key: [float(x) for x in v] for key, v in self.calibration.items()},
            "fitted_on": self.fitted_on,
            "weights_sha256": weights_sha256,
        }

    @classmethod
    def from_parts(cls, meta: dict, tensors: dict[str, torch.Tensor]) -> ScopeDetector:
        neg = tensors.get("negatives")
        keys = ("knn", "gate") if neg is None else ("knn", "gate", "contrast")
        keys += ("min_p",) if "min_p" in meta["calibration"] else ()
        cal = {key: np.sort(np.asarray(meta["calibration"][key], dtype=np.float64)) for key in keys}
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
            features=str(meta.get("features", "global")),
            negatives=None if neg is None else neg.float(),
            t_contrast=None if neg is None else float(meta["t_contrast"]),
        )


def validate_scope(meta: dict, tensors: dict[str, torch.Tensor], dim: int) -> None:
    """``ValueError`` with one sentence when a stored stage 1 does not fit a ``dim``-wide backbone."""
    if set(tensors) not in ({"bank", "w", "b"}, {"bank", "w", "b", "negatives"}):
        raise ValueError(f"{SCOPE_WEIGHTS} must hold bank, w and b (and negatives), found {sorted(tensors)}")
    features = meta.get("features", "global")
    if not isinstance(features, str) or features not in FEATURES:
        raise ValueError(f"scope.features must be one of {', '.join(FEATURES)}")
    dim *= FEATURES[features]
    bank, w, b = tensors["bank"], tensors["w"], tensors["b"]
    if bank.ndim != 2 or bank.shape[1] != dim or not 1 <= bank.shape[0] <= 100_000 or tuple(w.shape) != (dim,):
        raise ValueError(f"{SCOPE_WEIGHTS} has shapes {tuple(bank.shape)}, {tuple(w.shape)} for {dim}-d features")
    neg = tensors.get("negatives")
    if neg is not None and (neg.ndim != 2 or neg.shape[1] != dim or not 1 <= neg.shape[0] <= 100_000):
        raise ValueError(f"{SCOPE_WEIGHTS} has negatives of shape {tuple(neg.shape)} for {dim}-d features")
    if b.numel() != 1 or not all(torch.isfinite(t).all() for t in tensors.values()):
        raise ValueError(f"{SCOPE_WEIGHTS} holds non-finite values or a malformed bias")
    keys = ("knn", "gate") if neg is None else ("knn", "gate", "contrast")
    if isinstance(meta.get("calibration"), dict) and "min_p" in meta["calibration"]:
        keys += ("min_p",)
    for key in ("t_knn", "t_gate", "alpha", *(("t_contrast",) if neg is not None else ())):
        if not isinstance(meta.get(key), (int, float)) or not math.isfinite(meta[key]):
            raise ValueError(f"scope.{key} must be a finite number")
    if not isinstance(meta.get("k"), int) or not 1 <= meta["k"] <= 1000:
        raise ValueError("scope.k must be a whole number from 1 to 1000")
    cal = meta.get("calibration")
    if not isinstance(cal, dict) or any(not isinstance(cal.get(key), list) or not cal[key] for key in keys):
        raise ValueError(f"scope.calibration must hold the {' and '.join(keys)} scores")
    if len({len(cal[key]) for key in keys}) != 1 or len(cal["knn"]) > 100_000:
        raise ValueError("scope.calibration's lists must be of one length (at most 100000)")
    if not all(isinstance(x, (int, float)) and math.isfinite(x) for key in keys for x in cal[key]):
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
    n_bank, n_neg = meta.get("n_bank"), meta.get("n_negatives", 0)
    if not isinstance(n_bank, int) or not 1 <= n_bank <= 100_000:
        raise ValueError("scope.n_bank must be a whole number from 1 to 100000")
    if not isinstance(n_neg, int) or not 0 <= n_neg <= 100_000:
        raise ValueError("scope.n_negatives must be a whole number from 0 to 100000")
    features = meta.get("features", "global")
    width = dim * (FEATURES.get(features, 1) if isinstance(features, str) else 1)
    if path.stat().st_size > 4 * (n_bank + n_neg + 2) * width + 65536:  # before reading it
        raise ValueError(f"{SCOPE_WEIGHTS} is larger than its banks of {n_bank} and {n_neg} allow")
    blob = path.read_bytes()
    if sha256_bytes(blob) != meta.get("weights_sha256"):
        raise ValueError(f"{SCOPE_WEIGHTS} does not match the sha256 recorded in the config")
    try:
        tensors = st_load(blob)
    except Exception as e:  # safetensors raises several kinds for a malformed file
        raise ValueError(f"{SCOPE_WEIGHTS} is not a readable safetensors file ({type(e).__name__})") from None
    validate_scope(meta, tensors, dim)
    return ScopeDetector.from_parts(meta, tensors)
