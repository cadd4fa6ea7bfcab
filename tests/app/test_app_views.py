"""The teaching and comparison views: scale 0 alone against the fused verdict (hand-computed
cases), the reference set and its distribution, the batch (zip limits, no extraction, re-decision
without the encoder, flips, CSV), the comparison, the teaching steps for every score."""

from __future__ import annotations

import csv
import io
import math
import re
import zipfile
from dataclasses import fields
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from app import batch as bt
from app import handlers, views
from app import views_handlers as vh
from app.examples import load_examples
from app.headless import stub_ui, stub_views
from app.reference import ReferenceSet, id_kind_for
from app.service import ModelService, Session, Spec, UserError
from app.settings import Settings
from app.single_scale import scale_terms, single_scale, single_scale_sentence
from app.teaching import Context, teaching_steps

ROOT = Path(__file__).resolve().parents[2]
ASSETS = ROOT / "assets"
SKIN = ASSETS / "skin_nevus_closeup.jpg"
OOD = ASSETS / "ood_ct_vertebra.png"


def fake_pred(p0, p1, p2, threshold, classes=("a", "b")):
    """A prediction with MSP as its score, made by hand."""
    p0, p1, p2 = (np.asarray(p, float) for p in (p0, p1, p2))
    p_id = (p0 + p1 + p2) / 3
    c = int(np.argmax(p_id))
    return SimpleNamespace(
        p0=p0,
        p1=p1,
        p2=p2,
        p_id=p_id,
        class_index=c,
        label=classes[c],
        classes=list(classes),
        score=float(p_id[c]),
        msp=float(p_id[c]),
        threshold=threshold,
        known=float(p_id[c]) >= threshold,
        score_name="msp",
        scale_scores=None,
        score0=float(p0.max()),
        score_range=(0.0, 1.0),
    )


# --------------------------------------------------------------------------- scale 0 vs HVL


def test_high_scale_changes_the_answer():
    # class a: p0 0.40 (under 0.5), p1 0.50, p2 0.90 → p_ID 0.60 ≥ 0.5: the high scale lifts it
    pred = fake_pred([0.40, 0.30], [0.50, 0.20], [0.90, 0.05], threshold=0.5)
    ss = single_scale(pred)
    assert ss.score0 == pytest.approx(0.40) and not ss.known0 and ss.label0 == "a"
    assert ss.terms == pytest.approx((0.40, 0.50, 0.90)) and pred.known
    assert ss.changed and ss.movers == (1, 2)
    text = single_scale_sentence(pred, ss)
    assert "0.400" in text and "0.600" in text and "mid scale and high scale raised" in text


def test_fine_scales_can_reject_what_the_whole_image_accepts():
    # whole image 0.80 for a; mid 0.30, high 0.10 → p_ID(a) = 0.40 < 0.5
    pred = fake_pred([0.80, 0.10], [0.30, 0.20], [0.10, 0.30], threshold=0.5)
    ss = single_scale(pred)
    assert ss.known0 and not pred.known and ss.movers == (1, 2)
    assert "lowered" in single_scale_sentence(pred, ss)


def test_same_answer_is_said_so():
    pred = fake_pred([0.9, 0.1], [0.8, 0.1], [0.7, 0.1], threshold=0.5)
    ss = single_scale(pred)
    assert not ss.changed and ss.movers == ()
    assert "did not change the answer" in single_scale_sentence(pred, ss)


def test_class_change_is_a_change():
    # scale 0 picks b (0.6), fused picks a: (0.3 + 0.9 + 0.9)/3 = 0.7 vs b (0.6+0.05+0.05)/3
    pred = fake_pred([0.3, 0.6], [0.9, 0.05], [0.9, 0.05], threshold=0.5)
    ss = single_scale(pred)
    assert ss.known0 and pred.known and ss.label0 == "b" and pred.label == "a" and ss.changed
    assert "class changed" in single_scale_sentence(pred, ss)


@pytest.mark.parametrize("score,threshold", [("msp", None), ("energy", 0.0), ("maxlogit", 0.0)])
def test_scale_terms_average_to_the_score(tiny_model, score, threshold):
    enc = tiny_model.encode(np.full((64, 64, 3), 90, np.uint8))
    pred = tiny_model.decide(enc, threshold=threshold, score=score)
    assert float(np.mean(scale_terms(pred))) == pytest.approx(pred.score, rel=1e-5, abs=1e-6)
    steps = dict((i, md) for i, _, md in teaching_steps(pred, Context()))
    name = {"msp": "MSP", "energy": "energy score", "maxlogit": "max-logit score"}[score]
    assert name in steps[6] and f"{pred.score:.3f}" in steps[6]
    assert ("Verdict: **Known: " in steps[6]) == pred.known
    html = views.single_scale_html(pred)
    assert f"data-changed='{int(single_scale(pred).changed)}'" in html


# --------------------------------------------------------------------------- axes and histogram


def test_axis_positions_and_histogram_by_hand():
    assert views.score_axis([0.2, 0.9], (0.0, 1.0), 0.5) == (0.0, 1.0)
    lo, hi = views.score_axis([-10.0, -6.0], (None, None), -8.0)  # unbounded: the values ± 5%
    assert (lo, hi) == pytest.approx((-10.2, -5.8))
    assert views.position(0.25, 0.0, 1.0) == 25.0 and views.position(2.0, 0.0, 1.0) == 100.0
    counts, edges = views.histogram_counts([0.05, 0.1, 0.55, 0.95, 1.0], 0.5, 0.0, 1.0, bins=4)
    assert counts.tolist() == [2, 0, 1, 2] and edges.tolist() == [0.0, 0.25, 0.5, 0.75, 1.0]
    html = views.histogram_html([0.05, 0.95], 0.5, (0.0, 1.0), "MSP", "s")
    assert "left:50.0%" in html and html.count("hvl-hist-bar") == views.HIST_BINS
    assert "known (≥ threshold)" in html and "unknown (below it)" in html  # a legend


def test_histogram_bins_never_straddle_the_threshold():
    # 0.6 is no edge of 4 equal bins over [0, 1]: the edges shift so that it is one
    counts, edges = views.histogram_counts([0.05, 0.1, 0.55, 0.59, 0.6, 0.95, 1.0], 0.6, 0.0, 1.0, bins=4)
    assert 0.6 in edges.tolist() and edges[0] == 0.0 and edges[-1] == 1.0
    assert counts.sum() == 7 and counts[edges.tolist().index(0.6)] == 1  # 0.6 is known: in the bin from 0.6
    lo, hi, thr = -48.752989411354065, 5.23, -5.796
    scores = [-40.0, -5.8, -5.796, 3.0]
    html = views.histogram_html(scores, thr, (None, None), "energy")
    for a, b, colour in re.findall(r"title='(\S+)–(\S+): \d+' style='[^']*background:(#\w+)'", html):
        a, b = (float(x.replace("−", "-")) for x in (a, b))
        assert not a < thr < b and colour == (views.ID_COLOUR if a >= thr - 1e-9 else views.OOD_COLOUR)
    assert views.histogram_counts(scores, thr, lo, hi)[0].sum() == 4


def test_batch_slider_ends_are_round():
    assert bt.slider_range(-48.752989411354065, 5.23) == (-49.0, 5.5, 0.5)
    assert bt.slider_range(0.0, 1.0) == (0.0, 1.0, 0.01)
    lo, hi, step = bt.slider_range(-7.31234, -1.0987)
    assert lo <= -7.31234 and hi >= -1.0987 and len(str(lo)) <= 6 and len(str(hi)) <= 6 and step == 0.05


def test_examples_the_backbone_never_saw_are_not_known_id():
    """The header's "never seen" list and the reference groups come from the same facts."""
    from types import SimpleNamespace

    from app.messages import header_markdown, never_seen_items, unseen_examples
    from app.reference import ReferenceScores

    bb = SimpleNamespace(
        name="fake",
        kind="label-only",
        trained_on="dermoscopy",
        never_seen="radiology (CT, MRI, X-ray, ultrasound), clinical (non-dermoscopic) skin photos",
        note="",
    )
    assert never_seen_items(bb) == ["radiology (CT, MRI, X-ray, ultrasound)", "clinical (non-dermoscopic) skin photos"]
    examples = [
        {"path": "/a/skin_a.jpg", "kind": "skin", "imaging": "clinical (non-dermoscopic) skin photos"},
        {"path": "/a/skin_b.jpg", "kind": "skin", "imaging": ""},
        {"path": "/a/ood_ct.png", "kind": "ood", "imaging": "radiology (CT, MRI, X-ray, ultrasound)"},
    ]
    unseen = unseen_examples(examples, bb)
    assert unseen == {
        "skin_a.jpg": "clinical (non-dermoscopic) skin photos",
        "ood_ct.png": "radiology (CT, MRI, X-ray, ultrasound)",
    }
    assert "clinical (non-dermoscopic) skin photos" in header_markdown(bb)
    ref = ReferenceScores(("skin_a.jpg", "skin_b.jpg", "ood_ct.png"), ("skin", "skin", "ood"), (0.9, 0.8, 0.1), "skin")
    groups = views.reference_groups(ref, unseen)
    assert groups == [
        ("known (ID): skin photos", [0.8]),
        ("known classes, unseen imaging: clinical (non-dermoscopic) skin photos", [0.9]),
        ("unknown (OOD): the rest", [0.1]),
    ]
    assert views.reference_groups(ref, {}) == ref.groups()  # a backbone that lists nothing: as before
    # the shipped manifest names the skin examples' imaging in the offline DenseNet's words
    from app.examples import load_examples
    from hvl_core.backbones.catalog import BY_NAME

    info = BY_NAME["medmnist-densenet121"]  # the catalog's facts, as the backbone reports them
    dense = SimpleNamespace(name=info.name, kind=info.kind, trained_on=info.trained_on, never_seen=info.never_seen)
    shipped = unseen_examples(load_examples(), dense)
    assert {n for n in shipped if n.startswith("skin_")} == {"skin_forearm_nevi.jpg", "skin_nevus_closeup.jpg"}


# --------------------------------------------------------------------------- batch


def zip_of(path: Path, members: dict[str, bytes]) -> str:
    with zipfile.ZipFile(path, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return str(path)


def test_zip_members_are_read_in_memory_by_base_name(tmp_path):
    z = zip_of(
        tmp_path / "b.zip",
        {
            "../../evil.png": OOD.read_bytes(),
            "dir/x.jpg": SKIN.read_bytes(),
            "notes.txt": b"hi",
            "__MACOSX/._x.jpg": b"junk",
        },
    )
    before = set(tmp_path.rglob("*"))
    items = bt.read_uploads([z, str(SKIN)])
    assert [n for n, _ in items] == ["evil.png", "x.jpg", SKIN.name]
    assert items[0][1] == OOD.read_bytes() and items[2][1] == str(SKIN)
    assert set(tmp_path.rglob("*")) == before  # nothing extracted


def test_batch_limits(tmp_path, monkeypatch):
    monkeypatch.setattr(bt, "MAX_BATCH_IMAGES", 2)
    with pytest.raises(UserError, match="at most 2 images"):
        bt.read_uploads([str(SKIN)] * 3)
    monkeypatch.setattr(bt, "MAX_BATCH_IMAGES", 32)
    monkeypatch.setattr(bt, "MAX_BATCH_BYTES", 30_000)  # the OOD png (8.8 kB) fits, two skins (23 kB each) do not
    z = zip_of(tmp_path / "big.zip", {"a.jpg": SKIN.read_bytes(), "b.jpg": SKIN.read_bytes()})
    with pytest.raises(UserError, match="MB of images"):
        bt.read_uploads([z])
    bad = tmp_path / "bad.zip"
    bad.write_bytes(b"PK\x03\x04 not a zip")
    with pytest.raises(UserError, match="not a readable zip"):
        bt.read_uploads([str(bad)])
    with pytest.raises(UserError, match="upload images"):
        bt.read_uploads([])


def test_flips_by_hand():
    preds = [
        SimpleNamespace(score=s, known=s >= 0.6, outcome="known" if s >= 0.6 else "unknown", deciding_p_value=None)
        for s in (0.2, 0.45, 0.55, 0.7)
    ]
    # out of scope: no threshold makes it known, so it never flips
    preds.append(SimpleNamespace(score=0.5, known=False, outcome="out of scope", deciding_p_value=None))
    b = bt.Batch(names=list("abcde"), encoded=[None] * 5, analysed_threshold=0.5, predictions=preds)
    assert bt.flips(b, 0.6) == (1, 0)  # 0.55 goes known → unknown
    assert bt.flips(b, 0.4) == (0, 1)  # 0.45 goes unknown → known
    assert "1 flip (1 known → unknown, 0 unknown → known)" in bt.flips_sentence(b, 0.6)


# --------------------------------------------------------------------------- handlers


@pytest.fixture(scope="module")
def env(tiny_backbone):
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    examples = load_examples()
    return stub_ui(svc, examples), stub_views(ReferenceSet(examples))


def values(ui, session=None, **settings):
    s = Settings(**{"threshold": 0.5, **settings})
    out = {getattr(ui.controls, f.name): getattr(s, f.name) for f in fields(Settings)}
    return {**out, ui.session: session or Session(model_identity=Spec().identity()), ui.shown: {}, ui.upload: None}


def test_insight_scores_the_reference_set_once(env):
    ui, v = env
    out = handlers.on_upload(ui, {**values(ui), ui.upload: str(SKIN)}, progress=None)
    sess = out[ui.session]
    res = vh.on_insight(ui, v, values(ui, sess))
    model = ui.service.model(sess.spec)
    assert v.reference.encode_calls == 1 and id_kind_for(sess.spec, model) == "skin"
    ref = v.reference.scores(
        model, sess.prediction, "skin", k=sess.prediction.k, entropy_filter=True, renormalize=False
    )
    skins = [e for e in ui.examples if e["kind"] == "skin"]
    assert len(ref.groups()[0][1]) == len(skins) and len(ref.scores) == len(ui.examples)
    # each reference score is what the model gives that image alone
    first = model.predict(ui.examples[0]["path"], threshold=0.5)
    assert ref.scores[0] == pytest.approx(first.score, abs=1e-5)
    assert "distribution-fig" in res[v.distribution] and "single-scale-fig" in res[v.single]
    assert f"above {sum(s < sess.prediction.score for s in ref.groups()[0][1])} of {len(skins)}" in res[v.distribution]
    vh.on_insight(ui, v, values(ui, sess, threshold=0.7))
    assert v.reference.encode_calls == 1  # a re-decision never re-encodes the reference set
    assert vh.on_insight(ui, v, values(ui)) == {v.distribution: "", v.single: ""}  # nothing analysed yet


def test_step_text_has_this_images_numbers(env):
    ui, v = env
    out = handlers.on_upload(ui, {**values(ui), ui.upload: str(SKIN)}, progress=None)
    sess = out[ui.session]
    text = vh.on_step(ui, v, {**values(ui, sess), v.step: 4})[v.step_text]
    c = sess.prediction.class_index
    assert text.startswith("**4 of 7. The fused score.**") and f"{sess.prediction.p_id[c]:.3f}" in text
    assert vh.on_step(ui, v, {**values(ui, sess), v.step: 0})[v.step_text] == ""
    assert "Analyse an image" in vh.on_step(ui, v, {**values(ui), v.step: 3})[v.step_text]


def test_batch_encodes_once_and_redecides_with_the_head(env, tmp_path, monkeypatch):
    ui, v = env
    monkeypatch.setenv("GRADIO_TEMP_DIR", str(tmp_path / "gradio"))
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not an image")
    z = zip_of(tmp_path / "x.zip", {"inner/ct.png": OOD.read_bytes()})
    out = vh.on_batch(ui, v, {**values(ui), v.batch.files: [str(SKIN), str(bad), z]}, progress=None)
    batch = out[v.batch.state]
    assert [r[0] for r in out[v.batch.table]] == [SKIN.name, "bad.png", "ct.png"]
    assert out[v.batch.table][1][1].startswith("not read:") and len(batch.predictions) == 2
    model = ui.service.model(batch.spec)
    # the threshold just above the first score: it flips to unknown, and the encoder never runs
    monkeypatch.setattr(type(model), "encode_batch", lambda *a, **k: pytest.fail("re-encoded"))
    s0 = batch.predictions[0].score
    t = min(s0 + 1e-4, 1.0)
    res = vh.on_batch_threshold(ui, v, batch, t)
    assert res[v.batch.table][0][3] == "unknown"
    expected = sum(p.score >= batch.analysed_threshold and p.score < t for p in batch.predictions)
    assert f"{expected} known → unknown" in res[v.batch.summary]
    path = vh.on_batch_csv(v, res[v.batch.state])[v.batch.csv]
    assert Path(path).is_relative_to(tmp_path / "gradio")
    rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    assert rows[0] == bt.CSV_COLUMNS and rows[1][0] == SKIN.name and rows[1][5] == "unknown"
    # the score's name and the threshold beside each score, as the /batch endpoint gives them
    p0 = res[v.batch.state].predictions[0]
    assert rows[1][3] == p0.score_name and float(rows[1][4]) == pytest.approx(t) and float(rows[1][2]) == p0.score
    # the table: every number with the same three decimals
    assert all(re.fullmatch(r"-?\d+\.\d{3}", c) for r in res[v.batch.table] for c in (r[2], r[4]) if c is not None)


@pytest.mark.parametrize("score", ["msp", "energy"])
def test_batch_decides_with_the_pages_score_at_a_round_threshold(env, score):
    """The batch follows the page's decision score (not the model's default), at the model's
    threshold for that score rounded to the table's decimals, or, where it has none, just under
    the batch's median score: the slider shows what decided."""
    from app.deciding import own_threshold

    ui, v = env
    model = ui.service.model(Spec())
    out = vh.on_batch(
        ui, v, {**values(ui, score=score), v.batch.files: [str(SKIN), str(OOD), str(SKIN)]}, progress=None
    )
    batch = out[v.batch.state]
    assert {p.score_name for p in batch.predictions} == {score}
    own = own_threshold(model, score)
    scores = sorted(p.score for p in batch.predictions)
    expected = round(own, bt.TABLE_DIGITS) if own is not None else math.floor(scores[1] * 100) / 100
    assert all(p.threshold == pytest.approx(expected) for p in batch.predictions)
    assert out[v.batch.threshold]["value"] == pytest.approx(expected) and abs(expected - round(expected, 3)) < 1e-12
    res = vh.on_batch_threshold(ui, v, batch, expected + 0.5)  # a move keeps the score
    assert {p.score_name for p in res[v.batch.state].predictions} == {score}


def test_batch_failure_is_one_sentence(env):
    ui, v = env
    out = vh.on_batch(ui, v, {**values(ui), v.batch.files: []}, progress=None)
    assert out[v.batch.summary].startswith("**Could not analyse the batch:**") and out[v.batch.state] is None
    assert vh.on_batch_threshold(ui, v, None, 0.3) == {}


def test_compare_two_images(env):
    ui, v = env
    names = [Path(e["path"]).name for e in ui.examples]
    out = vh.on_compare(
        ui,
        v,
        {**values(ui), v.compare.a: names[0], v.compare.a_file: None, v.compare.b: None, v.compare.b_file: str(OOD)},
    )
    html = out[v.compare.out]
    assert html.count("hvl-compare-side") == 2 and html.count("hvl-decision") == 2 and "entropy-high-fig" in html
    assert f"Image A: {names[0]}" in html and f"Image B: {OOD.name}" in html
    none = vh.on_compare(
        ui, v, {**values(ui), v.compare.a: None, v.compare.a_file: None, v.compare.b: None, v.compare.b_file: None}
    )
    assert "hvl-error" in none[v.compare.out] and "both sides" in none[v.compare.out]


def test_energy_single_scale_by_hand():
    # energy terms −6, −4, −3 → fused −13/3 ≈ −4.333 ≥ −4.5, while scale 0 alone (−6) is under it
    pred = fake_pred([0.5, 0.5], [0.5, 0.5], [0.5, 0.5], threshold=-4.5)
    pred.score_name, pred.scale_scores, pred.score, pred.score_range = (
        "energy",
        (-6.0, -4.0, -3.0),
        -13 / 3,
        (None, None),
    )
    pred.score0 = pred.scale_scores[0]  # the core's scale-0 score is the first term
    pred.known = True
    ss = single_scale(pred)
    assert ss.score0 == -6.0 and not ss.known0 and ss.movers == (1, 2)
    assert "energy score -6.000" in single_scale_sentence(pred, ss) and "-4.333" in single_scale_sentence(pred, ss)
    lo, hi = views.score_axis([-6.0, -4.0, -3.0], pred, -4.5)
    assert lo == pytest.approx(-6.15) and hi == pytest.approx(-2.85)


def test_groups_without_a_known_kind():
    from app.reference import ReferenceScores

    ref = ReferenceScores(names=("a", "b", "c"), kinds=("skin", "ood", "skin"), scores=(0.1, 0.2, 0.3), id_kind=None)
    assert ref.groups() == [("skin photos", [0.1, 0.3]), ("other modalities", [0.2])]
    ided = ReferenceScores(ref.names, ref.kinds, ref.scores, id_kind="skin")
    assert [g for g, _ in ided.groups()] == ["known (ID): skin photos", "unknown (OOD): the rest"]
    assert ided.groups()[1][1] == [0.2]
    html = views.distribution_html(ref, fake_pred([0.6, 0.4], [0.6, 0.4], [0.6, 0.4], threshold=0.5))
    assert "grouped by kind" in html and html.count("hvl-dot") == 3
