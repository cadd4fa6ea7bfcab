"""load_model / HVLModel: predictions carry what a UI needs; encode once, decide many times."""

import math
from pathlib import Path

import numpy as np
import pytest
import torch

from hvl_core import BackboneUnavailable, ImageError, ScoreError, create_backbone, load_model, save_checkpoint
from hvl_core import equations as eq
from hvl_core.defaults import decision_default
from hvl_core.head import HVLHead
from hvl_core.model import DROPPED_LABEL, OTHER_LABEL, class_embeddings
from hvl_core.presets import load_preset


def test_prediction_fields_shapes_and_consistency(tiny_model, rgb_image):
    p = tiny_model.predict(rgb_image)
    C = len(tiny_model.classes.names)
    assert p.classes == list(tiny_model.classes.names) and C == 4
    for name in ("p_id", "p0", "p1", "p2"):
        assert getattr(p, name).shape == (C,)
    assert p.p1_patches.shape == (2, 2, C) and p.p2_patches.shape == (4, 4, C)
    assert p.entropy1.shape == (2, 2) and p.entropy2.shape == (4, 4) and p.entropy_gain.shape == (4, 4)
    assert p.keep1.dtype == bool and p.keep1.any() and p.keep2.any()
    assert len(p.pseudo_ood) == 4 and all(0 <= r < 4 and 0 <= c < 4 for r, c in p.pseudo_ood)
    np.testing.assert_allclose(p.p_id, (p.p0 + p.p1 + p.p2) / 3, atol=1e-6)
    assert p.msp == pytest.approx(float(p.p_id.max()))
    assert p.label == p.classes[int(np.argmax(p.p_id))]
    assert p.known == (p.msp >= p.threshold)
    # entropy gain = H(p2_j) - H(p1_parent)
    parent = np.kron(p.entropy1, np.ones((2, 2)))
    np.testing.assert_allclose(p.entropy_gain, p.entropy2 - parent, atol=1e-5)
    # the pseudo-OOD cells are the top-K of the gain map
    top = sorted(p.entropy_gain.ravel().tolist(), reverse=True)[:4]
    assert sorted((p.entropy_gain[r, c] for r, c in p.pseudo_ood), reverse=True) == pytest.approx(top)
    assert p.image.shape == (224, 224, 3) and p.image.dtype == np.uint8
    d = p.to_dict()
    assert "image" not in d and isinstance(d["p_id"], list) and d["pseudo_ood"][0] == list(p.pseudo_ood[0])


def test_decide_reuses_the_encoding_and_the_threshold_flips_the_decision(tiny_model, rgb_image, monkeypatch):
    enc = tiny_model.encode(rgb_image)

    def no_encoder(*a, **k):
        raise AssertionError("the encoder ran again")

    monkeypatch.setattr(tiny_model.backbone, "encode_image", no_encoder)
    p = tiny_model.decide(enc)
    hi = tiny_model.decide(enc, threshold=p.msp + 1e-3)
    lo = tiny_model.decide(enc, threshold=p.msp - 1e-3)
    assert not hi.known and lo.known and hi.msp == lo.msp
    assert len(tiny_model.decide(enc, k=2).pseudo_ood) == 2
    assert tiny_model.decide(enc, entropy_filter=False).keep2.all()


def test_predict_batch_equals_predict(tiny_model, rgb_image):
    imgs = [rgb_image, rgb_image.rotate(90), rgb_image.transpose(0)]
    batch = tiny_model.predict_batch(imgs, batch_size=2)
    for img, b in zip(imgs, batch):
        s = tiny_model.predict(img)
        assert b.label == s.label and b.msp == pytest.approx(s.msp, abs=1e-5)


def test_text_embeddings_are_computed_once_per_class_set(tiny_backbone, monkeypatch):
    m = load_model(tiny_backbone, classes=["alpha", "beta: beta lesion"], device="cpu")
    calls = []
    orig = tiny_backbone.encode_classes
    monkeypatch.setattr(tiny_backbone, "encode_classes", lambda *a: calls.append(a) or orig(*a))
    class_embeddings(tiny_backbone, m.classes)
    load_model(tiny_backbone, classes=["alpha", "beta: beta lesion"], device="cpu")
    assert calls == []
    assert m.classes.texts == ["a photo of a alpha", "a photo of a beta lesion"]


def test_bad_image_raises_image_error(tiny_model):
    with pytest.raises(ImageError):
        tiny_model.predict(b"not an image at all")


def test_n_changes_the_grids(tiny_backbone, rgb_image):
    for n in (1, 3):
        p = load_model(tiny_backbone, preset="histology-nct-crc", n=n, device="cpu").predict(rgb_image)
        assert (
            p.entropy1.shape == (n, n) and p.entropy2.shape == (2 * n, 2 * n) and len(p.classes) == 8
        )  # background is a negative


def test_unknown_preset_and_backbone_are_clear(tiny_backbone):
    with pytest.raises(ValueError, match="unknown preset 'cardio'.*dermatology-isic4"):
        load_model(tiny_backbone, preset="cardio")
    with pytest.raises(ValueError, match="unknown backbone"):
        create_backbone("resnet-9000")
    with pytest.raises(ValueError, match="preset .* or a list of class names"):
        load_model(tiny_backbone)


def test_clip_vit_b16_offline_fails_with_one_actionable_sentence(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(BackboneUnavailable) as e:
        create_backbone("clip-vit-b16")
    msg = str(e.value)
    assert "medmnist-densenet121" in msg and "local weights file" in msg and "\n" not in msg


def test_local_weights_file_that_does_not_exist(tmp_path):
    with pytest.raises(BackboneUnavailable, match="is not a readable weights file"):
        create_backbone(f"ViT-B-16:{tmp_path}/missing.safetensors")


@pytest.mark.slow
def test_real_vit_b16_architecture_end_to_end(rgb_image):
    """The paper's architecture (random weights): 21 crops, 512-d, one pass."""
    m = load_model("clip-vit-b16-random", preset="dermatology-isic4", device="cpu")
    assert m.backbone.embed_dim == 512 and m.backbone.image_size == 224
    enc = m.encode(rgb_image)
    assert enc.v0.shape == (512,) and enc.v1.shape == (4, 512) and enc.v2.shape == (16, 512)
    p = m.decide(enc)
    assert np.isfinite(p.p_id).all() and 0 < p.msp <= 1
    # The batched crops give the same embedding as encoding scale 0 on its own.
    from hvl_core.geometry import hierarchical_crops

    x0 = hierarchical_crops(rgb_image, 2)[:1]
    torch.testing.assert_close(m.encode_crops(x0)[0], enc.v0, atol=1e-4, rtol=1e-4)


def test_histology_preset_uses_background_as_a_negative_class(tiny_backbone, rgb_image):
    m = load_model(tiny_backbone, preset="histology-nct-crc", device="cpu")
    assert "background" not in m.classes.names and m.classes.negatives == ("background of a histology slide",)
    assert m.head.config.num_negatives == 1 and m.text.shape[0] == 9
    p = m.predict(rgb_image)
    assert p.p_id.shape == (8,) and p.p0.sum() < 1  # the negative takes its share of the softmax
    off = load_model(tiny_backbone, preset="histology-nct-crc", device="cpu", num_negatives=0)
    assert off.classes.negatives == () and off.text.shape[0] == 8


# --- decision: scores, thresholds, where the probability goes --------------------------------------

ASSETS = Path(__file__).resolve().parents[2] / "assets"


def test_the_paper_default_is_msp_and_score_equals_msp(tiny_model, rgb_image):
    p = tiny_model.predict(rgb_image)
    assert p.score_name == "msp" and p.score == p.msp and p.score_range == (0.0, 1.0) and p.scale_scores is None
    assert p.threshold == 0.5 and p.threshold_source == "default" and not tiny_model.calibrated
    d = p.to_dict()
    assert d["score_name"] == "msp" and d["score"] == p.score and d["score_range"] == [0.0, 1.0]


def test_every_distribution_sums_to_one_with_other_and_dropped(tiny_backbone, rgb_image):
    m = load_model(tiny_backbone, preset="histology-nct-crc", device="cpu")  # one negative: background
    p = m.predict(rgb_image)
    assert p.negatives == ["background of a histology slide"] and p.p_negatives.shape == (1,)
    for s in ("p0", "p1", "p2", "p_id"):
        total = float(getattr(p, s).sum()) + p.p_other[s] + p.p_dropped[s]
        assert total == pytest.approx(1.0, abs=1e-5), s
        assert sum(v for _, v in p.shares(s)) == pytest.approx(1.0, abs=1e-5)
    assert p.p_other["p0"] > 0 and p.p_dropped["p0"] == 0
    # the dropped mass of p¹ is the share of the mid patches the filter dropped
    assert p.p_dropped["p1"] == pytest.approx(1 - p.keep1.mean(), abs=1e-5)
    assert p.p_other["p_id"] == pytest.approx(float(p.p_negatives.sum()), abs=1e-6)
    labels = [name for name, _ in p.shares("p_id")]
    assert labels[:8] == p.classes and labels[8] == OTHER_LABEL
    assert (DROPPED_LABEL in labels) == (p.p_dropped["p_id"] > 0)
    # the entropies are over C + negatives: 9 classes, at most ln 9
    assert p.entropy_classes == 9 and p.entropy_max == pytest.approx(math.log(9))
    assert p.entropy1.max() <= p.entropy_max + 1e-6
    renorm = m.decide(m.encode(rgb_image), renormalize=True)
    assert renorm.p_dropped == {"p0": 0.0, "p1": 0.0, "p2": 0.0, "p_id": 0.0}
    assert DROPPED_LABEL not in [name for name, _ in renorm.shares("p_id")]
    assert sum(v for _, v in renorm.shares("p_id")) == pytest.approx(1.0, abs=1e-5)


def test_without_negatives_there_is_no_other_share(tiny_model, rgb_image):
    p = tiny_model.predict(rgb_image)
    assert p.negatives == [] and p.p_other["p_id"] == 0.0 and p.entropy_classes == 4
    assert OTHER_LABEL not in [name for name, _ in p.shares("p0")]


def test_energy_and_maxlogit_decide_in_their_own_units(tiny_model, rgb_image):
    enc = tiny_model.encode(rgb_image)
    for name in ("energy", "maxlogit"):
        p = tiny_model.decide(enc, score=name, threshold=0.0)
        assert p.score_name == name and p.threshold_source == "given"
        assert p.score == pytest.approx(sum(p.scale_scores) / 3, abs=1e-4)
        assert p.msp == pytest.approx(float(p.p_id.max()))  # MSP is still reported
        lo, hi = p.score_range  # cosine logits / tau: bounded
        assert lo <= p.score <= hi and hi == pytest.approx(100.0 + (math.log(4) if name == "energy" else 0), abs=1e-4)
        above = tiny_model.decide(enc, score=name, threshold=p.score + 1e-3)
        below = tiny_model.decide(enc, score=name, threshold=p.score - 1e-3)
        assert not above.known and below.known
    # energy ≥ max-logit (logsumexp ≥ max), scale 0 by hand from the head's logits
    out = tiny_model.run_head([enc], score="energy")
    assert out.score0.item() == pytest.approx(eq.energy(out.logits0).item(), abs=1e-5)
    e = tiny_model.decide(enc, score="energy", threshold=0.0).scale_scores
    m = tiny_model.decide(enc, score="maxlogit", threshold=0.0).scale_scores
    assert all(a >= b - 1e-5 for a, b in zip(e, m))


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(threshold=float("nan")), "finite"),
        (dict(threshold=1.5), "outside the range of the msp score"),
        (dict(score="energy"), "no measured default threshold"),
        (dict(score="energy", threshold=500.0), "outside the range of the energy score"),
        (dict(score="softmax"), "unknown score"),
    ],
)
def test_scores_and_thresholds_that_do_not_fit_get_one_sentence(tiny_model, rgb_image, kw, match):
    enc = tiny_model.encode(rgb_image)
    with pytest.raises(ScoreError, match=match) as e:
        tiny_model.decide(enc, **kw)
    assert isinstance(e.value, ValueError) and "\n" not in str(e.value)


def test_a_threshold_calibrated_for_msp_is_not_used_for_energy(tiny_backbone, tmp_path, rgb_image):
    head = HVLHead(tiny_backbone.embed_dim, 4, n=2)
    d = save_checkpoint(tmp_path / "ck", head, "tiny-clip-random", load_preset("dermatology-isic4"), threshold=0.42)
    with pytest.raises(ScoreError, match="calibrated for the msp score, not energy"):
        load_model(tiny_backbone, checkpoint=d, device="cpu", score="energy")
    m = load_model(tiny_backbone, checkpoint=d, device="cpu")
    assert m.calibrated and m.threshold_source == "calibrated" and m.score_name == "msp"
    enc = m.encode(rgb_image)
    with pytest.raises(ScoreError, match="calibrated for the msp score"):
        m.decide(enc, score="energy")
    assert m.decide(enc, score="energy", threshold=10.0).threshold_source == "given"
    given = load_model(tiny_backbone, checkpoint=d, device="cpu", score="energy", threshold=12.5)
    assert given.threshold == 12.5 and not given.calibrated and given.threshold_source == "given"


def test_a_checkpoint_calibrated_for_energy_keeps_its_score(tiny_backbone, tmp_path, rgb_image):
    head = HVLHead(tiny_backbone.embed_dim, 4, n=2, score="energy")
    d = save_checkpoint(tmp_path / "ck", head, "tiny-clip-random", load_preset("dermatology-isic4"), threshold=20.0)
    m = load_model(tiny_backbone, checkpoint=d, device="cpu")
    p = m.predict(rgb_image)
    assert p.score_name == "energy" and p.threshold == 20.0 and p.known == (p.score >= 20.0)


def test_measured_defaults_pick_the_score_and_threshold_per_preset(tiny_backbone, monkeypatch, rgb_image):
    table = {"dermatology-isic4": {"score": "energy", "thresholds": {"energy": 3.5, "msp": 0.25}}}
    monkeypatch.setattr(tiny_backbone, "decision_defaults", table, raising=False)
    assert decision_default(tiny_backbone, "dermatology-isic4")["measured"]
    m = load_model(tiny_backbone, preset="dermatology-isic4", device="cpu")
    assert m.score_name == "energy" and m.threshold == 3.5 and m.threshold_source == "measured"
    enc = m.encode(rgb_image)
    p = m.decide(enc, score="msp")  # switching score takes that score's measured threshold
    assert p.threshold == 0.25 and p.threshold_source == "measured"
    with pytest.raises(ScoreError, match="no measured default threshold"):
        m.decide(enc, score="maxlogit")
    # an explicit score wins; a class set without an entry gets the paper's MSP at 0.5
    assert load_model(tiny_backbone, preset="dermatology-isic4", device="cpu", score="msp").threshold == 0.25
    other = load_model(tiny_backbone, preset="histology-nct-crc", device="cpu")
    assert other.score_name == "msp" and other.threshold == 0.5 and other.threshold_source == "default"


def test_offline_backbone_rejects_the_fundus_with_the_skin_classes():
    """The issue's case: MSP called the retina a nevus (0.83); the measured default (energy)
    accepts the skin photo and rejects the fundus photo."""
    bb = create_backbone("medmnist-densenet121")
    assert bb.kind == "label-only" and bb.trained_on and bb.never_seen
    m = load_model(bb, preset="dermatology-isic4", device="cpu")
    assert m.score_name == "energy" and m.threshold_source == "measured"
    skin, fundus = m.predict_batch([ASSETS / "skin_nevus_closeup.jpg", ASSETS / "ood_fundus_retina.png"])
    assert skin.known and not fundus.known
    assert fundus.msp > 0.5  # MSP alone would have accepted it


def test_score0_is_the_whole_image_alone_in_the_decision_scores_units(tiny_model, rgb_image):
    enc = tiny_model.encode(rgb_image)
    msp = tiny_model.decide(enc, score="msp", threshold=0.5)
    assert msp.score0 == pytest.approx(float(np.max(msp.p0)), abs=1e-6)  # MSP of p⁰ (spec §6 on scale 0)
    energy = tiny_model.decide(enc, score="energy", threshold=0.0)
    assert energy.score0 == pytest.approx(energy.scale_scores[0], abs=1e-5)  # S⁰ of spec §9
    assert energy.score == pytest.approx(sum(energy.scale_scores) / 3, abs=1e-5)
