"""Calibration and metrics in the units of every decision score (HVL_SPEC §7, §9)."""

import pytest
import torch

from hvl_core import load_model, load_preset, save_checkpoint
from hvl_core.head import HVLHead


def test_calibration_and_metrics_work_in_the_units_of_every_score():
    """t95 is taken on the decision score itself (energy here), and head_scores gives that score."""
    from hvl_tools import metrics as M
    from hvl_tools.calibrate import calibrate_threshold
    from hvl_tools.embedding_scores import head_scores
    from hvl_tools.features import FeatureSet

    torch.manual_seed(0)
    n, d, N = 1, 6, 20
    v = torch.randn(N, 1 + n * n + 4 * n * n, d)
    feats = FeatureSet(v, [f"img{i}" for i in range(N)], torch.zeros(N, dtype=torch.long), ["id"] * N)
    text = torch.randn(3, d)
    head = HVLHead(d, 3, n=n, tau=0.5, score="energy")
    score, p = head_scores(head, text, None, feats)
    out = head(v[:, 0], v[:, 1:2], v[:, 2:], text)
    assert torch.allclose(score, out.score, atol=1e-6) and not torch.allclose(score, out.msp)
    cal = calibrate_threshold(head, text, None, feats)
    assert cal["score"] == "energy" and cal["threshold"] == M.threshold_at_tpr(score.numpy())
    assert cal["val_tpr"] >= 0.95 and "val_energy_median" in cal
    mcm, _ = head_scores(head, text, None, feats, method="mcm")  # scale 0 alone: its energy
    assert torch.allclose(mcm, out.score0, atol=1e-6)
    msp_cal = calibrate_threshold(head, text, None, feats, score="msp")
    assert msp_cal["score"] == "msp" and 0 <= msp_cal["threshold"] <= 1


def test_recalibrating_for_energy_stores_the_score_with_its_threshold(tiny_backbone, tmp_path, rgb_image):
    from hvl_tools.calibrate import recalibrate_checkpoint
    from hvl_tools.features import FeatureSet

    d = save_checkpoint(
        tmp_path / "ck",
        HVLHead(tiny_backbone.embed_dim, 4, n=2),
        "tiny-clip-random",
        load_preset("dermatology-isic4"),
        threshold=0.42,
    )
    m = load_model(tiny_backbone, checkpoint=d, device="cpu")
    encs = [m.encode(rgb_image.rotate(a)) for a in (0, 90, 180, 270)]
    v = torch.stack([torch.cat([e.v0[None], e.v1, e.v2]) for e in encs])
    feats = FeatureSet(v, [f"im{i}" for i in range(4)], torch.zeros(4, dtype=torch.long), ["id"] * 4)
    _, cal = recalibrate_checkpoint(d, m, feats, score="energy")
    energies = [m.decide(e, score="energy", threshold=0.0).score for e in encs]
    assert cal["score"] == "energy" and cal["threshold"] == pytest.approx(min(energies), abs=1e-5)  # t95 of 4 = min
    again = load_model(tiny_backbone, checkpoint=d, device="cpu")
    assert again.score_name == "energy" and again.threshold_source == "calibrated"
    assert again.threshold == pytest.approx(cal["threshold"]) and again.decide(encs[0]).known
