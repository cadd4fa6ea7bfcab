"""load_model / HVLModel: predictions carry what a UI needs; encode once, decide many times."""
import numpy as np
import pytest
import torch

from hvl_core import BackboneUnavailable, ImageError, create_backbone, load_model
from hvl_core.model import class_embeddings


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
        assert p.entropy1.shape == (n, n) and p.entropy2.shape == (2 * n, 2 * n) and len(p.classes) == 8  # background is a negative


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
    with pytest.raises(BackboneUnavailable, match="does not exist"):
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
