"""``hvl corpus run`` end to end on a small made-up corpus with the tiny random backbone: per
preset a trained, calibrated checkpoint whose measured sources are the test sources only, and
a report with the zoo."""

import hashlib
import io
import json

import numpy as np
import pytest
import torch
from PIL import Image

from hvl_core import load_checkpoint, load_model
from hvl_core.conformal import conformal_threshold
from hvl_tools import corpus as C
from hvl_tools import corpus_eval as E
from hvl_tools import scope_eval as S


def _image(rng, colour) -> bytes:
    a = np.clip(rng.normal(colour, 40, (72, 72, 3)), 0, 255).astype(np.uint8)
    buf = io.BytesIO()
    Image.fromarray(a).save(buf, format="PNG")
    return buf.getvalue()


@pytest.fixture(scope="module")
def tiny_corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    rng = np.random.default_rng(0)
    rows = []

    def add(source, split, category, kind, count, colour):
        for i in range(count):
            blob = _image(rng, colour)
            sha = hashlib.sha256(blob).hexdigest()
            rid = f"{source}-{kind}-{i}".replace(" ", "_").replace(":", "_").replace("&", "and")
            f = f"images/{category}/{rid}.png"
            (root / f).parent.mkdir(parents=True, exist_ok=True)
            (root / f).write_bytes(blob)
            rows.append(
                {
                    "id": rid,
                    "file": f,
                    "source": source,
                    "origin": "github",
                    "repo": "o/r",
                    "commit": "b" * 40,
                    "path": f"{rid}.png",
                    "crop": "",
                    "licence": "CC0-1.0",
                    "licence_evidence": "test",
                    "sha256": sha,
                    "file_sha256": sha,
                    "label": kind,
                    "label_source": "test",
                    "category": category,
                    "kind": kind,
                    "modality": "x",
                    "dataset": "",
                    "dataset_id": "",
                    "split": split,
                    "package": "",
                    "version": "",
                    "dist_file": "",
                }
            )

    for split, sources in (("train", ("gh:a", "gh:b")), ("calib", ("gh:c",)), ("test", ("gh:d",))):
        for s in sources:
            for j, k in enumerate(C.ID_CLASSES["dermatology-isic4"]):
                add(s, split, "derm-id", k, 12 if split == "calib" else 2, (180, 90 + 20 * j, 90))
            for j, k in enumerate(C.ID_CLASSES["histology-nct-crc"]):
                add(s, split, "histo-id", k, 6 if split == "calib" else 1, (200, 120, 170 + 8 * j))
            add(s, split, "near-ood-skin", "BCC", 2, (160, 110, 100))
            add(s, split, "near-ood-histo", "IHC", 2, (150, 110, 60))
            add(s, split, "far-ood", "x-ray", 3, (60, 60, 60))
    C.write_manifest(rows, root)
    return root


@pytest.mark.slow
def test_run_trains_calibrates_and_measures_per_preset(tiny_corpus, tmp_path, monkeypatch):
    monkeypatch.setattr(E, "BACKBONE", "tiny-clip-random")
    out, weights = tmp_path / "out", tmp_path / "weights"
    res = E.run(
        out, tiny_corpus, weights=weights, epochs=2, n_boot=20, cache_dir=tmp_path / "cache", log=lambda m: None
    )
    for preset in E.PRESETS:
        r = res["presets"][preset]
        assert r["sources"] == {"train": ["gh:a", "gh:b"], "calib": ["gh:c"], "test": ["gh:d"]}
        ck = load_checkpoint(weights / f"hvl-tiny-clip-random-{preset}")
        cal = ck.meta["calibration"]
        assert cal["score"] == r["default"]["score"] == ck.config.score and r["default"]["head"] in (
            "trained",
            "untrained",
        )
        assert ck.threshold == pytest.approx(conformal_threshold(cal["scores"], 0.05))
        # pooled over the ID images of the train and calib sources (16 + 48; stage 1 at α/3 per test needs ≥ 59), each from a head or stage 1
        # fitted without its source; stage 1 ships with the checkpoint
        assert cal["n"] == len(cal["scores"]) == 64 and cal["sources"] == ["gh:a", "gh:b", "gh:c"]
        assert ck.scope is not None and ck.meta["scope"]["n_bank"] == 64 and ck.scope.n_calibration == 64
        assert r["scope"]["n"]["id"] == 8 and set(r["scope"]["auroc_far"]) >= {
            "KNN",
            "gate",
            "contrast",
            "KNN, gate and contrast",
        }
        o = r[r["default"]["head"]][r["default"]["score"]]["outcomes"]
        assert all(0 <= o[k]["far"][0] <= 1 for k in ("known", "out_of_scope", "unknown"))
        assert o["known"]["far"][0] + o["out_of_scope"]["far"][0] + o["unknown"]["far"][0] == pytest.approx(1)
        assert ck.meta["measured"]["sources"] == ["gh:d"] and ck.meta["training"]["sources"] == ["gh:a", "gh:b", "gh:c"]
        t = r["trained"][r["default"]["score"]]["test"]
        assert t["n"]["id"] == 8  # histology: BACK is the preset's negative class, so near-OOD
        for v, lo, hi in t["accepted"].values():
            assert 0 <= v <= 1 and (np.isnan(lo) or lo <= v <= hi)
        m = load_model(checkpoint=weights / f"hvl-tiny-clip-random-{preset}", backbone="tiny-clip-random")
        assert m.threshold_source == "calibrated" and set(m.calibration) == set(E.SCORES) and m.scope is not None
        # the app's stage 1 sees the image as the corpus run did: f of all three scales
        assert m.scope.features == S.SCOPE_FEATURES == "scale-means"
        image = tiny_corpus / C.read_manifest(tiny_corpus)[0].file
        pred, enc = m.predict(str(image)), m.encode(str(image))
        f = S.corpus_features(torch.cat([enc.v0[None], enc.v1, enc.v2])[None], m.n)
        assert pred.scope["knn"] == pytest.approx(float(m.scope.predict(f).knn[0]), abs=1e-5)
        assert res["zoo"][preset]["folds"], preset
    report = (out / "README.md").read_text()
    assert "Zoo: dermatology-isic4" in report and "Mahalanobis (pytorch-ood)" in report
    assert "Stage 1 — in scope?" in report and "Leave one kind out" in report
    assert json.loads((out / "results.json").read_text())["presets"].keys() == set(E.PRESETS)


def test_auroc_fast_equals_sklearn():
    from sklearn.metrics import roc_auc_score

    rng = np.random.default_rng(3)
    pos, neg = rng.integers(0, 5, 30).astype(float), rng.integers(0, 5, 20).astype(float)  # with ties
    want = roc_auc_score(np.r_[np.ones(30), np.zeros(20)], np.r_[pos, neg])
    assert E.auroc_fast(pos, neg) == pytest.approx(want)


def test_source_folds_deal_every_source_once():
    assert E.source_folds(["s4", "s1", "s2", "s1", "s3"], 3) == [["s1", "s4"], ["s2"], ["s3"]]
    assert E.source_folds(["b", "a"], 3) == [["a"], ["b"]]


def test_cross_fitted_scores_never_come_from_a_head_that_saw_their_source(monkeypatch):

    from hvl_tools.features import FeatureSet

    # rows: ID images of sources a, b, c (fitting) and d (test); a near-OOD row of b and of e (no ID)
    src = ["a", "a", "b", "c", "d", "b", "e"]
    role = ["id", "id", "id", "id", "id", "near", "near"]
    rows = [C.Row({"source": s}) for s in src]
    masks = {"id": np.array([r == "id" for r in role]), "near": np.array([r == "near" for r in role])}
    fitting = np.array([s != "d" for s in src])
    fs = FeatureSet(torch.arange(7.0).reshape(7, 1, 1), [str(i) for i in range(7)], torch.zeros(7).long(), [""] * 7)
    seen = {}

    def train(model, fold, cfg):  # a "head" is the set of row indices it trained on
        return frozenset(int(x) for x in fold.v[:, 0, 0])

    def score(head, model, sub):  # every score names the head that gave it
        idx = [int(x) for x in sub.v[:, 0, 0]]
        for i in idx:
            seen[i] = head
        return {s: np.full(len(idx), float(len(head))) for s in E.SCORES}, None

    monkeypatch.setattr(E, "train_hvl", train)
    monkeypatch.setattr(E, "all_scores", score)
    full = {s: np.full(7, -1.0) for s in E.SCORES}
    out = E.cross_fitted_scores("trained", None, fs, rows, np.zeros(7, int), masks, fitting, None, full)
    # three folds of ID sources a | b | c: rows of a are scored by the head of b and c's ID rows (2, 3) ...
    assert seen == {0: {2, 3}, 1: {2, 3}, 2: {0, 1, 3}, 5: {0, 1, 3}, 3: {0, 1, 2}}
    for i, head in seen.items():
        assert all(src[j] != src[i] for j in head)
    # ... the test row (d) and the near-OOD row of a source without ID images (e) keep the full head's
    assert out["msp"][4] == out["msp"][6] == -1 and out["msp"][0] == 2 and out["msp"][2] == 3
    assert E.cross_fitted_scores("untrained", None, fs, rows, None, masks, fitting, None, full) is full
