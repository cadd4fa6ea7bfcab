"""The score registry: one entry (plus its equation) is all a new decision score needs; the head,
the checkpoint checks, the CLI, the reports and the page then know it."""

import math
from dataclasses import replace

import numpy as np
import pytest
import torch

from hvl_core import scores
from hvl_core.head import HVLConfig, ScoreError, check_threshold, decision_scores, scale_scores, score_range


def mean_logit(s: torch.Tensor, T: float = 1.0) -> torch.Tensor:
    """A toy logit score: the mean known-class logit, ``(..., C)`` → ``(...)``."""
    return s.mean(-1)


TOY = replace(
    scores.SCORES["maxlogit"],  # the range of max-logit; everything else its own
    **{
        "name": "meanlogit",
        "label": "mean-logit",
        "noun": "mean-logit score",
        "axis": "mean-logit score (toy)",
        "unit": "mean-logit units",
        "meaning": "mean-logit = the mean known-class logit",
        "term": mean_logit,
        "term_text": "the mean known-class logit",
    },
)


@pytest.fixture
def toy():
    scores.register(TOY)
    yield TOY
    scores.unregister(TOY.name)


def test_the_built_in_scores_and_their_ranges():
    assert list(scores.SCORES) == ["msp", "energy", "maxlogit"]
    assert [s.name for s in scores.SCORES.values() if s.paper] == ["msp"]
    cfg = HVLConfig(tau=0.01, score="energy", energy_t=2.0)
    lo, hi = score_range(cfg, 4)
    assert lo == pytest.approx(-100 + 2 * math.log(4)) and hi == pytest.approx(100 + 2 * math.log(4))
    assert score_range(HVLConfig(score="maxlogit", similarity="linear"), 4) == (-math.inf, math.inf)
    assert score_range(HVLConfig(score="msp", similarity="linear"), 4) == (0.0, 1.0)


def test_a_name_is_registered_once_and_unknown_names_say_so():
    with pytest.raises(ValueError, match="registered already"):
        scores.register(scores.SCORES["msp"])
    with pytest.raises(KeyError, match="unknown score 'nope': use one of msp, energy, maxlogit"):
        scores.get("nope")
    with pytest.raises(ScoreError, match="unknown score 'nope'"):
        HVLConfig(score="nope")


def test_a_registered_score_is_computed_per_scale_and_fused(toy):
    # hand-computed: two known classes; scale 1 keeps patches 0 and 2, scale 2 keeps patch 1
    z0 = torch.tensor([[1.0, 3.0]])  # mean 2
    z1 = torch.tensor([[[0.0, 2.0], [10.0, 10.0], [4.0, 6.0]]])  # kept means 1 and 5 → 3
    z2 = torch.tensor([[[9.0, 9.0], [-1.0, 1.0]]])  # kept: 0
    keep1 = torch.tensor([[True, False, True]])
    keep2 = torch.tensor([[False, True]])
    s0, s1, s2 = scale_scores("meanlogit", z0, z1, z2, keep1, keep2)
    assert (s0.item(), s1.item(), s2.item()) == (2.0, 3.0, 0.0)
    p = torch.softmax(z0, -1)
    whole, fused = decision_scores("meanlogit", z0, z1, z2, keep1, keep2, p, p)
    assert whole.item() == 2.0 and fused.item() == pytest.approx(5 / 3)
    cfg = HVLConfig(score="meanlogit", tau=0.5)
    assert score_range(cfg, 3) == (-2.0, 2.0)
    with pytest.raises(ScoreError, match="outside the range of the meanlogit score"):
        check_threshold(2.5, cfg, 3)


def test_a_registered_score_reaches_the_model_cli_reports_and_page(toy, tiny_backbone, tmp_path, capsys):
    from PIL import Image

    from app import decision as dec
    from app import teaching
    from app.components.controls import render_head
    from hvl_core import load_model
    from hvl_tools import reports
    from hvl_tools.cli import main
    from hvl_tools.embedding_scores import ScoredSet

    model = load_model(tiny_backbone, preset="dermatology-isic4", device="cpu", score="meanlogit", threshold=-50.0)
    img = Image.fromarray(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    pred = model.predict(img)
    assert pred.score_name == "meanlogit" and pred.threshold == -50.0 and pred.known
    assert pred.score == pytest.approx(sum(pred.scale_scores) / 3, abs=1e-5)

    # the page: the score chooser, the verdict's unit, the teaching text
    import gradio as gr

    with gr.Blocks():
        radio = render_head(model)[0]
    assert ("mean-logit", "meanlogit") in radio.choices
    assert dec.decision_text(pred).startswith(f"Known: {pred.label} (mean-logit ")
    assert "mean-logit units" in dec.threshold_slider("meanlogit", (-100.0, 100.0), (0.0,))["label"]
    assert "the mean known-class logit, averaged over the kept patches" in teaching.score_paragraph(pred)

    # the CLI: a --score choice
    path = tmp_path / "x.png"
    img.save(path)
    args = ["predict", "--backbone", "tiny-clip-random", "--preset", "dermatology-isic4", "--json"]
    code = main([*args, "--score", "meanlogit", "--threshold", "-50", str(path)])
    out = capsys.readouterr().out
    assert code == 0 and '"score_name": "meanlogit"' in out

    # the reports: the histogram's axis names it
    scored = ScoredSet(
        paths=["a", "b"],
        score=np.array([1.0, -1.0]),
        is_id=np.array([True, False]),
        label=np.array([0, -1]),
        pred=np.array([0, 0]),
        groups=["id", "ood"],
        score_name="meanlogit",
    )
    import matplotlib

    with matplotlib.rc_context({"svg.fonttype": "none"}):  # text kept as text in the SVG
        reports.plot_histogram(tmp_path / "h.svg", scored, threshold=0.0, t95=None)
    svg = (tmp_path / "h.svg").read_text()
    assert "mean-logit score (toy)" in svg and "MSP" not in svg


def test_the_cli_lists_what_the_registry_holds(toy):
    from hvl_tools.cli import build_parser

    parser = build_parser()
    with pytest.raises(SystemExit):
        parser.parse_args(["predict", "--score", "nope", "x.png"])
    ns = parser.parse_args(["predict", "--score", "meanlogit", "x.png"])
    assert ns.score == "meanlogit"
