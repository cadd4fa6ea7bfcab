"""The gallery's lessons on where OOD detection fails, worded from the shipped model's own verdicts.

A lesson is an example image, the class set (and optionally the score) it is about, and why the
model answers as it does, for each of the three outcomes (HVL_SPEC §11). The failure examples
carry theirs in ``assets/manifest.json`` (``preset``, ``why``); ``LESSONS`` adds two of the other
examples. ``python -m app.lessons`` analyses every lesson's image with the shipped model of its
class set (the checkpoint in ``weights/``) and writes the verdicts, with the checkpoints they came
from, to ``weights/reference/lessons.json``. The page reads that file: every verdict and number
it quotes is the model's, never one written by hand; a file made with other checkpoints is not
used (the page then gives the lessons without verdicts). ``tests/app/test_lessons.py`` analyses
each image again and checks the page's claims against the verdicts it gets.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path

from hvl_core import verdicts

from .decision import above, comparison_text, decision_text, fmt_score
from .reference import SHIPPED_DIR

VERDICTS_FILE = SHIPPED_DIR / "lessons.json"
PRESET_NAMES = {"dermatology-isic4": "the skin classes", "histology-nct-crc": "the colorectal classes"}


@dataclass(frozen=True)
class Lesson:
    file: str  # the example's file name in assets/
    preset: str
    title: str
    why: dict  # {outcome: why, in a sentence}; an outcome without one gets the verdict alone
    score: str | None = None  # None: the checkpoint's own score


LESSONS = (
    Lesson(
        "ood_fundus_retina.png",
        "dermatology-isic4",
        "Fundus retina, with the paper's score",
        {
            verdicts.OUT_OF_SCOPE: "a retina is not a skin-lesion photo, and the in-scope check stops it before any "
            "class score is read. MSP alone measures how peaked the softmax is: a picture unlike every class can "
            "still pile it on one.",
            verdicts.KNOWN: "MSP measures how peaked the softmax is, and a picture unlike every class can still pile "
            "it on one: a failure.",
            verdicts.UNKNOWN: "in scope for the in-scope check, and the score rejects it.",
        },
        score="msp",
    ),
    Lesson(
        "histology_skin_epidermis.jpg",
        "histology-nct-crc",
        "H&E of another organ",
        {
            verdicts.KNOWN: "the model learnt H&E from colon only, and another organ's tissue shares the stain and the "
            "textures: near-OOD that looks in scope and familiar.",
            verdicts.UNKNOWN: "it passes the in-scope check (it is an H&E tile) and the score rejects it: the texture "
            "is not close enough to a colon class.",
            verdicts.OUT_OF_SCOPE: "skin H&E differs enough from the colon tiles the in-scope check knows.",
        },
    ),
)


def lessons(examples: list[dict]) -> list[Lesson]:
    """The lessons whose example is among ``examples``: the failure set's, then ``LESSONS``."""
    names = {Path(e["path"]).name for e in examples}
    own = [
        Lesson(Path(e["path"]).name, e["preset"], e.get("title") or Path(e["path"]).stem, e["why"])
        for e in examples
        if e.get("kind") == "failure" and e.get("preset") and isinstance(e.get("why"), dict)
    ]
    return own + [x for x in LESSONS if x.file in names]


def checkpoints_digest(presets) -> dict:
    """{preset: sha256 of its shipped checkpoint's config.json} (which records the weights' and
    stage 1's sha256): the verdicts are valid for exactly these."""
    from hvl_core.backbones import MEASURED_BACKBONE
    from hvl_core.checkpoint import CONFIG_NAME, shipped_checkpoint

    out = {}
    for p in sorted(set(presets)):
        folder = shipped_checkpoint(MEASURED_BACKBONE, p)
        out[p] = None if folder is None else hashlib.sha256((folder / CONFIG_NAME).read_bytes()).hexdigest()[:16]
    return out


def verdict_of(pred) -> dict:
    """What the page quotes of a prediction."""
    return {
        "outcome": pred.outcome,
        "decision": decision_text(pred),
        "label": pred.label,
        "comparison": comparison_text(pred),
        "above": bool(above(pred)),
        "score": float(pred.score),
        "score_name": pred.score_name,
    }


def analyse(lesson: Lesson, assets: Path) -> dict:
    """The shipped model's verdict on the lesson's image."""
    from hvl_core import load_model
    from hvl_core.backbones import MEASURED_BACKBONE
    from hvl_core.checkpoint import shipped_checkpoint

    model = load_model(MEASURED_BACKBONE, checkpoint=shipped_checkpoint(MEASURED_BACKBONE, lesson.preset), device="cpu")
    options = {"score": lesson.score} if lesson.score else {}
    return verdict_of(model.predict(str(assets / lesson.file), **options))


def load_verdicts(presets, path: Path = VERDICTS_FILE) -> dict:
    """{file: verdict} when ``path`` was written with the checkpoints shipped now, else {}."""
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        return {}
    return data.get("verdicts", {}) if data.get("checkpoints") == checkpoints_digest(presets) else {}


def sentence(lesson: Lesson, v: dict | None) -> str:
    """One markdown item: the lesson's title, the model's verdict with its numbers, and why."""
    where = PRESET_NAMES.get(lesson.preset, lesson.preset) + (
        f" and {lesson.score.upper() if lesson.score == 'msp' else lesson.score}" if lesson.score else ""
    )
    if v is None:  # no verdict of the checkpoints shipped now: nothing is quoted
        return f"- *{lesson.title}* — with {where} (not yet analysed with the shipped model: `python -m app.lessons`)."
    said = f"with {where} the shipped model says “{v['decision']}” ({v['comparison']})"
    if v["outcome"] == verdicts.OUT_OF_SCOPE and v["above"]:
        said += f"; the score alone would have said {v['label']} ({fmt_score(v['score'])})"
    why = lesson.why.get(v["outcome"], "")
    return f"- *{lesson.title}* — {said}" + (f": {why}" if why else ".")


def markdown(examples: list[dict], path: Path = VERDICTS_FILE) -> list[str]:
    """The lessons of ``examples`` as markdown items, each with the shipped model's verdict."""
    items = lessons(examples)
    found = load_verdicts([x.preset for x in items], path) if items else {}
    return [sentence(x, found.get(x.file)) for x in items]


def main(argv=None) -> int:
    """``python -m app.lessons``: analyse every lesson's image with the shipped model and write
    ``weights/reference/lessons.json`` (re-run when a shipped checkpoint or an example changes)."""
    from .examples import ASSETS_DIR, load_examples

    items = lessons(load_examples())
    data = {
        "checkpoints": checkpoints_digest([x.preset for x in items]),
        "verdicts": {x.file: analyse(x, ASSETS_DIR) for x in items},
    }
    VERDICTS_FILE.parent.mkdir(parents=True, exist_ok=True)
    VERDICTS_FILE.write_text(json.dumps(data, indent=1) + "\n")
    print(VERDICTS_FILE.name, "written:", ", ".join(f"{f}: {v['decision']}" for f, v in data["verdicts"].items()))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
