"""The gallery's lessons quote the shipped model's verdicts, and those are the verdicts it gives."""

import pytest

from app import lessons
from app.components.upload import failures_markdown
from app.examples import ASSETS_DIR, load_examples


def test_a_lesson_reads_the_verdict_it_is_given():
    lesson = lessons.LESSONS[0]
    v = {
        "outcome": "out of scope",
        "decision": "Out of scope — this model cannot judge it",
        "label": "melanocytic nevus",
        "comparison": "MSP 0.833 ≥ threshold 0.573",
        "above": True,
        "score": 0.833,
        "score_name": "msp",
    }
    s = lessons.sentence(lesson, v)
    assert "“Out of scope — this model cannot judge it” (MSP 0.833 ≥ threshold 0.573)" in s
    assert "the score alone would have said melanocytic nevus (0.833)" in s
    assert lesson.why["out of scope"] in s
    assert "not yet analysed" in lessons.sentence(lesson, None) and "0.833" not in lessons.sentence(lesson, None)


def test_verdicts_of_other_checkpoints_are_not_quoted(tmp_path):
    stale = tmp_path / "lessons.json"
    stale.write_text('{"checkpoints": {"histology-nct-crc": "0000"}, "verdicts": {"x.png": {}}}')
    assert lessons.load_verdicts(["histology-nct-crc"], stale) == {}


@pytest.mark.slow
def test_the_page_quotes_the_verdicts_the_shipped_model_gives():
    examples = load_examples()
    items = lessons.lessons(examples)
    assert len(items) == 4 and {x.preset for x in items} == {"dermatology-isic4", "histology-nct-crc"}
    stored = lessons.load_verdicts([x.preset for x in items])
    assert set(stored) == {x.file for x in items}, "weights/reference/lessons.json is stale: python -m app.lessons"
    page = failures_markdown(examples)
    for x in items:
        got = lessons.analyse(x, ASSETS_DIR)
        assert stored[x.file]["outcome"] == got["outcome"] and stored[x.file]["decision"] == got["decision"], x.file
        assert stored[x.file]["score"] == pytest.approx(got["score"], abs=1e-4), x.file
        assert f"“{got['decision']}”" in page, x.file
