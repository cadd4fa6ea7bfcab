"""The three outcomes of HVL_SPEC §11 — out of scope, unknown, known — through the core, the page's
verdict, the API (what /predict, /batch and the MCP tools answer), hvl predict and hvl score.

A checkpoint for the tiny backbone ships (``HVL_WEIGHTS_DIR``) with a stage 1 whose bank holds the
two skin examples (k = 1, threshold just under 1: only they are in scope) and a stage 2 threshold
between their scores, so the nevus close-up, the forearm photo and the CT get one outcome each.
"""

import base64
import csv
import json
from pathlib import Path

import numpy as np
import pytest
import torch

from app import api
from app.decision import decision_html
from app.service import ModelService
from hvl_core import load_model, save_checkpoint
from hvl_core.scope import ScopeDetector, unit
from hvl_tools import cli

ASSETS = Path(__file__).resolve().parents[2] / "assets"
SKINS = [ASSETS / "skin_nevus_closeup.jpg", ASSETS / "skin_forearm_nevi.jpg"]
CT = ASSETS / "ood_ct_vertebra.png"


@pytest.fixture(scope="module")
def shipped(tiny_backbone, tmp_path_factory):
    """(weights folder, {file name: the outcome it must get})."""
    model = load_model(tiny_backbone, preset="dermatology-isic4", device="cpu")
    enc = model.encode_batch([str(p) for p in (*SKINS, CT)])
    scores = [p.score for p in model.decide_batch(enc)]
    assert scores[0] != scores[1]
    bank = unit(torch.stack([e.v0 for e in enc[:2]]))
    cal = {"knn": np.array([0.5, 0.99999, 1.0]), "gate": np.array([-1.0, 0.0, 1.0])}
    det = ScopeDetector(
        bank, torch.zeros(bank.shape[1]), torch.tensor(0.0), 0.99999, -0.5, cal, k=1, scope="a skin photo"
    )
    root = tmp_path_factory.mktemp("weights")
    cal_scores = sorted([*scores, 0.0, 1.0])
    calibration = {"rule": "conformal", "score": "msp", "alpha": 0.05, "n": 5, "scores": cal_scores, "sources": []}
    save_checkpoint(
        root / "hvl-tiny-clip-random-dermatology-isic4",
        model.head,
        "tiny-clip-random",
        model.classes,
        threshold=float(np.mean(scores[:2])),
        scope=det,
        extra={"calibration": calibration},
    )
    hi = int(np.argmax(scores[:2]))
    want = {SKINS[hi].name: "known", SKINS[1 - hi].name: "unknown", CT.name: "out of scope"}
    return root, want


@pytest.fixture
def weights_env(shipped, monkeypatch):
    monkeypatch.setenv("HVL_WEIGHTS_DIR", str(shipped[0]))
    return shipped[1]


def test_the_core_and_the_page_give_each_outcome(shipped, tiny_backbone):
    root, want = shipped
    model = load_model(tiny_backbone, checkpoint=root / "hvl-tiny-clip-random-dermatology-isic4", device="cpu")
    for path in (*SKINS, CT):
        pred = model.predict(str(path))
        assert pred.outcome == want[path.name] and pred.known == (want[path.name] == "known")
        assert pred.scope["in_scope"] == (want[path.name] != "out of scope")
        page = decision_html(pred)
        assert f'data-outcome="{want[path.name]}"' in page
        headline = {"known": "Known: ", "unknown": "Unknown — refer", "out of scope": "Out of scope — this model"}
        assert headline[want[path.name]] in page
        if pred.outcome == "out of scope":  # the deciding stage's p-value: stage 1's
            assert pred.deciding_p_value == pred.scope["p_value"] and "In-scope p" in page
            assert "a skin photo" in page


def test_the_api_answers_each_outcome(weights_env, tiny_backbone):
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    uris = [
        f"data:image/{p.suffix[1:].replace('jpg', 'jpeg')};base64," + base64.b64encode(p.read_bytes()).decode()
        for p in (*SKINS, CT)
    ]
    rows = json.loads(json.dumps(api.batch(svc, uris)))  # JSON as /batch and hvl_batch answer it
    assert [r["verdict"] for r in rows] == [weights_env[p.name] for p in (*SKINS, CT)]
    out = rows[2]
    assert out["decided_by"] == "stage 1: in scope?" and out["scope"]["in_scope"] is False
    assert out["decision"] == "Out of scope — this model cannot judge it" and "a skin photo" in out["meaning"]
    assert out["p_value"] == out["scope"]["p_value"] and out["p_value_words"].startswith("In-scope p")
    one = api.predict(svc, uris[0])
    assert one["verdict"] == rows[0]["verdict"] and one["decided_by"] == "stage 2: known class?"


def test_hvl_predict_and_score_write_each_outcome(weights_env, tmp_path, capsys):
    files = [str(p) for p in (*SKINS, CT)]
    assert (
        cli.main(["predict", "--backbone", "tiny-clip-random", "--preset", "dermatology-isic4", "--json", *files]) == 0
    )
    lines = [json.loads(x) for x in capsys.readouterr().out.splitlines()]
    assert [x["outcome"] for x in lines] == [weights_env[Path(f).name] for f in files]
    assert lines[2]["verdict"].startswith("Out of scope") and lines[2]["scope"]["in_scope"] is False
    out = tmp_path / "screen"
    cli.main(["score", *files, "--out", str(out), "--backbone", "tiny-clip-random", "--preset", "dermatology-isic4"])
    with open(out / "scores.csv", newline="") as f:
        got = {Path(r["path"]).name: r["outcome"] for r in csv.DictReader(f)}
    assert got == weights_env
    summary = json.loads((out / "summary.json").read_text())
    assert (summary["known"], summary["unknown"], summary["out_of_scope"]) == (1, 1, 1)
