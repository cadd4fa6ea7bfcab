"""The paper's equations as small pure tensor functions (HVL_SPEC.md §2–6), and the scores of §9.

Shapes are batch-first: ``u0 (B,d)``, ``u1 (B,n²,d)``, ``u2 (B,4n²,d)``, text ``(C,d)``.
Patch order is row-major; see :func:`parent_index` for the mid-scale parent of a high-scale cell.
"""

from __future__ import annotations

import torch

EPS_COS = 1e-8
EPS_LOG = 1e-12


def parent_index(n: int) -> torch.Tensor:
    """Parent map j*: for each of the ``4n²`` high-scale cells (row-major on a 2n×2n grid),
    the row-major index of its mid-scale parent on the n×n grid (§1)."""
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    g = 2 * n
    r, c = torch.meshgrid(torch.arange(g), torch.arange(g), indexing="ij")
    return ((r // 2) * n + (c // 2)).reshape(-1)


def cosine(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """cos(a, b) = a·b / max(|a||b|, 1e-8) along the last dim, broadcasting (§2)."""
    dot = (a * b).sum(-1)
    return dot / (a.norm(dim=-1) * b.norm(dim=-1)).clamp_min(EPS_COS)


def cosine_matrix(x: torch.Tensor, t: torch.Tensor) -> torch.Tensor:
    """cos between every row of ``x (..., d)`` and every row of ``t (C, d)`` → ``(..., C)``."""
    dot = x @ t.T
    return dot / (x.norm(dim=-1, keepdim=True) * t.norm(dim=-1)).clamp_min(EPS_COS)


def relu_right(z: torch.Tensor) -> torch.Tensor:
    """ReLU whose (sub)gradient at 0 is 1, not torch's 0. The forward is ReLU exactly; without
    this, the zero-initialised W of the spec would get a zero gradient and never train."""
    return torch.where(z >= 0, z, torch.zeros_like(z))


def adapter(v: torch.Tensor, W: torch.Tensor) -> torch.Tensor:
    """Adapter of §2.2: u = ReLU(v W) + v (residual; W = 0 gives u = v)."""
    return relu_right(v @ W) + v


def scale_texts(t: torch.Tensor, b0: torch.Tensor, b2: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Per-scale text embeddings: t⁰ = t + b⁰, t¹ = t + (b⁰ + b²)/2, t² = t + b²."""
    return t + b0, t + (b0 + b2) / 2, t + b2


def fuse_scales(
    u0: torch.Tensor, u1: torch.Tensor, u2: torch.Tensor, parent: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 1, coarse to fine: û¹_i = u¹_i + cos(u¹_i, u⁰)·u⁰ and
    û²_j = u²_j + cos(u²_j, û¹_{j*})·û¹_{j*} (the *fused* parent). Returns (û¹, û²)."""
    u0e = u0.unsqueeze(1)
    u1_hat = u1 + cosine(u1, u0e).unsqueeze(-1) * u0e
    par = u1_hat[:, parent]  # (B, 4n², d)
    u2_hat = u2 + cosine(u2, par).unsqueeze(-1) * par
    return u1_hat, u2_hat


def class_logits(
    u: torch.Tensor, t: torch.Tensor, tau: float, logit_bias: torch.Tensor | None = None, similarity: str = "cosine"
) -> torch.Tensor:
    """The logits of Eq. 2 and §9: s_c = sim(û, t_c) / tau. ``u (..., d)``, ``t (C, d)`` → ``(..., C)``.

    ``sim`` is the cosine (paper), or with ``similarity="linear"`` (an option, not the paper's)
    ``û·t_c + bias_c``, for backbones whose class embeddings are a linear classifier's rows.
    """
    if similarity == "cosine":
        logits = cosine_matrix(u, t)
    elif similarity == "linear":
        logits = u @ t.T
    else:
        raise ValueError(f"unknown similarity {similarity!r} (use 'cosine' or 'linear')")
    if logit_bias is not None:
        logits = logits + logit_bias
    return logits / tau


def class_probs(
    u: torch.Tensor, t: torch.Tensor, tau: float, logit_bias: torch.Tensor | None = None, similarity: str = "cosine"
) -> torch.Tensor:
    """Eq. 2: p(y=c | û) = softmax_c(cos(û, t_c) / tau), the softmax of :func:`class_logits`."""
    return torch.softmax(class_logits(u, t, tau, logit_bias, similarity), dim=-1)


def entropy(p: torch.Tensor) -> torch.Tensor:
    """H(p) = −Σ_c p_c log p_c over the last dim (natural log, p clamped at 1e-12 in the log)."""
    return -(p * p.clamp_min(EPS_LOG).log()).sum(-1)


def entropy_filter(h: torch.Tensor) -> torch.Tensor:
    """Keep mask of the entropy filter (paper §2.2, the text between Eq. 2 and Eq. 3): patch i is
    kept when H(p_i) ≤ mean_i H(p_i) (≥ 1 kept)."""
    return h <= h.mean(dim=-1, keepdim=True)


def aggregate_patches(p: torch.Tensor, keep: torch.Tensor, renormalize: bool = False) -> torch.Tensor:
    """Scale prediction of §2.2: p = (1/N) Σ_i keep_i · p_i over the N patches of a scale.

    By default divided by the number of *all* patches, as the paper writes (p may sum to < 1);
    ``renormalize=True`` divides by the number of kept patches instead.
    """
    kept = (p * keep.unsqueeze(-1).to(p.dtype)).sum(1)
    denom = keep.sum(1, keepdim=True).to(p.dtype).clamp_min(1) if renormalize else p.shape[1]
    return kept / denom


def log_aggregate_patches(logp: torch.Tensor, keep: torch.Tensor, renormalize: bool = False) -> torch.Tensor:
    """log of :func:`aggregate_patches`, in the log domain (§10): ``logsumexp_i∈kept(log p_i) − log N``
    (N: all patches, or the kept ones with ``renormalize``). ``logp (B,N,C)``, ``keep (B,N)`` → ``(B,C)``.
    Finite and with a gradient however small the kept probabilities are."""
    masked = logp.masked_fill(~keep.unsqueeze(-1), float("-inf"))
    denom = (
        keep.sum(1, keepdim=True).to(logp.dtype).clamp_min(1) if renormalize else logp.new_tensor(float(logp.shape[1]))
    )
    return torch.logsumexp(masked, dim=1) - denom.log()


def cross_entropy(log_p: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """CE(p, y) = −log p_y from log-probabilities ``log_p (B,C)`` (§10: never ``log(clamp(p, ε))``,
    whose clamp has zero gradient, so an image with p_y < ε would stop learning), per sample."""
    return -log_p.gather(-1, y.view(-1, 1)).squeeze(-1)


def id_loss(logp0: torch.Tensor, logp1: torch.Tensor, logp2: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Eq. 3: L_ID = mean_batch [CE(p⁰, y) + CE(p¹, y) + CE(p², y)], from log p⁰, log p¹, log p²
    (``log_softmax`` and :func:`log_aggregate_patches`, §10)."""
    return (cross_entropy(logp0, y) + cross_entropy(logp1, y) + cross_entropy(logp2, y)).mean()


def entropy_gain(h2: torch.Tensor, h1: torch.Tensor, parent: torch.Tensor) -> torch.Tensor:
    """Entropy gain (paper §2.3, the text before Eq. 4): ΔH_j = H(p²_j) − H(p¹_{j*}) for every
    high-scale patch j (unfiltered entropies)."""
    return h2 - h1[:, parent]


def select_pseudo_ood(score: torch.Tensor, k: int) -> torch.Tensor:
    """Indices (B, K) of the top-K patches by ``score`` (ΔH, or H for the 'entropy' ablation);
    ties go to the lower index."""
    k = min(k, score.shape[1])
    # A stable descending sort keeps lower indices first among equal scores.
    return torch.sort(score, dim=1, descending=True, stable=True).indices[:, :k]


def propagate_pseudo_ood(q2: torch.Tensor, u1_hat: torch.Tensor, u0: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Eq. 4, fine to coarse: q¹_k = q²_k + (1/n²) Σ_i cos(q²_k, û¹_i)·û¹_i and
    q⁰_k = q¹_k + cos(q¹_k, u⁰)·u⁰. ``q2 (B,K,d)``; returns (q¹, q⁰)."""
    w = cosine(q2.unsqueeze(2), u1_hat.unsqueeze(1))  # (B, K, n²)
    q1 = q2 + (w @ u1_hat) / u1_hat.shape[1]
    u0e = u0.unsqueeze(1)
    q0 = q1 + cosine(q1, u0e).unsqueeze(-1) * u0e
    return q1, q0


def ood_loss(pk0: torch.Tensor, pk1: torch.Tensor, pk2: torch.Tensor) -> torch.Tensor:
    """Eq. 5: L_OOD = −mean_batch (1/K) Σ_k [H(p⁰_k) + H(p¹_k) + H(p²_k)]
    (maximises the entropy of the pseudo-OOD predictions). Inputs (B, K, C)."""
    return -(entropy(pk0) + entropy(pk1) + entropy(pk2)).mean(1).mean()


def fused_prediction(p0: torch.Tensor, p1: torch.Tensor, p2: torch.Tensor) -> torch.Tensor:
    """Inference (§2.3 end): p_ID = (p⁰ + p¹ + p²) / 3."""
    return (p0 + p1 + p2) / 3


def msp(p_id: torch.Tensor) -> torch.Tensor:
    """OOD score: max-softmax probability max_c p_ID (lower = more likely unknown)."""
    return p_id.max(-1).values


# --- §9 scores beyond the paper (options; the paper's score is MSP) --------------------------------


def energy(s: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """§9 energy score E(s) = T · logsumexp_c(s_c / T) of logits ``s (..., C)`` → ``(...)``
    (the negative of the free energy; higher = more likely known)."""
    return T * torch.logsumexp(s / T, dim=-1)


def max_logit(s: torch.Tensor) -> torch.Tensor:
    """§9 max-logit score max_c s_c of logits ``s (..., C)`` → ``(...)``."""
    return s.max(-1).values


def kept_mean(x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """§9 per-scale score: the mean of ``x (B, N)`` over the kept patches ``keep (B, N)`` → ``(B,)``.
    Divided by the number *kept* (≥ 1 by the entropy filter), not by N: a score of 0 is not neutral."""
    k = keep.to(x.dtype)
    return (x * k).sum(1) / k.sum(1).clamp_min(1)


def fused_score(s0: torch.Tensor, s1: torch.Tensor, s2: torch.Tensor) -> torch.Tensor:
    """§9 fused score S = (S⁰ + S¹ + S²) / 3, each ``(B,)``; unknown when S < threshold."""
    return (s0 + s1 + s2) / 3
