"""The app's handlers without a browser: a UI of stand-in components (handlers only use them as
keys), the real model service. What each re-decision sends back, that nothing runs before an
analysis, and that failures become one sentence."""
from __future__ import annotations

from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest

from app import handlers
from app.components.controls import Controls, Settings
from app.components.upload import load_examples
from app.messages import class_placeholder, friendly_error
from app.service import ModelService, Session, Spec
from hvl_core.backbones import UnknownClassError

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"


class Stub:
    """A stand-in component: hashable, named."""

    def __init__(self, name):
        self.name = name

    def __repr__(self):
        return self.name


@pytest.fixture(scope="module")
def ui(tiny_backbone):
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    controls = Controls(**{f.name: Stub(f.name) for f in fields(Controls)})
    names = [f.name for f in fields(handlers.UI) if f.name not in ("service", "examples", "controls")]
    return handlers.UI(service=svc, examples=load_examples(), controls=controls, **{n: Stub(n) for n in names})


def values(ui, session, shown=None, upload=None, **settings):
    s = Settings(**{"threshold": 0.5, **settings})
    v = {getattr(ui.controls, f.name): getattr(s, f.name) for f in fields(Settings)}
    return {**v, ui.session: session, ui.shown: shown or {}, ui.upload: upload}


def figures_in(ui, out) -> set[str]:
    return {c.name for c in out if c in ui.figures()}


@pytest.fixture
def analysed(ui):
    out = handlers.on_upload(ui, values(ui, Session(model_identity=Spec().identity()), upload=str(EXAMPLE)),
                             progress=None)
    return out


def test_upload_sends_everything_once(ui, analysed):
    out = analysed
    assert figures_in(ui, out) == {"thumbnail", "main_map", "mid_map", "gain_map", "class_map", "scales"}
    for f in ("thumbnail", "main_map", "mid_map", "gain_map", "class_map"):
        html = out[getattr(ui, f)]
        assert "<img src='data:image/jpeg;base64," in html and " alt='" in html
    assert "hvl-decision" in out[ui.decision] and out[ui.upload] is None
    assert out[ui.session].prediction is not None and out[ui.shown]


def test_k_change_redraws_only_the_gain_map(ui, analysed, tiny_backbone, monkeypatch):
    calls = []
    monkeypatch.setattr(tiny_backbone, "encode_image", lambda x: calls.append(x) or None)
    sess, shown = analysed[ui.session], analysed[ui.shown]
    out = handlers.on_options(ui, values(ui, sess, shown, k=2))
    assert figures_in(ui, out) == {"gain_map"}
    assert ui.decision not in out and ui.top not in out  # the verdict did not change
    assert ui.teaching in out and len(out[ui.session].prediction.pseudo_ood) == 2
    assert calls == []  # the encoder never ran
    # the same K again: nothing to redraw at all
    again = handlers.on_options(ui, values(ui, out[ui.session], out[ui.shown], k=2))
    assert figures_in(ui, again) == set() and ui.teaching not in again


def test_threshold_redraws_the_verdict_and_the_chart(ui, analysed):
    sess, shown = analysed[ui.session], analysed[ui.shown]
    out = handlers.on_options(ui, values(ui, sess, shown, threshold=0.9))
    assert figures_in(ui, out) == {"scales"} and ui.decision in out and ui.top not in out
    assert "left:90.00%" in out[ui.scales]


def test_entropy_filter_redraws_the_entropy_maps_and_the_chart(ui, analysed):
    sess, shown = analysed[ui.session], analysed[ui.shown]
    out = handlers.on_options(ui, values(ui, sess, shown, entropy_filter=False))
    assert figures_in(ui, out) == {"main_map", "mid_map", "scales"}
    assert "Entropy filter off" in out[ui.main_map]


def test_head_options_before_any_analysis_change_nothing(ui):
    empty = Session(model_identity=Spec().identity())
    for change in ({"k": 2}, {"threshold": 0.1}, {"entropy_filter": False}, {"renormalize": True}):
        out = handlers.on_options(ui, values(ui, empty, {"x": 1}, **change))
        assert out == {ui.shown: {"x": 1}}  # a reply (no "not enough values"), and nothing else


def test_bad_upload_is_one_sentence_and_clears_the_pictures(ui, analysed, tmp_path):
    bad = tmp_path / "scan.png"
    bad.write_bytes(b"%PDF-1.4 not an image")
    out = handlers.on_upload(ui, values(ui, analysed[ui.session], analysed[ui.shown], upload=str(bad)),
                             progress=None)
    assert "hvl-error" in out[ui.decision] and "not an image this app can read" in out[ui.decision]
    assert all(out[f] == "" for f in ui.figures()) and out[ui.shown] == {}
    assert out[ui.status] == ""  # the message is in one place only


def test_duplicate_custom_classes_are_one_plain_sentence(ui, analysed):
    out = handlers.on_settings(ui, values(ui, analysed[ui.session], analysed[ui.shown], preset="custom",
                                          custom="melanoma, nevus, Melanoma"), progress=None)
    assert "only once" in out[ui.decision] and "[" not in out[ui.decision]


def test_unknown_class_message_is_short_and_the_placeholder_works():
    e = UnknownClassError("the medmnist-densenet121 backbone has no class 'scar'; it knows only its 24 MedMNIST "
                          "labels: adipose, background, debris, lymphocytes")
    msg = friendly_error(e)
    assert msg.count(".") == 1 and "'scar'" in msg and "adipose" not in msg
    label_only = SimpleNamespace(labels=("adipose", "melanoma", "melanocytic nevus", "dermatofibroma"))
    text = class_placeholder(label_only)
    assert "melanoma, melanocytic nevus, dermatofibroma" in text and "scar" not in text
    assert "scar" in class_placeholder(SimpleNamespace())  # a text tower takes any words


def test_medmnist_placeholder_classes_are_accepted():
    """The classes the placeholder offers for the label-only backbone are its labels."""
    from hvl_core.backbones.medmnist import MEDMNIST_LABELS

    text = class_placeholder(SimpleNamespace(labels=MEDMNIST_LABELS))
    names = text.removeprefix("e.g. ").split(" — ")[0].split(", ")
    assert names and all(n in MEDMNIST_LABELS for n in names)
