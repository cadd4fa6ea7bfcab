"""The three outcomes in words (HVL_SPEC §11), and what Benjamini–Hochberg can flag at a batch's size."""

from types import SimpleNamespace

import pytest

from hvl_core import verdicts
from hvl_core.conformal import bh_min_flagged, bh_select
from hvl_core.prediction import Prediction


def _pred(outcome, p_value=0.19, scope_p=0.01, precision=None):
    scope = {"in_scope": outcome != "out of scope", "p_value": scope_p, "n_calibration": 190, "scope": "a skin photo"}
    return SimpleNamespace(
        outcome=outcome,
        label="nevus",
        classes=["nevus", "melanoma"],
        p_value=p_value,
        n_calibration=200,
        scope=scope,
        precision=precision,
        deciding_p_value=Prediction.deciding_p_value.fget(
            SimpleNamespace(outcome=outcome, scope=scope, p_value=p_value)
        ),
    )


def test_the_deciding_stage_gives_the_p_value():
    assert _pred("out of scope").deciding_p_value == 0.01
    assert _pred("unknown").deciding_p_value == 0.19
    assert _pred("known", p_value=0.7).deciding_p_value == 0.7


def test_each_outcome_reads_as_what_it_is():
    out = _pred("out of scope")
    assert verdicts.headline(out) == "Out of scope — this model cannot judge it"
    assert "a skin photo" in verdicts.meaning(out)
    assert verdicts.p_value_words(out).startswith("In-scope p = 0.01 against 190 known images")
    unk = _pred("unknown", p_value=0.03)
    assert verdicts.headline(unk) == "Unknown — refer to a specialist"
    assert "rarer than 1 in 20" in verdicts.p_value_words(unk)
    known = _pred("known", p_value=0.19, precision={"value": 0.7, "n": 40})
    assert verdicts.headline(known) == "Known: nevus"
    assert "Right in 70% of 40 held-out images it called nevus" in verdicts.meaning(known)
    assert "not a diagnosis" in verdicts.meaning(known)
    assert verdicts.p_value_words(known) == (
        "p = 0.19: 19% of 200 known images score this low or lower — unusual but not rare."
    )
    assert verdicts.meaning(_pred("known")).startswith("Its best match among 2 known classes")
    assert verdicts.qualifier(0.07) == "borderline, near the 1-in-20 line"
    assert verdicts.qualifier(0.6) == "typical"
    assert verdicts.summary(out)["decided_by"] == "stage 1: in scope?"


def test_smallest_p_is_the_stage_with_the_most_reach():
    assert verdicts.smallest_p(63) == pytest.approx(1 / 64)
    assert verdicts.smallest_p(63, 2 / 400) == pytest.approx(2 / 400)
    assert verdicts.smallest_p(0, 1 / 189) == pytest.approx(1 / 189)
    assert verdicts.smallest_p(0) is None


@pytest.mark.parametrize(("p_min", "m", "want"), [(1 / 64, 10, 4), (1 / 64, 100, 32), (0.06, 10, None), (0.001, 10, 1)])
def test_bh_min_flagged_by_hand(p_min, m, want):
    # ⌈m·p_min/q⌉: 10/64/0.05 = 3.125 → 4; 100/64/0.05 = 31.25 → 32; 10·0.06/0.05 = 12 > 10 → none
    assert bh_min_flagged(p_min, m, 0.05) == want


def test_bh_min_flagged_agrees_with_scipys_bh():
    p_min, m = 1 / 64, 10
    k = bh_min_flagged(p_min, m)
    assert bh_select([p_min] * k + [1.0] * (m - k)).sum() == k
    assert bh_select([p_min] * (k - 1) + [1.0] * (m - k + 1)).sum() == 0


def test_bh_note_says_when_single_images_cannot_be_flagged():
    assert verdicts.bh_note(1 / 201, 10, 0.05) == ""  # 0.005 ≤ 0.05/10
    assert "groups of at least 4" in verdicts.bh_note(1 / 64, 10, 0.05)
    assert "cannot flag anything among 10 images" in verdicts.bh_note(0.06, 10, 0.05)
