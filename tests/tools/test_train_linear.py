"""HVL_SPEC §10: with linear logits on raw, non-negative features (a label-only backbone such as
the DenseNet), the default recipe fits its own training images; the paper's lr stays for cosine."""

import pytest
import torch

from hvl_core.head import HVLHead
from hvl_tools.config import TrainConfig
from hvl_tools.embedding_scores import head_scores
from hvl_tools.features import FeatureSet
from hvl_tools.train import MAX_LOGIT_STEP, step_size, train_head


def _raw_features(n=48, d=256, crops=21, classes=4, seed=0):
    """Non-negative features with an L1 norm in the hundreds (like pooled DenseNet features), one
    class signal per image, and classifier rows that know nothing of these classes."""
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % classes
    centres = torch.rand(classes, d, generator=g) * 8
    v = torch.relu(centres[y].unsqueeze(1) + 3 * torch.randn(n, crops, d, generator=g))
    text = torch.randn(classes, d, generator=g) * 0.05
    return FeatureSet(v, [str(i) for i in range(n)], y, ["g"] * n), text


def test_the_default_recipe_fits_raw_features_with_linear_logits():
    fs, text = _raw_features()
    assert fs.v.abs().sum(-1).mean() > 250
    head = HVLHead(256, 4, similarity="linear", tau=1.0)
    assert step_size(head, text, fs.v, TrainConfig().lr) < TrainConfig().lr  # the scaled, warmed-up path
    _, p0 = head_scores(head, text, torch.zeros(4), fs)
    torch.manual_seed(0)
    train_head(head, text, torch.zeros(4), fs, TrainConfig(), progress=False, log=lambda m: None)
    _, p = head_scores(head, text, torch.zeros(4), fs)
    acc = float((p.argmax(-1) == fs.labels).float().mean())
    assert acc >= 0.95 > float((p0.argmax(-1) == fs.labels).float().mean())


def test_step_size_scales_only_linear_logits():
    fs, text = _raw_features()
    lin, cos = HVLHead(256, 4, similarity="linear", tau=1.0), HVLHead(64, 4)
    lr = step_size(lin, text, fs.v, 0.002)
    v1, t1 = float(fs.v.abs().sum(-1).mean()), float(text.abs().sum(-1).max())
    assert lr * (v1 + v1 * t1) == pytest.approx(min(MAX_LOGIT_STEP, 0.002 * (v1 + v1 * t1)), rel=1e-5)
    assert step_size(cos, text, fs.v, 0.002) == 0.002
