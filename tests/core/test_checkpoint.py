"""Checkpoints: hub layout (config.json + model.safetensors + model card) round trip; the first
layout (head.safetensors + hvl.json) still loads; corrupt, truncated, foreign, mismatched and
hostile files refused with one sentence."""

import json
import math

import numpy as np
import pytest
import torch

from hvl_core import CheckpointError, load_checkpoint, load_model, save_checkpoint
from hvl_core.checkpoint import (
    CARD_NAME,
    CONFIG_NAME,
    LEGACY_CONFIG_NAME,
    LEGACY_WEIGHTS_NAME,
    WEIGHTS_NAME,
    head_from_checkpoint,
)
from hvl_core.head import HVLHead
from hvl_core.presets import class_set_from_names, load_preset


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
    assert sorted(p.name for p in d.iterdir()) == sorted([WEIGHTS_NAME, CONFIG_NAME, CARD_NAME])
    assert (WEIGHTS_NAME, CONFIG_NAME) == ("model.safetensors", "config.json")  # the hub's names
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


def test_a_local_checkpoint_is_named_by_its_folder_never_its_path(trained_ckpt, tiny_backbone):
    d, _ = trained_ckpt
    assert load_checkpoint(d).source == load_checkpoint(d / CONFIG_NAME).source == "ck"
    assert load_model(tiny_backbone, checkpoint=d.resolve(), device="cpu").checkpoint == "ck"
    (d / CONFIG_NAME).write_text("{}")
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d.resolve())
    assert str(d.parent) not in str(e.value) and "checkpoint ck:" in str(e.value)


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
    # refused from the text alone: the catalog declares tiny-clip-random's width
    with pytest.raises(CheckpointError, match="embed_dim is 512, but the backbone tiny-clip-random gives 64-d"):
        load_checkpoint(d)
    meta["backbone"] = "some-unlisted-backbone"  # no declared width: the tensors' shapes decide
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError, match="shape"):
        load_checkpoint(d)


@pytest.mark.parametrize(
    "template",
    [
        "{{}}{0:>100000000}",  # a 100 MB string per class, were it formatted
        "{} {x}",  # KeyError from str.format
        "{} {0.__class__}",  # attribute access from str.format
        "{:>99999999}",
        "{}}",
        "{{}}",
        "no slot",
        "{} and {}",
        "a photo of a {}" + "x" * 3000,
    ],
)
def test_template_outside_the_grammar_is_one_sentence(trained_ckpt, template):
    d, _ = trained_ckpt
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["classes"]["template"] = template
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    with pytest.raises(CheckpointError) as e:
        load_checkpoint(d)
    msg = str(e.value)
    assert "exactly one {}" in msg and "\n" not in msg and len(msg) < 400


def test_template_is_filled_by_replacement_not_format():
    from hvl_core.presets import ClassSet, fill_template

    assert fill_template("an image of {} tissue", "{0.__class__}") == "an image of {0.__class__} tissue"
    cs = ClassSet(names=("a",), prompts=("x{y}",), template="a photo of a {}")
    assert cs.texts == ["a photo of a x{y}"]
    with pytest.raises(ValueError, match="exactly one"):
        ClassSet(names=("a",), prompts=("a",), template="{} {x}")


def test_catalog_widths_match_the_built_backbones(tiny_backbone):
    from hvl_core.backbones.catalog import BY_NAME, declared_width

    assert declared_width("tiny-clip-random") == tiny_backbone.embed_dim
    assert declared_width("biomedclip-random") == declared_width("biomedclip") == 512
    assert declared_width("medmnist-densenet121") == 1024
    assert declared_width("ViT-B-16:/etc/passwd") is None
    assert all(i.embed_dim > 0 for i in BY_NAME.values())


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


def test_a_hub_checkpoint_brings_its_in_scope_stage(tmp_path, monkeypatch):
    from hvl_core.scope import SCOPE_WEIGHTS, ScopeDetector

    d = tmp_path / "ck"
    bank = torch.nn.functional.normalize(torch.randn(12, 64), dim=-1)
    det = ScopeDetector(bank, torch.zeros(64), torch.tensor(0.5), 0.1, 0.2, {"knn": np.zeros(3), "gate": np.ones(3)})
    save_checkpoint(d, HVLHead(64, 2), "tiny-clip-random", class_set_from_names(["a", "b"]), scope=det)
    calls = []

    def fake_download(repo_id, filename, **kw):
        calls.append(filename)
        return str(d / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    ck = load_checkpoint("org/hvl-scoped")
    assert sorted(calls) == sorted([CONFIG_NAME, WEIGHTS_NAME, SCOPE_WEIGHTS])
    assert ck.scope is not None and ck.scope.t_gate == 0.2 and torch.equal(ck.scope.bank, bank)


def test_hub_tooling_reads_the_layout(trained_ckpt):
    """huggingface_hub's conventions: config.json is plain JSON, model.safetensors loads with
    safetensors alone, the model card's front matter parses as hub metadata."""
    from huggingface_hub import ModelCard
    from safetensors.torch import load_file

    d, head = trained_ckpt
    assert torch.equal(load_file(d / WEIGHTS_NAME)["W"], head.W.detach())
    assert json.loads((d / CONFIG_NAME).read_text())["num_classes"] == 4
    card = ModelCard.load(d / CARD_NAME)
    assert card.data.library_name == "hvl" and "out-of-distribution-detection" in card.data.tags
    assert "melanoma" in card.text and "0.4200" in card.text


def test_model_card_names_the_base_model_of_a_real_backbone(tmp_path):
    from huggingface_hub import ModelCard

    head = HVLHead(512, 4)
    d = save_checkpoint(tmp_path / "b", head, "biomedclip", load_preset("dermatology-isic4"))
    assert ModelCard.load(d / CARD_NAME).data.base_model == "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"
    d = save_checkpoint(tmp_path / "r", head, "biomedclip-random", load_preset("dermatology-isic4"))
    assert ModelCard.load(d / CARD_NAME).data.base_model is None  # random weights: no base model


def test_first_layout_folders_still_load(trained_ckpt, tmp_path):
    d, head = trained_ckpt
    old = tmp_path / "old"
    old.mkdir()
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["format_version"] = 1
    (old / LEGACY_CONFIG_NAME).write_text(json.dumps(meta))
    (old / LEGACY_WEIGHTS_NAME).write_bytes((d / WEIGHTS_NAME).read_bytes())
    for src in (old, old / LEGACY_CONFIG_NAME, old / LEGACY_WEIGHTS_NAME):
        ck = load_checkpoint(src)
        assert torch.equal(ck.state["W"], head.W.detach()) and ck.threshold == pytest.approx(0.42)
    # the sha256 check still guards the old layout
    (old / LEGACY_WEIGHTS_NAME).write_bytes((d / WEIGHTS_NAME).read_bytes()[:-8])
    with pytest.raises(CheckpointError, match="sha256"):
        load_checkpoint(old)


def test_hub_repo_in_the_first_layout_loads(trained_ckpt, tmp_path, monkeypatch):
    import httpx
    from huggingface_hub.errors import RemoteEntryNotFoundError

    d, head = trained_ckpt
    old = tmp_path / "old"
    old.mkdir()
    (old / LEGACY_CONFIG_NAME).write_bytes((d / CONFIG_NAME).read_bytes())
    (old / LEGACY_WEIGHTS_NAME).write_bytes((d / WEIGHTS_NAME).read_bytes())

    def fake_download(repo_id, filename, **kw):
        if not (old / filename).is_file():
            raise RemoteEntryNotFoundError(
                f"{filename} not in {repo_id}",
                response=httpx.Response(404, request=httpx.Request("GET", "https://hub.invalid/x")),
            )
        return str(old / filename)

    monkeypatch.setattr("huggingface_hub.hf_hub_download", fake_download)
    assert torch.equal(load_checkpoint("org/old-head").state["b0"], head.b0.detach())


def _edit(d, **changes):
    meta = json.loads((d / CONFIG_NAME).read_text())
    for k, v in changes.items():
        if "." in k:
            a, b = k.split(".")
            meta[a][b] = v
        else:
            meta[k] = v
    (d / CONFIG_NAME).write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "changes, reason",
    [
        ({"threshold": float("nan")}, "not valid JSON"),  # json.dumps writes NaN, which is not JSON
        ({"threshold": float("inf")}, "not valid JSON"),
        ({"threshold": 1.5}, "outside the range of the msp score"),
        ({"threshold": "0.4"}, "threshold must be a number or null"),
        ({"format_version": "1"}, "format_version must be a whole number"),
        ({"format_version": 99}, "newer than this hvl_core reads"),
        ({"num_classes": "4"}, "num_classes must be a whole number"),
        ({"num_classes": True}, "num_classes must be a whole number"),
        ({"embed_dim": 10**9}, "embed_dim must be a whole number from 1 to"),
        ({"config.n": 10**6}, "n must be a whole number from 1 to 16"),
        ({"config.n": "2"}, "config.n must be of type int"),
        ({"config.k": 10**6}, "k must be a whole number from 1 to 16"),
        ({"config.tau": "0.01"}, "config.tau must be of type float"),
        ({"config.exec": "rm -rf /"}, "unknown option config.exec"),
        ({"backbone": ["ViT-B-16", "openai"]}, "backbone must be a backbone name"),
        ({"backbone": "x" * 5000}, "backbone must be a backbone name"),
        ({"classes": {"names": ["a"] * 4, "prompts": ["a"], "template": "{}"}}, "classes.prompts has 1 entries"),
        ({"classes": {"names": ["a"] * 4, "prompts": ["a"] * 4, "template": "no slot"}}, "template must be text"),
        ({"detail": "/etc/passwd"}, "detail must be"),
    ],
)
def test_hostile_configs_give_one_sentence(trained_ckpt, changes, reason):
    d, _ = trained_ckpt
    _edit(d, **changes)
    with pytest.raises(CheckpointError, match=reason) as e:
        load_checkpoint(d)
    assert "\n" not in str(e.value) and len(str(e.value)) < 400


def test_deeply_nested_and_huge_configs_give_one_sentence(trained_ckpt):
    d, _ = trained_ckpt
    meta = (d / CONFIG_NAME).read_text()
    deep = "[" * 200_000 + "]" * 200_000
    (d / CONFIG_NAME).write_text(meta[:-1] + f', "x": {deep}}}')
    with pytest.raises(CheckpointError, match="nested too deeply"):
        load_checkpoint(d)
    (d / CONFIG_NAME).write_text(meta[:-1] + f', "x": "{"y" * (2 << 20)}"}}')
    with pytest.raises(CheckpointError, match="larger than 1 MiB"):
        load_checkpoint(d)


def test_oversized_weights_are_refused_before_reading(trained_ckpt):
    d, _ = trained_ckpt
    _edit(d, weights_sha256=None)
    with open(d / WEIGHTS_NAME, "ab") as f:
        f.write(b"\0" * (1 << 20))
    with pytest.raises(CheckpointError, match="larger than the shapes"):
        load_checkpoint(d)


def test_non_finite_weights_are_refused(trained_ckpt, tmp_path):
    d, head = trained_ckpt
    with torch.no_grad():
        head.W[0, 0] = math.nan
    bad = save_checkpoint(tmp_path / "nan", head, "tiny-clip-random", load_preset("dermatology-isic4"))
    with pytest.raises(CheckpointError, match="non-finite"):
        load_checkpoint(bad)


def test_save_refuses_a_nan_threshold(tmp_path):
    with pytest.raises(ValueError, match="threshold"):
        save_checkpoint(
            tmp_path, HVLHead(8, 2), "tiny-clip-random", load_preset("dermatology-isic4"), threshold=math.nan
        )
    assert not (tmp_path / CONFIG_NAME).exists()


def test_fingerprint_changes_with_everything_that_changes_a_decision(trained_ckpt, tmp_path):
    d, head = trained_ckpt
    base = load_checkpoint(d).fingerprint()
    assert load_checkpoint(d).fingerprint() == base  # stable
    meta = json.loads((d / CONFIG_NAME).read_text())
    meta["created"] = "another day"  # not part of a decision
    meta["versions"] = {}
    (d / CONFIG_NAME).write_text(json.dumps(meta))
    assert load_checkpoint(d).fingerprint() == base
    variants = {
        "threshold": {"threshold": 0.43},
        "class name": {"classes.names": ["a", "b", "c", "d"]},
        "prompt": {"classes.template": "a dermoscopy image of {}"},
        "option": {"config.tau": 0.05},
        "backbone": {"backbone": "another-backbone"},
        "detail": {"detail": "native"},
    }
    seen = {base}
    for what, changes in variants.items():
        v = tmp_path / what
        v.mkdir()
        (v / WEIGHTS_NAME).write_bytes((d / WEIGHTS_NAME).read_bytes())
        (v / CONFIG_NAME).write_bytes((d / CONFIG_NAME).read_bytes())
        _edit(v, **changes)
        fp = load_checkpoint(v).fingerprint()
        assert fp not in seen, what
        seen.add(fp)
    # other weights, same config otherwise
    with torch.no_grad():
        head.b0[0, 0] += 1
    other = save_checkpoint(tmp_path / "w", head, "tiny-clip-random", load_preset("dermatology-isic4"), threshold=0.42)
    assert load_checkpoint(other).fingerprint() not in seen
