"""Checkpoints that ship their calibration scores: conformal p-values per image, a calibrated
threshold per score, and malformed records refused; the shipped checkpoints per preset."""

import json

import numpy as np
import pytest
import torch

from hvl_core import CheckpointError, load_checkpoint, load_model, save_checkpoint, shipped_checkpoint
from hvl_core.checkpoint import CONFIG_NAME
from hvl_core.conformal import conformal_pvalue, conformal_threshold
from hvl_core.head import HVLHead
from hvl_core.presets import list_presets, load_preset

MSP_CAL = [round(0.3 + 0.01 * i, 2) for i in range(40)]  # 0.30 … 0.69
ENERGY_CAL = [float(-20 + i) for i in range(40)]


@pytest.fixture
def calibrated(tmp_path):
    torch.manual_seed(0)
    head = HVLHead(64, 4, n=2, k=3, tau=0.02)
    cal = {
        "rule": "conformal",
        "alpha": 0.05,
        "score": "msp",
        "scores": MSP_CAL,
        "n": 40,
        "by_score": {"energy": {"threshold": conformal_threshold(ENERGY_CAL), "scores": ENERGY_CAL}},
    }
    return save_checkpoint(
        tmp_path / "ck",
        head,
        "tiny-clip-random",
        load_preset("dermatology-isic4"),
        threshold=conformal_threshold(MSP_CAL),
        extra={"calibration": cal},
    )


def test_p_value_and_threshold_come_from_the_calibration_scores(calibrated, tiny_backbone, rgb_image):
    m = load_model(tiny_backbone, checkpoint=calibrated, device="cpu")
    assert m.threshold == pytest.approx(0.31)  # floor(0.05 * 41) = 2nd smallest
    pred = m.predict(rgb_image)
    assert pred.p_value == pytest.approx(float(conformal_pvalue(pred.score, MSP_CAL)))
    assert pred.n_calibration == 40 and pred.threshold_source == "calibrated"
    # another score: its own calibrated threshold and p-value, still "calibrated"
    e = m.decide(m.encode(rgb_image), score="energy")
    assert e.threshold == pytest.approx(-19.0) and e.threshold_source == "calibrated"
    assert e.p_value == pytest.approx(float(conformal_pvalue(e.score, ENERGY_CAL)))
    # a score without calibration scores has no p-value, and asks for a threshold
    with pytest.raises(ValueError, match="calibrated for the msp score"):
        m.decide(m.encode(rgb_image), score="maxlogit")
    assert m.decide(m.encode(rgb_image), score="maxlogit", threshold=1.0).p_value is None


def test_loading_with_another_calibrated_score(calibrated, tiny_backbone):
    m = load_model(tiny_backbone, checkpoint=calibrated, device="cpu", score="energy")
    assert (m.threshold, m.threshold_source) == (-19.0, "calibrated")


def test_calibration_changes_the_fingerprint(calibrated):
    ck = load_checkpoint(calibrated)
    meta = json.loads((calibrated / CONFIG_NAME).read_text())
    meta["calibration"]["scores"] = MSP_CAL[::-1][:30]
    (calibrated / CONFIG_NAME).write_text(json.dumps(meta))
    assert load_checkpoint(calibrated).fingerprint() != ck.fingerprint()


@pytest.mark.parametrize(
    "change,why",
    [
        (lambda c: c.update(scores=[0.1, "x"]), "calibration.scores"),
        (lambda c: c.update(scores=[]), "calibration.scores"),
        (lambda c: c.update(score="energy"), "the config's score"),
        (lambda c: c["by_score"]["energy"].update(threshold="low"), "numeric threshold"),
        (lambda c: c["by_score"].update(msp={"threshold": 7.0, "scores": [0.5]}), "outside the range"),
    ],
)
def test_malformed_calibration_is_one_sentence(calibrated, change, why):
    meta = json.loads((calibrated / CONFIG_NAME).read_text())
    change(meta["calibration"])
    (calibrated / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match=why):
        load_checkpoint(calibrated)


@pytest.mark.parametrize("preset", list_presets())
def test_shipped_checkpoint_per_preset_loads_offline(preset):
    path = shipped_checkpoint("medmnist-densenet121", preset)
    assert path is not None, f"no shipped checkpoint for {preset}"
    ck = load_checkpoint(path)
    assert ck.classes.names == load_preset(preset).names and ck.backbone == "medmnist-densenet121"
    cal = ck.meta["calibration"]
    assert cal["rule"] == "conformal" and cal["n"] == len(cal["scores"]) >= 19
    assert ck.threshold == pytest.approx(conformal_threshold(cal["scores"], cal["alpha"]))
    assert set(ck.calibration_scores) == {"msp", "energy", "maxlogit"}
    m = ck.meta["measured"]
    assert m["n"]["id"] > 0 and set(m["sources"]).isdisjoint(cal["sources"])
    assert set(m["sources"]).isdisjoint(ck.meta["training"]["sources"])
    assert np.all(np.diff(cal["scores"]) >= 0)
    card = (path / "README.md").read_text()
    assert "Trained on" in card and "Never seen" in card and "Measured" in card
    assert shipped_checkpoint("tiny-clip-random", preset) is None
