"""The app's handlers without a browser: a UI of stand-in components (handlers only use them as
keys), the real model service. What each re-decision sends back, that nothing runs before an
analysis, and that failures become one sentence."""

from __future__ import annotations

import math
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import pytest

from app import handlers
from app.examples import load_examples
from app.headless import stub_ui
from app.messages import class_placeholder, friendly_error
from app.service import ModelService, Session, Spec
from app.settings import Settings
from hvl_core.backbones import UnknownClassError
from hvl_core.checkpoint import load_checkpoint, shipped_checkpoint

ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"


@pytest.fixture(scope="module")
def ui(tiny_backbone):
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    return stub_ui(svc, load_examples())


def values(ui, session, shown=None, upload=None, **settings):
    s = Settings(**{"threshold": 0.5, **settings})
    v = {getattr(ui.controls, f.name): getattr(s, f.name) for f in fields(Settings)}
    return {**v, ui.session: session, ui.shown: shown or {}, ui.upload: upload}


def figures_in(ui, out) -> set[str]:
    return {c.name for c in out if c in ui.figures()}


@pytest.fixture
def analysed(ui):
    out = handlers.on_upload(
        ui, values(ui, Session(model_identity=Spec().identity()), upload=str(EXAMPLE)), progress=None
    )
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
    out = handlers.on_upload(ui, values(ui, analysed[ui.session], analysed[ui.shown], upload=str(bad)), progress=None)
    assert "hvl-error" in out[ui.decision] and "not an image this app can read" in out[ui.decision]
    assert all(out[f] == "" for f in ui.figures()) and out[ui.shown] == {}
    assert out[ui.status] == ""  # the message is in one place only


def test_duplicate_custom_classes_are_one_plain_sentence(ui, analysed):
    out = handlers.on_settings(
        ui,
        values(ui, analysed[ui.session], analysed[ui.shown], preset="custom", custom="melanoma, nevus, Melanoma"),
        progress=None,
    )
    assert "only once" in out[ui.decision] and "[" not in out[ui.decision]


def test_unknown_class_message_is_short_and_the_placeholder_works():
    e = UnknownClassError(
        "the medmnist-densenet121 backbone has no class 'scar'; it knows only its 24 MedMNIST "
        "labels: adipose, background, debris, lymphocytes"
    )
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


def test_score_change_redecides_in_the_new_units_without_encoding(ui, analysed, tiny_backbone, monkeypatch):
    """tiny-clip-random has no measured max-logit threshold: the slider starts at the image's own
    score, in max-logit units, over a window around it; the encoder does not run."""
    calls = []
    monkeypatch.setattr(tiny_backbone, "encode_image", lambda x: calls.append(x) or None)
    sess, shown = analysed[ui.session], analysed[ui.shown]
    out = handlers.on_score(ui, values(ui, sess, shown, score="maxlogit"))
    assert ui.session in out, out.get(ui.decision)
    pred = out[ui.session].prediction
    assert calls == [] and pred.score_name == "maxlogit"
    assert pred.threshold == math.floor(pred.score * 100) / 100  # just under the score, on the slider's steps
    assert pred.known and "max-logit" in out[ui.decision] and "set it yourself" in out[ui.decision]
    slider = out[ui.controls.threshold]
    assert slider["label"] == "Threshold (max-logit units)" and slider["value"] == pred.threshold
    assert slider["minimum"] <= pred.score - 5 and slider["maximum"] >= pred.score + 5
    assert out[ui.shown]["threshold_units"] == "maxlogit"
    # a threshold in these units, above the score: unknown; the slider's range stays put
    again = handlers.on_options(
        ui, values(ui, out[ui.session], out[ui.shown], score="maxlogit", threshold=pred.score + 1.0)
    )
    assert not again[ui.session].prediction.known and ui.controls.threshold not in again
    # back to MSP: its default threshold and the 0–1 slider
    back = handlers.on_score(ui, values(ui, again[ui.session], again[ui.shown], score="msp"))
    assert back[ui.controls.threshold]["minimum"] == 0 and back[ui.controls.threshold]["maximum"] == 1
    assert back[ui.session].prediction.threshold == pytest.approx(0.5)


def test_the_slider_at_the_models_own_threshold_keeps_its_source(ui, analysed):
    """An upload with the slider untouched is decided at the model's threshold, said as such (not
    "set by you"); a moved slider is the user's."""
    pred = analysed[ui.session].prediction
    assert pred.threshold == 0.5 and pred.threshold_source == "default"
    assert "set by you" not in analysed[ui.decision] and "neutral default" in analysed[ui.decision]
    out = handlers.on_options(ui, values(ui, analysed[ui.session], analysed[ui.shown], threshold=0.45))
    assert out[ui.session].prediction.threshold_source == "given" and "set by you" in out[ui.decision]


def test_threshold_outside_the_score_range_is_one_sentence(ui, analysed):
    sess, shown = analysed[ui.session], analysed[ui.shown]
    # outside the slider's window, typed in its units: a sentence beside the slider, the verdict kept
    out = handlers.on_options(ui, values(ui, sess, shown, threshold=1.5))
    assert set(out) == {ui.threshold_note, ui.shown} and ui.decision not in out
    note = out[ui.threshold_note]
    assert note.startswith("1.5 is outside this slider (") and "MSP, 0 to 1" in note and note.count(". ") == 0
    assert f"keeps the threshold {sess.prediction.threshold:.3f}" in note
    # the next value applied takes the sentence away
    again = handlers.on_options(ui, values(ui, sess, out[ui.shown], threshold=0.2))
    assert again[ui.threshold_note] == "" and again[ui.session].prediction.threshold == pytest.approx(0.2)
    # a value in another score's units that arrived late (the slider shows those units no more): ignored
    stale = {**shown, "threshold_units": "energy"}
    assert handlers.on_options(ui, values(ui, sess, stale, threshold=1.5)) == {ui.shown: stale}
    # without a window (nothing drawn yet), the score's own range decides, in one sentence
    out = handlers.on_options(ui, values(ui, sess, {}, threshold=1.5))
    assert "hvl-error" in out[ui.decision] and "outside the range of the msp score" in out[ui.decision]
    assert "Traceback" not in out[ui.decision]


def test_typed_k_and_n_out_of_range_are_one_sentence_and_repeats_do_not_run(ui, analysed, monkeypatch):
    sess, shown = analysed[ui.session], analysed[ui.shown]
    out = handlers.on_options(ui, values(ui, sess, shown, k=99))
    assert set(out) == {ui.kn_note, ui.shown}
    assert (
        out[ui.kn_note]
        == "K is a whole number from 1 to 16 (the 4n² high-scale cells, n = 2): 99 is not applied, K stays 4."
    )
    out = handlers.on_n(ui, {**values(ui, sess, shown), ui.controls.n: 7}, progress=None)
    assert out[ui.kn_note] == "n is a whole number from 1 to 4: 7 is not applied, n stays 2."
    # the values the head last ran with (a key's .input, then the blur's .release): nothing runs
    monkeypatch.setattr(ui.service, "decide", lambda *a, **k: pytest.fail("decided twice"))
    same = sess.prediction.threshold
    assert handlers.on_options(ui, values(ui, sess, shown, threshold=same)) == {ui.shown: shown}
    assert handlers.on_n(ui, {**values(ui, sess, shown, threshold=same), ui.controls.n: 2}, progress=None) == {
        ui.shown: shown
    }
    # an emptied box while typing: nothing yet
    assert handlers.on_options(ui, {**values(ui, sess, shown), ui.controls.threshold: None}) == {ui.shown: shown}


def test_a_refused_value_puts_the_control_back_once_the_box_is_left(ui, analysed):
    """While typing (.input) a refused value only gets its sentence (the box is not rewritten under
    the cursor); leaving the box (.release, ``committed``) also puts the control back on the value
    in use, which the verdict keeps."""
    sess, shown = analysed[ui.session], analysed[ui.shown]
    pred = sess.prediction
    c = ui.controls
    for field, typed, control, in_use in (
        ("threshold", 999, c.threshold, pred.threshold),
        ("threshold", -5, c.threshold, pred.threshold),
        ("k", 99, c.k, pred.k),
        ("k", 0, c.k, pred.k),
    ):
        typing = handlers.on_options(ui, values(ui, sess, shown, **{field: typed}))
        assert control not in typing and ui.decision not in typing
        left = handlers.on_options(ui, values(ui, sess, shown, **{field: typed}), committed=True)
        assert left[control] == {"__type__": "update", "value": in_use}, (field, typed)
        assert ui.decision not in left and (left.get(ui.threshold_note) or left.get(ui.kn_note))
    out = handlers.on_n(ui, {**values(ui, sess, shown), c.n: 9}, progress=None, committed=True)
    assert out[c.n] == {"__type__": "update", "value": 2} and "n stays 2" in out[ui.kn_note]


def test_a_new_image_keeps_a_slider_value_in_its_units(ui, analysed):
    """After a score change, the next image is decided in that score with the slider's value."""
    sess, shown = analysed[ui.session], analysed[ui.shown]
    out = handlers.on_score(ui, values(ui, sess, shown, score="maxlogit"))
    thr = out[ui.session].prediction.threshold + 0.25
    new = handlers.on_upload(
        ui,
        values(ui, out[ui.session], out[ui.shown], upload=str(EXAMPLE), score="maxlogit", threshold=thr),
        progress=None,
    )
    pred = new[ui.session].prediction
    assert pred.score_name == "maxlogit" and pred.threshold == pytest.approx(thr) and pred.threshold_source == "given"


def test_score_before_any_analysis_moves_only_the_slider(ui):
    empty = Session(model_identity=Spec().identity())
    out = handlers.on_score(ui, values(ui, empty, {}, score="energy"))
    assert set(out) == {ui.controls.threshold, ui.shown} and "energy units" in out[ui.controls.threshold]["label"]


def test_a_click_on_the_slide_thumbnail_analyses_that_tile(ui, tmp_path):
    from tests.wsi_files import write_pyramid

    p = tmp_path / "slide.tiff"
    write_pyramid(p, 2048, 2048, mpp=0.5, levels=2)
    out = handlers.on_upload(ui, values(ui, Session(model_identity=Spec().identity()), upload=str(p)), progress=None)
    assert "<img class='hvl-slide'" in out[ui.thumbnail]
    sess = out[ui.session]
    click = SimpleNamespace(_data={"u": 0.25, "v": 0.75})
    picked = handlers.on_pick_tile(ui, values(ui, sess, out[ui.shown]), click, progress=None)
    slide = picked[ui.session].loaded.slide
    assert slide.tile_center == (512, 1536) and not slide.picked
    assert "centred at (512, 1536), where you clicked" in picked[ui.thumbnail]
    # clicks outside the picture, or without a position, change nothing
    for bad in ({"u": 1.5, "v": 0.2}, {"u": float("nan"), "v": 0.1}, {}):
        assert handlers.on_pick_tile(ui, values(ui, sess, {"k": 1}), SimpleNamespace(_data=bad), progress=None) == {
            ui.shown: {"k": 1}
        }


def test_failure_examples_pick_the_histology_classes(ui):
    fails = [i for i, it in enumerate(ui.examples) if it["kind"] == "failure"]
    assert len(fails) == 2 and all(ui.examples[i]["why"] for i in fails)
    item = ui.examples[fails[0]]
    out = handlers.on_example(
        ui, values(ui, Session(model_identity=Spec().identity())), SimpleNamespace(index=fails[0]), progress=None
    )
    assert out[ui.controls.preset] == item["preset"] == "histology-nct-crc"
    assert out[ui.session].prediction.classes[0] == "adipose"


def test_header_names_the_backbone_its_data_and_what_it_never_saw(tiny_backbone):
    from app.messages import header_markdown

    dense = SimpleNamespace(
        name="medmnist-densenet121", kind="label-only", trained_on="MedMNIST+ tissue", never_seen="radiology"
    )
    text = header_markdown(dense)
    assert "label-only (a classifier" in text and "trained on MedMNIST+ tissue" in text
    assert "never seen radiology" in text and "vision-language" not in text
    assert tiny_backbone.trained_on == "nothing: seeded random weights"  # the catalog's words
    text = header_markdown(tiny_backbone)
    assert (
        "vision-language (classes are text prompts)" in text
        and "seeded random weights" in text
        and "never seen" not in text
    )
    odd = SimpleNamespace(name="<b>x</b>", kind="vision-language", trained_on="", never_seen="")
    assert "<b>x</b>" not in header_markdown(odd) and "its training data is not recorded here" in header_markdown(odd)


def test_backbone_choices_are_labelled():
    from app.messages import backbone_choices
    from app.service import CHOOSABLE_BACKBONES

    choices = dict((v, label) for label, v in backbone_choices("tiny-clip-random", CHOOSABLE_BACKBONES))
    assert list(choices)[0] == "" and "this server's default" in choices[""] and "random" in choices[""]
    dense = choices["medmnist-densenet121"]
    assert "label-only" in dense and "MedMNIST" in dense and "its own labels only" in dense
    bio = choices["biomedclip"]
    assert "vision-language" in bio and "PMC-15M" in bio and "zero-shot" in bio
    assert "NON-COMMERCIAL" in choices["dermlip-b16"].upper()
    # the server's own backbone is not listed twice
    assert [v for _, v in backbone_choices("biomedclip", CHOOSABLE_BACKBONES)].count("biomedclip") == 0


def test_an_offline_backbone_choice_is_one_sentence(ui, analysed):
    built = dict(ui.service._backbones)
    out = handlers.on_settings(
        ui, values(ui, analysed[ui.session], analysed[ui.shown], backbone="clip-vit-b16"), progress=None
    )
    assert "hvl-error" in out[ui.decision] and "Cannot load clip-vit-b16" in out[ui.decision]
    assert "Traceback" not in out[ui.decision] and ui.service._backbones == built  # nothing kept
    bad = handlers.on_settings(
        ui, values(ui, analysed[ui.session], analysed[ui.shown], backbone="ViT-B-16:/etc/x"), progress=None
    )
    assert "unknown backbone" in bad[ui.decision] and "/etc/x" in bad[ui.decision]


def test_choosing_the_label_only_backbone_rebuilds_the_page(ui, analysed):
    """The offline DenseNet, chosen on the page: a model of its own (same bounded caches), the
    image re-encoded, and the header, model line and teaching words say label-only."""
    svc = ui.service
    calls = svc.encode_calls
    out = handlers.on_settings(
        ui, values(ui, analysed[ui.session], analysed[ui.shown], backbone="medmnist-densenet121"), progress=None
    )
    pred = out[ui.session].prediction
    assert pred.backbone == "medmnist-densenet121" and svc.encode_calls == calls + 1
    # its shipped checkpoint for the preset: the score and threshold calibrated on held-out sources
    shipped = load_checkpoint(shipped_checkpoint("medmnist-densenet121", "dermatology-isic4"))
    assert (
        pred.score_name == shipped.config.score and pred.threshold_source == "calibrated" and pred.p_value is not None
    )
    assert pred.scope is not None  # and its in-scope stage
    assert "Measured at the default threshold" in out[ui.header]
    assert "label-only" in out[ui.header] and "label-only" in out[ui.model_info]
    assert "zero-shot" not in out[ui.model_info] and "zero-shot" not in out[ui.teaching]
    assert "output row of each" in out[ui.teaching] and "text of each" not in out[ui.teaching]
    assert out[ui.controls.score]["value"] == shipped.config.score  # the control follows the checkpoint
    assert len(svc._backbones) <= svc.max_backbones
