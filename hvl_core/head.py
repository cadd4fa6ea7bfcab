"""The HVL head: adapter, text biases, cross-scale fusion, entropy filter, pseudo-OOD (HVL_SPEC §2–6),
and the decision scores (MSP, the paper's; energy and max-logit, §9).

``HVLHead`` composes the pure functions of :mod:`hvl_core.equations`; its three parameters
``W`` (d×d), ``b0`` and ``b2`` (C×d) start at zero, so an untrained head is zero-shot
multi-scale CLIP.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass, field

import torch
from torch import nn

from . import equations as eq
from .config import SELECTIONS, SIMILARITIES, HVLConfig  # noqa: F401  (re-exported: the head's options)
from .scores import SCORES, ScoreError  # noqa: F401  (re-exported)


@dataclass
class HVLOutput:
    """Batch-first results of one head pass. Probabilities cover the C known classes; the Q
    negative classes' share of each softmax is in ``neg0``/``neg1``/``neg2`` (aggregated like
    p0/p1/p2), so p_s + neg_s sums to 1 at scale 0 and to the kept fraction at scales 1–2."""

    p0: torch.Tensor  # (B, C) scale 0
    p1: torch.Tensor  # (B, C) mid scale, entropy-filtered aggregate
    p2: torch.Tensor  # (B, C) high scale
    logp: tuple[torch.Tensor, torch.Tensor, torch.Tensor]  # log p0, log p1, log p2 (B, C), in the log domain (§10)
    p_id: torch.Tensor  # (B, C) fused
    msp: torch.Tensor  # (B,)
    score: torch.Tensor  # (B,) the decision score of the config (fused; msp for the paper)
    score0: torch.Tensor  # (B,) the same score from scale 0 alone (the whole image; MCM for msp)
    logits0: torch.Tensor  # (B, C) s⁰ over the known classes (§9)
    logits1: torch.Tensor  # (B, n², C) per-patch s¹
    logits2: torch.Tensor  # (B, 4n², C) per-patch s²
    neg0: torch.Tensor  # (B, Q) negative classes at scale 0
    neg1: torch.Tensor  # (B, Q) mid scale, aggregated as p1
    neg2: torch.Tensor  # (B, Q) high scale, aggregated as p2
    p1_patches: torch.Tensor  # (B, n², C) per-patch
    p2_patches: torch.Tensor  # (B, 4n², C)
    entropy1: torch.Tensor  # (B, n²)
    entropy2: torch.Tensor  # (B, 4n²)
    keep1: torch.Tensor  # (B, n²) bool
    keep2: torch.Tensor  # (B, 4n²) bool
    entropy_gain: torch.Tensor  # (B, 4n²)
    pseudo_ood: torch.Tensor  # (B, K) indices into the high scale
    pseudo_ood_probs: tuple[torch.Tensor, torch.Tensor, torch.Tensor] = field(
        repr=False, default=None
    )  # p_k^0,1,2 (B,K,C+neg)


class HVLHead(nn.Module):
    """HVL on top of a frozen encoder.

    >>> head = HVLHead(dim=512, num_classes=4, n=2, k=4)
    >>> out = head(v0, v1, v2, text)      # raw encoder outputs; text (C[+negatives], d)
    >>> losses = head.loss(out, labels)   # {"id", "ood", "total"}
    """

    def __init__(self, dim: int, num_classes: int, **options):
        super().__init__()
        self.config = HVLConfig(**options)
        self.dim = dim
        self.num_classes = num_classes
        rows = num_classes + self.config.num_negatives
        self.W = nn.Parameter(torch.zeros(dim, dim))
        self.b0 = nn.Parameter(torch.zeros(rows, dim))
        self.b2 = nn.Parameter(torch.zeros(rows, dim))
        self.register_buffer("parent", eq.parent_index(self.config.n), persistent=False)

    def extra_repr(self) -> str:
        return f"dim={self.dim}, num_classes={self.num_classes}, {self.config}"

    def forward(
        self,
        v0: torch.Tensor,
        v1: torch.Tensor,
        v2: torch.Tensor,
        text: torch.Tensor,
        logit_bias: torch.Tensor | None = None,
        **overrides,
    ) -> HVLOutput:
        """Run the head. ``overrides`` replace config fields for this call only (inference-time
        options such as ``k``, ``tau``, ``renormalize``, ``entropy_filter``; ``n`` cannot change)."""
        cfg = dataclasses.replace(self.config, **overrides) if overrides else self.config
        if cfg.n != self.config.n:
            raise ValueError("n is fixed by the encoded crops; re-encode to change it")
        n2 = cfg.n**2
        if v1.shape[1] != n2 or v2.shape[1] != 4 * n2:
            raise ValueError(
                f"expected {n2} mid and {4 * n2} high-scale patches for n={cfg.n}, got {v1.shape[1]} and {v2.shape[1]}"
            )
        rows = self.num_classes + cfg.num_negatives
        if text.shape != (rows, self.dim):
            raise ValueError(f"text embeddings must be ({rows}, {self.dim}), got {tuple(text.shape)}")
        dtype = self.W.dtype
        v0, v1, v2, text = (x.to(dtype) for x in (v0, v1, v2, text))
        if cfg.similarity == "cosine":  # §2: L2-normalised embeddings
            v0, v1, v2, text = (nn.functional.normalize(x, dim=-1) for x in (v0, v1, v2, text))

        u0, u1, u2 = (eq.adapter(v, self.W) for v in (v0, v1, v2))
        t0, t1, t2 = eq.scale_texts(text, self.b0, self.b2)
        if cfg.fusion:
            u1_hat, u2_hat = eq.fuse_scales(u0, u1, u2, self.parent)
        else:
            u1_hat, u2_hat = u1, u2

        def logits(u, t):
            return eq.class_logits(u, t, cfg.tau, logit_bias, cfg.similarity)

        def probs(u, t):
            return torch.softmax(logits(u, t), dim=-1)

        C = self.num_classes
        z0, z1, z2 = logits(u0, t0), logits(u1_hat, t1), logits(u2_hat, t2)
        p0_all, p1_all, p2_all = (torch.softmax(z, dim=-1) for z in (z0, z1, z2))
        h1, h2 = eq.entropy(p1_all), eq.entropy(p2_all)
        if cfg.entropy_filter:
            keep1, keep2 = eq.entropy_filter(h1), eq.entropy_filter(h2)
        else:
            keep1, keep2 = torch.ones_like(h1, dtype=torch.bool), torch.ones_like(h2, dtype=torch.bool)
        p0 = p0_all[..., :C]
        # L_ID reads these: log p computed without ever taking the log of a rounded-down p (§10)
        logp = (
            torch.log_softmax(z0, dim=-1)[..., :C],
            eq.log_aggregate_patches(torch.log_softmax(z1, dim=-1)[..., :C], keep1, cfg.renormalize),
            eq.log_aggregate_patches(torch.log_softmax(z2, dim=-1)[..., :C], keep2, cfg.renormalize),
        )
        p1 = eq.aggregate_patches(p1_all[..., :C], keep1, cfg.renormalize)
        p2 = eq.aggregate_patches(p2_all[..., :C], keep2, cfg.renormalize)
        p_id = eq.fused_prediction(p0, p1, p2)
        neg = (
            p0_all[..., C:],
            eq.aggregate_patches(p1_all[..., C:], keep1, cfg.renormalize),
            eq.aggregate_patches(p2_all[..., C:], keep2, cfg.renormalize),
        )
        # negative classes never enter a score (§9): logits over the C known classes only
        z0, z1, z2 = z0[..., :C], z1[..., :C], z2[..., :C]
        whole, fused = decision_scores(cfg.score, z0, z1, z2, keep1, keep2, p0, p_id, cfg.energy_t)

        gain = eq.entropy_gain(h2, h1, self.parent)
        score = gain if cfg.pseudo_ood_selection == "entropy_gain" else h2
        idx = eq.select_pseudo_ood(score, cfg.k)
        q2 = u2_hat.gather(1, idx.unsqueeze(-1).expand(-1, -1, u2_hat.shape[-1]))
        if cfg.propagate:
            q1, q0 = eq.propagate_pseudo_ood(q2, u1_hat, u0)
        else:
            q1 = q0 = q2
        pk = (probs(q0, t0), probs(q1, t1), probs(q2, t2))

        return HVLOutput(
            p0=p0,
            p1=p1,
            p2=p2,
            logp=logp,
            p_id=p_id,
            msp=eq.msp(p_id),
            score=fused,
            score0=whole,
            logits0=z0,
            logits1=z1,
            logits2=z2,
            neg0=neg[0],
            neg1=neg[1],
            neg2=neg[2],
            p1_patches=p1_all[..., :C],
            p2_patches=p2_all[..., :C],
            entropy1=h1,
            entropy2=h2,
            keep1=keep1,
            keep2=keep2,
            entropy_gain=gain,
            pseudo_ood=idx,
            pseudo_ood_probs=pk,
        )

    def loss(self, out: HVLOutput, labels: torch.Tensor) -> dict[str, torch.Tensor]:
        """L_ID (Eq. 3), L_OOD (Eq. 5) and total = L_ID + lambda_ood · L_OOD."""
        l_id = eq.id_loss(*out.logp, labels)
        if self.config.use_ood_loss:
            l_ood = eq.ood_loss(*out.pseudo_ood_probs)
        else:
            l_ood = torch.zeros((), dtype=l_id.dtype, device=l_id.device)
        return {"id": l_id, "ood": l_ood, "total": l_id + self.config.lambda_ood * l_ood}


def decision_scores(
    name: str,
    z0: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    keep1: torch.Tensor,
    keep2: torch.Tensor,
    p0: torch.Tensor,
    p_id: torch.Tensor,
    energy_t: float = HVLConfig.energy_t,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(whole-image score S⁰, fused score S), each ``(B,)``, for score ``name`` (§6, §9).

    ``z0 (B,C)``, ``z1 (B,n²,C)``, ``z2 (B,4n²,C)``: logits over the known classes;
    ``keep1``/``keep2``: the entropy filter's masks; ``p0``, ``p_id (B,C)``: for MSP, which is
    max p⁰ on the whole image and max p_ID fused (not a mean of per-scale maxima).
    """
    if not SCORES[name].per_scale:
        return eq.msp(p0), eq.msp(p_id)
    s0, s1, s2 = scale_scores(name, z0, z1, z2, keep1, keep2, energy_t)
    return s0, eq.fused_score(s0, s1, s2)


def scale_scores(
    name: str,
    z0: torch.Tensor,
    z1: torch.Tensor,
    z2: torch.Tensor,
    keep1: torch.Tensor,
    keep2: torch.Tensor,
    energy_t: float = HVLConfig.energy_t,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-scale logit scores (S⁰, S¹, S²), each ``(B,)``, of §9: S¹, S² are means over kept patches."""
    term = SCORES[name].term if name in SCORES else None
    if term is None:
        logit_scores = ", ".join(n for n, sc in SCORES.items() if sc.per_scale)
        raise ScoreError(f"{name!r} has no per-scale logit score: use {logit_scores}")
    return term(z0, energy_t), eq.kept_mean(term(z1, energy_t), keep1), eq.kept_mean(term(z2, energy_t), keep2)


def score_range(cfg: HVLConfig, num_classes: int) -> tuple[float, float]:
    """The values score ``cfg.score`` can take with ``num_classes`` known classes (its registry
    entry's ``bounds``): cosine logits lie in [−1/tau, 1/tau], linear ones are unbounded, so
    e.g. MSP is in [0, 1], max-logit in [−1/tau, 1/tau], energy in [−1/tau + T·ln C, 1/tau + T·ln C]."""
    lim = 1.0 / cfg.tau if cfg.similarity == "cosine" else math.inf
    return SCORES[cfg.score].bounds(lim, cfg.energy_t, num_classes)


def check_threshold(threshold: float, cfg: HVLConfig, num_classes: int) -> float:
    """The threshold as a float, or ``ScoreError`` when it is not a number or lies outside the
    range of the score it is compared with (a threshold no image could reach, or every image would)."""
    try:
        t = float(threshold)
    except (TypeError, ValueError):
        raise ScoreError(f"the threshold must be a number, got {threshold!r}") from None
    if math.isnan(t) or math.isinf(t):
        raise ScoreError(f"the threshold must be a finite number, got {t}")
    lo, hi = score_range(cfg, num_classes)
    if not lo <= t <= hi:
        raise ScoreError(
            f"threshold {t:g} is outside the range of the {cfg.score} score, "
            f"[{lo:g}, {hi:g}] here, so it would decide every image the same way"
        )
    return t
