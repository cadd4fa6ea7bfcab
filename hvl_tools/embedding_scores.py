"""Scoring cached embeddings with a head: per-image MSP and class probabilities (HVL_SPEC §6),
for the paper's method (``hvl``: fused p_ID) and the single-scale baseline (``mcm``: p⁰)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from hvl_core.geometry import split_scales
from hvl_core.head import HVLHead

from .features import FeatureSet

METHODS = ("hvl", "mcm")


@dataclass
class ScoredSet:
    """Per-image results of one evaluation."""

    paths: list[str]
    score: np.ndarray  # the decision score (HVL_SPEC §6, §9): higher = more likely known
    is_id: np.ndarray
    label: np.ndarray  # class index, -1 when unknown / OOD
    pred: np.ndarray
    groups: list[str]
    score_name: str = "msp"


def score_sets(
    head,
    text,
    logit_bias,
    id_feats: FeatureSet,
    ood_feats: FeatureSet | None,
    device="cpu",
    method: str = "hvl",
    **overrides,
) -> ScoredSet:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    parts = [(id_feats, True)] + ([(ood_feats, False)] if ood_feats is not None and len(ood_feats) else [])
    paths, score, is_id, label, pred, groups = [], [], [], [], [], []
    for fs, known in parts:
        s, p = head_scores(head, text, logit_bias, fs, device=device, method=method, **overrides)
        paths += fs.paths
        groups += fs.groups
        score.append(s.numpy())
        pred.append(p.argmax(-1).numpy() if len(p) else np.zeros(0, int))
        is_id.append(np.full(len(fs), known))
        label.append(fs.labels.numpy() if known else np.full(len(fs), -1))
    return ScoredSet(
        paths,
        np.concatenate(score).astype(np.float64),
        np.concatenate(is_id),
        np.concatenate(label),
        np.concatenate(pred),
        groups,
        score_name=overrides.get("score", head.config.score),
    )


def cpu_threads_for_head(head: HVLHead, device: torch.device) -> int | None:
    """Intra-op threads for the head on the CPU: its tensors are small (batch × crops × d), where
    thread hand-offs cost more than they gain — on a busy 2-core machine one Adam step took 450 ms
    with 2 threads and 20 ms with 1 (d = 64). One thread up to d = 256, torch's default above."""
    if device.type != "cpu":
        return None
    return 1 if head.dim <= 256 else None


class torch_threads:
    def __init__(self, n: int | None):
        self.n, self.saved = n, None

    def __enter__(self):
        if self.n is not None:
            self.saved = torch.get_num_threads()
            torch.set_num_threads(self.n)

    def __exit__(self, *exc):
        if self.saved is not None:
            torch.set_num_threads(self.saved)


@torch.no_grad()
def head_scores(
    head: HVLHead,
    text: torch.Tensor,
    logit_bias: torch.Tensor | None,
    feats: FeatureSet,
    device: str | torch.device = "cpu",
    batch_size: int = 256,
    method: str = "hvl",
    **overrides,
) -> tuple[torch.Tensor, torch.Tensor]:
    """(score (N,), p (N, C)) of the head on cached embeddings. The score is the head's decision
    score (``score`` option: MSP by default, or energy / max-logit, HVL_SPEC §9). ``method="mcm"``:
    the single-scale zero-shot baseline MCM — softmax of the scale-0 similarity (p⁰ of the head)
    and its MSP (its scale-0 energy / max-logit for those scores)."""
    device = torch.device(device)
    with torch_threads(cpu_threads_for_head(head, device)):
        return _head_scores(head, text, logit_bias, feats, device, batch_size, method, **overrides)


def _head_scores(head, text, logit_bias, feats, device, batch_size, method, **overrides):
    was_training = head.training
    head.to(device).eval()
    text = text.to(device)
    bias = logit_bias.to(device) if logit_bias is not None else None
    ps, scores = [], []
    for s in range(0, len(feats), batch_size):
        v0, v1, v2 = split_scales(feats.v[s : s + batch_size].to(device), head.config.n)
        out = head(v0, v1, v2, text, bias, **overrides)
        ps.append((out.p0 if method == "mcm" else out.p_id).float().cpu())
        scores.append((out.score0 if method == "mcm" else out.score).float().cpu())
    head.train(was_training)
    p = torch.cat(ps) if ps else torch.zeros(0, head.num_classes)
    return (torch.cat(scores) if scores else torch.zeros(0)), p
