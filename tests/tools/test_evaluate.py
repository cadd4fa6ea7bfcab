"""Evaluation reports, the evaluate / calibrate / compare / aggregate commands, and the proof that
training learns on the synthetic benchmark (tiny-clip-random, CPU)."""

import csv
import json

import numpy as np
import pytest

from hvl_core import load_checkpoint
from hvl_tools.aggregate import aggregate
from hvl_tools.cli import main
from hvl_tools.embedding_scores import ScoredSet
from hvl_tools.reports import write_report

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(autouse=True)
def cache(tmp_path_factory, monkeypatch):
    monkeypatch.setenv("HVL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hvl-cache"))


def run(*args):
    return main([*map(str, args), "--no-progress"])


@pytest.fixture(scope="module")
def trained(synth, tmp_path_factory):
    out = tmp_path_factory.mktemp("ck")
    mp = pytest.MonkeyPatch()
    mp.setenv("HVL_CACHE_DIR", str(tmp_path_factory.getbasetemp() / "hvl-cache"))
    try:
        assert (
            run(
                "train",
                "--split",
                synth / "split.json",
                "--data-root",
                synth,
                "--backbone",
                "tiny-clip-random",
                "--device",
                "cpu",
                "--out",
                out,
                "--epochs",
                30,
                "--batch-size",
                8,
                "--val-fraction",
                0.25,
            )
            == 0
        )
    finally:
        mp.undo()
    return out


def test_report_files_with_hand_computed_numbers(tmp_path):
    scored = ScoredSet(
        paths=["a.png", "b.png", "c.png", "d.png", "e.png"],
        score=np.array([0.9, 0.6, 0.3, 0.6, 0.1]),
        is_id=np.array([True, True, True, False, False]),
        label=np.array([0, 1, 1, -1, -1]),
        pred=np.array([0, 0, 1, 1, 0]),
        groups=["x", "y", "y", "ood", "ood"],
    )
    m = write_report(tmp_path, scored, ["x", "y"], threshold=0.5, info={"method_name": "HVL"})
    # accuracy 2/3; AUROC pairs: 0.9 beats both, 0.6 ties 0.6 (½) beats 0.1, 0.3 loses to 0.6 beats 0.1 → 4.5/6
    assert m["accuracy"] == pytest.approx(2 / 3) and m["auroc"] == pytest.approx(0.75)
    # t95: all 3 ID must pass → 0.3; OOD >= 0.3: 1 of 2
    assert m["t95"] == 0.3 and m["fpr95"] == 0.5
    assert m["per_class_accuracy"] == {"x": 1.0, "y": 0.5}
    assert (m["id_accepted_at_threshold"], m["ood_accepted_at_threshold"]) == (pytest.approx(2 / 3), 0.5)
    on_disk = json.loads((tmp_path / "metrics.json").read_text())
    assert on_disk["auroc"] == m["auroc"] and on_disk["n_id"] == 3 and on_disk["n_ood"] == 2
    rows = list(csv.DictReader(open(tmp_path / "scores.csv")))
    assert [r["path"] for r in rows] == scored.paths
    assert rows[1] == {
        "path": "b.png",
        "score": "0.6",
        "is_id": "1",
        "label": "y",
        "pred": "x",
        "known": "1",
        "group": "y",
    }
    assert rows[3]["label"] == "" and rows[3]["is_id"] == "0"
    for f in ("roc.png", "hist.png"):
        assert (tmp_path / f).read_bytes()[:8] == PNG
    md = (tmp_path / "report.md").read_text()
    assert "| HVL | 66.67 | 75.00 | 50.00 |" in md


@pytest.mark.slow
def test_evaluate_command_contract(synth, trained, tmp_path):
    out = tmp_path / "ev"
    assert (
        run("evaluate", "--checkpoint", trained, "--id-dir", synth / "test", "--ood-dir", synth / "ood", "--out", out)
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    for k in ("accuracy", "auroc", "fpr95", "aupr"):
        assert 0 <= m[k] <= 1, k
    assert (m["n_id"], m["n_ood"]) == (16, 12)
    assert m["threshold"] == load_checkpoint(trained).threshold
    rows = list(csv.DictReader(open(out / "scores.csv")))
    assert len(rows) == 28 and {"path", "score", "is_id", "label", "pred"} <= set(rows[0])
    assert sum(r["is_id"] == "1" for r in rows) == 16
    assert all(r["label"] == r["path"].split("/")[-2].replace("_", " ") for r in rows if r["is_id"] == "1")
    assert (out / "roc.png").read_bytes()[:8] == PNG and (out / "hist.png").read_bytes()[:8] == PNG


def test_flat_id_folder_gives_scores_without_accuracy(synth, trained, tmp_path):
    flat = tmp_path / "flat"
    flat.mkdir()
    for p in sorted((synth / "test" / "melanoma").iterdir())[:3]:
        (flat / p.name).write_bytes(p.read_bytes())
    out = tmp_path / "ev"
    assert (
        run(
            "evaluate",
            "--checkpoint",
            trained,
            "--id-dir",
            flat,
            "--ood-dir",
            synth / "ood" / "benign_keratosis",
            "--out",
            out,
        )
        == 0
    )
    m = json.loads((out / "metrics.json").read_text())
    assert m["accuracy"] is None and m["n_id"] == 3 and m["n_ood"] == 4 and m["auroc"] is not None
    assert all(r["label"] == "" for r in csv.DictReader(open(out / "scores.csv")))


def test_evaluate_reports_mismatched_class_folders(synth, trained, tmp_path, capsys):
    bad = tmp_path / "bad" / "psoriasis"
    bad.mkdir(parents=True)
    (bad / "x.png").write_bytes(next((synth / "ood" / "benign_keratosis").iterdir()).read_bytes())
    with pytest.raises(SystemExit) as e:
        run("evaluate", "--checkpoint", trained, "--id-dir", bad.parent, "--out", tmp_path / "o")
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "psoriasis" in err and "melanocytic nevus" in err


def test_training_beats_the_untrained_head_on_the_synthetic_benchmark(synth, trained, tmp_path):
    common = ["--split", synth / "split.json", "--data-root", synth]
    assert run("evaluate", "--checkpoint", trained, *common, "--out", tmp_path / "t") == 0
    assert run("evaluate", "--backbone", "tiny-clip-random", "--device", "cpu", *common, "--out", tmp_path / "z") == 0
    assert (
        run(
            "evaluate",
            "--backbone",
            "tiny-clip-random",
            "--device",
            "cpu",
            *common,
            "--method",
            "mcm",
            "--out",
            tmp_path / "m",
        )
        == 0
    )
    t, z, mcm = (json.loads((tmp_path / d / "metrics.json").read_text()) for d in "tzm")
    assert t["accuracy"] >= 0.9 and t["accuracy"] > z["accuracy"] + 0.5
    assert t["auroc"] > z["auroc"] + 0.05 and t["auroc"] > mcm["auroc"] + 0.05, (t["auroc"], z["auroc"], mcm["auroc"])


def test_calibrate_command_sets_t95_of_the_validation_images(synth, trained, tmp_path):
    ck = tmp_path / "ck"
    assert run("calibrate", "--checkpoint", trained, "--val-dir", synth / "test", "--out", ck) == 0
    assert run("evaluate", "--checkpoint", ck, "--id-dir", synth / "test", "--out", tmp_path / "ev") == 0
    m = json.loads((tmp_path / "ev" / "metrics.json").read_text())
    new = load_checkpoint(ck)
    assert new.threshold == pytest.approx(m["t95"]) and m["id_accepted_at_threshold"] >= 0.95
    assert new.meta["calibration"]["n_val"] == 16 and "training" in new.meta  # the training record is kept
    assert load_checkpoint(trained).meta["calibration"]["n_val"] == 8  # the source is left as it was


def test_compare_and_aggregate(synth, tmp_path, capsys):
    out = tmp_path / "cmp"
    assert (
        run(
            "compare",
            "--split",
            synth / "split.json",
            "--data-root",
            synth,
            "--backbone",
            "tiny-clip-random",
            "--device",
            "cpu",
            "--out",
            out,
            "--seeds",
            0,
            1,
            "--epochs",
            2,
            "--batch-size",
            8,
            "--variants",
            "mcm",
            "zero-shot-hvl",
            "hvl",
            "no-propagation",
        )
        == 0
    )
    doc = json.loads((out / "summary.json").read_text())
    assert set(doc["summary"]) == {"mcm", "zero-shot-hvl", "hvl", "no-propagation"}
    assert doc["summary"]["hvl"]["runs"] == 2 and doc["summary"]["mcm"]["runs"] == 1
    assert (out / "roc.png").read_bytes()[:8] == PNG
    runs = [json.loads((out / "synthetic-lesions" / "hvl" / f"seed{s}" / "metrics.json").read_text()) for s in (0, 1)]
    assert doc["summary"]["hvl"]["auroc"]["mean"] == pytest.approx(np.mean([r["auroc"] for r in runs]))
    ck = load_checkpoint(out / "synthetic-lesions" / "no-propagation" / "seed1" / "checkpoint")
    assert ck.config.propagate is False and ck.meta["training"]["train_config"]["seed"] == 1
    capsys.readouterr()
    assert main(["aggregate", str(out), "--out", str(tmp_path / "agg.md")]) == 0
    table = (tmp_path / "agg.md").read_text()
    assert "hvl (n=2)" in table and "±" in table


def test_aggregate_mean_and_sample_std_by_hand():
    agg = aggregate([{"auroc": 0.8, "fpr95": 0.5}, {"auroc": 0.9, "fpr95": None}, {"auroc": 1.0, "fpr95": 0.7}])
    assert agg["auroc"]["mean"] == pytest.approx(0.9) and agg["auroc"]["std"] == pytest.approx(0.1)
    assert agg["fpr95"] == {"mean": pytest.approx(0.6), "std": pytest.approx(0.1414213562), "n": 2}
    assert agg["accuracy"] == {"mean": None, "std": None, "n": 0}
