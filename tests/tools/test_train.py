"""Feature cache, trainer, resumable training state, and the train command (tiny-clip-random)."""

import hashlib
import json

import pytest
import torch

import hvl_core
from hvl_core import CheckpointError, load_checkpoint, save_checkpoint
from hvl_core.checkpoint import WEIGHTS_NAME
from hvl_core.head import HVLHead
from hvl_core.images import ImageError
from hvl_tools.data import labelled_items
from hvl_tools.embedding_scores import head_scores
from hvl_tools.features import FeatureCache, FeatureSet, extract_features, features_of_items
from hvl_tools.synthetic import ID_CLASSES
from hvl_tools.train import STATE_JSON, TrainConfig, TrainStateError, train_head


@pytest.fixture(scope="module")
def model():
    return hvl_core.load_model("tiny-clip-random", classes=list(ID_CLASSES), device="cpu")


@pytest.fixture(scope="module")
def cache_dir(tmp_path_factory):
    return tmp_path_factory.getbasetemp() / "hvl-cache"  # shared with test_evaluate


@pytest.fixture(scope="module")
def train_feats(synth, model, cache_dir):
    items = labelled_items(synth / "train", list(ID_CLASSES), [c.replace(" ", "_") for c in ID_CLASSES])
    return features_of_items(model, items, FeatureCache(cache_dir), progress=False)


def test_cache_is_reused_and_equals_a_fresh_encoding(synth, model, cache_dir, train_feats):
    assert len(train_feats) == 32 and train_feats.v.shape == (32, 21, 64)
    again = features_of_items(
        model,
        labelled_items(synth / "train", list(ID_CLASSES), [c.replace(" ", "_") for c in ID_CLASSES]),
        FeatureCache(cache_dir),
        progress=False,
    )
    assert again.hits == 32
    assert torch.equal(again.v, train_feats.v) and torch.equal(again.labels, train_feats.labels)
    enc = model.encode(train_feats.paths[0])  # the model's own path gives the same embeddings
    assert torch.allclose(train_feats.v[0, 0], enc.v0, atol=1e-5)
    assert torch.allclose(train_feats.v[0, 5:], enc.v2, atol=1e-5)
    cache = FeatureCache(cache_dir)
    folder = cache.folder(model)
    assert folder.name.startswith("n2-upsample-orig-") and folder.parent.name.startswith("tiny-clip-random-")
    for p in train_feats.paths:  # keyed by the sha256 of the file's bytes
        assert cache.path(folder, hashlib.sha256(open(p, "rb").read()).hexdigest()).is_file()


def test_cache_key_separates_preprocessing_and_survives_a_corrupt_entry(synth, model, tmp_path):
    paths = sorted((synth / "test" / "melanoma").iterdir())[:2]
    cache = FeatureCache(tmp_path)
    a = extract_features(model, paths, cache=cache, progress=False)
    m3 = hvl_core.load_model(model.backbone, classes=list(ID_CLASSES), device="cpu", n=3)
    b = extract_features(m3, paths, cache=cache, progress=False)
    assert b.hits == 0 and b.v.shape == (2, 1 + 9 + 36, 64)
    assert cache.folder(model) != cache.folder(m3) != cache.folder(model, "hflip")
    entry = next(cache.folder(model).rglob("*.safetensors"))
    entry.write_bytes(entry.read_bytes()[:40])  # truncated cache file: re-encoded, not a crash
    c = extract_features(model, paths, cache=cache, progress=False)
    assert c.hits == 1 and torch.allclose(c.v, a.v)


def test_unreadable_images_are_skipped_and_listed_or_stop_with_strict(synth, model, tmp_path):
    good = sorted((synth / "test" / "melanoma").iterdir())[0]
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    fs = extract_features(model, [good, bad], labels=[1, 1], progress=False)
    assert fs.paths == [str(good)] and len(fs.skipped) == 1
    assert fs.skipped[0][0] == str(bad) and "broken.png" in fs.skipped[0][1]
    with pytest.raises(ImageError, match="broken.png"):
        extract_features(model, [good, bad], progress=False, strict=True)


def test_flip_views_are_extra_samples(synth, model, cache_dir):
    items = labelled_items(synth / "test", list(ID_CLASSES), [c.replace(" ", "_") for c in ID_CLASSES])[:3]
    fs = features_of_items(model, items, FeatureCache(cache_dir), views=("orig", "hflip"), progress=False)
    assert len(fs) == 6 and torch.equal(fs.labels[:3], fs.labels[3:])
    assert not torch.allclose(fs.v[:3, 1:], fs.v[3:, 1:])  # mirrored patches differ


def _random_feats(n=24, classes=3, d=16, seed=0):
    g = torch.Generator().manual_seed(seed)
    return FeatureSet(
        v=torch.randn(n, 21, d, generator=g),
        paths=[f"x{i}" for i in range(n)],
        labels=torch.arange(n) % classes,
        groups=[""] * n,
    )


def _head(d=16, classes=3):
    return HVLHead(d, classes), torch.randn(classes, d, generator=torch.Generator().manual_seed(1))


class Crash(RuntimeError):
    pass


def test_killed_run_resumes_to_the_same_head(tmp_path):
    feats = _random_feats()
    cfg = TrainConfig(epochs=4, batch_size=5, lr=0.01, seed=3)
    ref, text = _head()
    ref_hist = train_head(ref, text, None, feats, cfg, state_dir=tmp_path / "ref", progress=False).history

    def crash_after_2(epoch, rec):
        if epoch == 2:
            raise Crash("simulated kill")

    head, _ = _head()
    with pytest.raises(Crash):
        train_head(head, text, None, feats, cfg, state_dir=tmp_path / "run", progress=False, on_epoch_end=crash_after_2)
    assert json.loads((tmp_path / "run" / STATE_JSON).read_text())["epoch"] == 2
    fresh, _ = _head()  # a new process: nothing in memory survives
    res = train_head(
        fresh, text, None, feats, cfg, state_dir=tmp_path / "run", resume=True, progress=False, log=lambda m: None
    )
    assert res.resumed_from == 2 and len(res.history) == 4
    for k, v in ref.state_dict().items():
        assert torch.allclose(fresh.state_dict()[k], v, atol=1e-6), k
    assert [h["loss"] for h in res.history] == pytest.approx([h["loss"] for h in ref_hist], rel=1e-6)
    assert not torch.equal(ref.W, torch.zeros_like(ref.W))  # it did train


def test_crash_while_writing_the_state_leaves_the_previous_epoch(tmp_path, monkeypatch):
    import hvl_tools.train as T

    feats = _random_feats(seed=5)
    cfg = TrainConfig(epochs=3, batch_size=6, seed=0)
    ref, text = _head()
    train_head(ref, text, None, feats, cfg, progress=False)
    real = T.atomic_write

    def dies_on_epoch_2_json(path, data):
        if path.name == STATE_JSON and json.loads(data)["epoch"] == 2:
            raise Crash("killed between the tensor file and the JSON")
        real(path, data)

    head, _ = _head()
    monkeypatch.setattr(T, "atomic_write", dies_on_epoch_2_json)
    with pytest.raises(Crash):
        train_head(head, text, None, feats, cfg, state_dir=tmp_path, progress=False)
    monkeypatch.setattr(T, "atomic_write", real)
    fresh, _ = _head()
    res = train_head(fresh, text, None, feats, cfg, state_dir=tmp_path, resume=True, progress=False, log=lambda m: None)
    assert res.resumed_from == 1
    assert torch.allclose(fresh.W, ref.W, atol=1e-6) and torch.allclose(fresh.b2, ref.b2, atol=1e-6)
    assert len(list(tmp_path.glob("train_state-e*.safetensors"))) == 1  # old tensor files are cleaned up


def test_resume_refuses_other_data_and_corrupt_state(tmp_path):
    cfg = TrainConfig(epochs=2, batch_size=8)
    head, text = _head()
    train_head(head, text, None, _random_feats(seed=0), cfg, state_dir=tmp_path, progress=False)
    with pytest.raises(TrainStateError, match="other training data"):
        train_head(_head()[0], text, None, _random_feats(seed=9), cfg, state_dir=tmp_path, resume=True, progress=False)
    with pytest.raises(TrainStateError, match="other training settings"):
        train_head(
            _head()[0],
            text,
            None,
            _random_feats(seed=0),
            TrainConfig(epochs=2, batch_size=4),
            state_dir=tmp_path,
            resume=True,
            progress=False,
        )
    tensors = next(tmp_path.glob("train_state-e*.safetensors"))
    tensors.write_bytes(tensors.read_bytes()[:-100])
    with pytest.raises(TrainStateError, match="truncated or corrupt"):
        train_head(_head()[0], text, None, _random_feats(seed=0), cfg, state_dir=tmp_path, resume=True, progress=False)


def test_truncated_checkpoint_is_refused(tmp_path):
    head, _ = _head(d=64)  # tiny-clip-random's width: a checkpoint is checked against its backbone's
    torch.nn.init.normal_(head.W)
    from hvl_core.presets import class_set_from_names

    save_checkpoint(tmp_path, head, "tiny-clip-random", class_set_from_names(["a", "b", "c"]), threshold=0.3)
    assert load_checkpoint(tmp_path).threshold == 0.3
    w = tmp_path / WEIGHTS_NAME
    w.write_bytes(w.read_bytes()[: w.stat().st_size // 2])
    with pytest.raises(CheckpointError, match="truncated"):
        load_checkpoint(tmp_path)


def test_training_improves_accuracy_over_the_untrained_head(model, train_feats):
    head = HVLHead(64, 4)
    _, p0 = head_scores(head, model.text, None, train_feats)
    before = float((p0.argmax(-1) == train_feats.labels).float().mean())
    train_head(head, model.text, None, train_feats, TrainConfig(epochs=30, batch_size=8), progress=False)
    _, p = head_scores(head, model.text, None, train_feats)
    after = float((p.argmax(-1) == train_feats.labels).float().mean())
    assert after >= 0.9 and after > before + 0.4, (before, after)


def test_train_command_end_to_end_with_ablation_flags(synth, cache_dir, tmp_path, monkeypatch, capsys):
    from hvl_tools.cli import main

    monkeypatch.setenv("HVL_CACHE_DIR", str(cache_dir))
    out = tmp_path / "ck"
    args = [
        "train",
        "--train-dir",
        str(synth / "train"),
        "--backbone",
        "tiny-clip-random",
        "--device",
        "cpu",
        "--out",
        str(out),
        "--epochs",
        "3",
        "--batch-size",
        "8",
        "--val-fraction",
        "0.25",
        "--no-progress",
        "--no-fusion",
        "--pseudo-ood-selection",
        "entropy",
        "--lambda-ood",
        "0.5",
        "--seed",
        "7",
    ]
    assert main(args) == 0
    ck = load_checkpoint(out)
    assert ck.classes.names == tuple(sorted(c for c in ID_CLASSES))  # from the folder names, '_' → ' '
    assert ck.config.fusion is False and ck.config.pseudo_ood_selection == "entropy" and ck.config.lambda_ood == 0.5
    assert ck.threshold is not None and 0 < ck.threshold < 1
    cal = ck.meta["calibration"]
    assert cal["n_val"] == 8 and cal["val_tpr"] >= 0.95
    training = json.loads((out / "training.json").read_text())
    assert [h["epoch"] for h in training["history"]] == [1, 2, 3]
    assert training["train_config"]["seed"] == 7 and (out / "loss.png").stat().st_size > 1000
    w = ck.state["W"].clone()
    assert main(args + ["--resume"]) == 0  # a finished run: nothing left to do, same head
    ck2 = load_checkpoint(out)
    assert torch.equal(ck2.state["W"], w) and ck2.meta["training"]["epochs_run"] == 0
    model = hvl_core.load_model(checkpoint=str(out), device="cpu")
    assert model.calibrated and model.threshold == ck.threshold


def test_train_command_reports_bad_data_clearly(synth, tmp_path, capsys):
    from hvl_tools.cli import main

    with pytest.raises(SystemExit) as e:
        main(
            [
                "train",
                "--train-dir",
                str(synth / "train"),
                "--backbone",
                "tiny-clip-random",
                "--classes",
                "melanoma",
                "psoriasis",
                "--out",
                str(tmp_path / "x"),
                "--no-progress",
            ]
        )
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "no folder for class(es) 'psoriasis'" in err and "melanoma" in err
