"""Checkpoints: safetensors + JSON round trip; corrupt, truncated, foreign and mismatched files refused."""
import json

import pytest
import torch

from hvl_core import CheckpointError, load_checkpoint, load_model, save_checkpoint
from hvl_core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, head_from_checkpoint
from hvl_core.head import HVLHead
from hvl_core.presets import load_preset


@pytest.fixture
def trained_ckpt(tmp_path):
    torch.manual_seed(0)
    head = HVLHead(64, 4, n=2, k=3, tau=0.02, renormalize=True)
    with torch.no_grad():
        for p in head.parameters():
            p.normal_(0, 0.1)
    d = save_checkpoint(tmp_path / "ck", head, "tiny-clip-random", load_preset("dermatology-isic4"), threshold=0.42)
    return d, head


def test_round_trip_restores_weights_options_classes_threshold(trained_ckpt):
    d, head = trained_ckpt
    assert sorted(p.name for p in d.iterdir()) == [WEIGHTS_NAME, CONFIG_NAME]
    ck = load_checkpoint(d)
    restored = head_from_checkpoint(ck)
    for name in ("W", "b0", "b2"):
        assert torch.equal(getattr(restored, name), getattr(head, name))
    assert restored.config == head.config
    assert ck.threshold == pytest.approx(0.42)
    assert ck.classes.names == load_preset("dermatology-isic4").names
    meta = json.loads((d / CONFIG_NAME).read_text())
    assert meta["backbone"] == "tiny-clip-random" and "torch" in meta["versions"]
    # also loads from either file of the pair
    assert load_checkpoint(d / WEIGHTS_NAME).meta == ck.meta
    assert load_checkpoint(d / CONFIG_NAME).meta == ck.meta


def test_the_model_uses_the_checkpoint_and_its_threshold(trained_ckpt, tiny_backbone, rgb_image):
    d, head = trained_ckpt
    m = load_model(tiny_backbone, checkpoint=d, device="cpu")
    assert m.threshold == pytest.approx(0.42) and m.calibrated
    assert torch.equal(m.head.W.cpu(), head.W)
    zero = load_model(tiny_backbone, preset="dermatology-isic4", device="cpu")
    assert not zero.calibrated
    a, b = m.predict(rgb_image), zero.predict(rgb_image)
    assert a.msp != pytest.approx(b.msp)  # the trained weights change the prediction
    m3 = load_model(tiny_backbone, checkpoint=d, device="cpu", n=3)  # W, b do not depend on n
    assert m3.predict(rgb_image).entropy2.shape == (6, 6)


def test_truncated_weights_are_refused(trained_ckpt):
    d, _ = trained_ckpt
    w = d / WEIGHTS_NAME
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(d)


def test_truncated_weights_without_a_recorded_hash_are_refused(trained_ckpt):
    d, _ = trained_ckpt
    meta = json.loads((d / CONFIG_NAME).read_text())
    del meta["weights_sha256"]
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    w = d / WEIGHTS_NAME
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        load_checkpoint(d)


def test_pickle_file_is_refused_without_unpickling(trained_ckpt, tmp_path):
    d, head = trained_ckpt
    import pickle

    class Boom:
        def __reduce__(self):
            return (exec, ("raise SystemExit('unpickled!')",))

    blob = pickle.dumps(Boom())
    (d / WEIGHTS_NAME).write_bytes(blob)
    meta = json.loads((d / CONFIG_NAME).read_text())
    del meta["weights_sha256"]
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError):
        load_checkpoint(d)


def test_foreign_json_is_refused(tmp_path):
    (tmp_path / CONFIG_NAME).write_text(json.dumps({"model_type": "bert"}))
    (tmp_path / WEIGHTS_NAME).write_bytes(b"")
    with pytest.raises(CheckpointError, match="not an HVL head checkpoint"):
        load_checkpoint(tmp_path)
    (tmp_path / CONFIG_NAME).write_text("{not json")
    with pytest.raises(CheckpointError, match="not valid JSON"):
        load_checkpoint(tmp_path)


def test_missing_files_and_paths(tmp_path):
    with pytest.raises(CheckpointError, match="missing"):
        load_checkpoint(tmp_path)
    with pytest.raises(CheckpointError, match="no such file"):
        load_checkpoint(tmp_path / "nope")


def test_mismatched_dimension_is_refused(trained_ckpt, tiny_backbone):
    d, _ = trained_ckpt
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["embed_dim"] = 512
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(d)


def test_wrong_backbone_and_wrong_classes_are_refused(trained_ckpt, tiny_backbone):
    d, _ = trained_ckpt
    with pytest.raises(CheckpointError, match="trained on backbone tiny-clip-random"):
        load_model("medmnist-densenet121", checkpoint=d)
    with pytest.raises(CheckpointError, match="knows"):
        load_model(tiny_backbone, checkpoint=d, preset="histology-nct-crc")


def test_hub_checkpoint_offline_fails_clearly(monkeypatch):
    import huggingface_hub.constants as hc

    monkeypatch.setattr(hc, "HF_HUB_OFFLINE", True)
    with pytest.raises(CheckpointError, match="could not download it from the Hugging Face hub"):
        load_checkpoint("someone/hvl-head-that-is-not-cached")


def test_hub_checkpoint_loads_through_hf_hub_download(trained_ckpt, monkeypatch):
    d, head = trained_ckpt
    calls = []

    def fake_download(repo_id, filename, **kw):
        calls.append((repo_id, filename))
        return str(d / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    ck = load_checkpoint("org/hvl-isic4")
    assert sorted(calls) == sorted([("org/hvl-isic4", CONFIG_NAME), ("org/hvl-isic4", WEIGHTS_NAME)])
    assert torch.equal(ck.state["W"], head.W.detach())
