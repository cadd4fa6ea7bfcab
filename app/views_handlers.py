"""Handlers of the teaching and comparison views (module-level functions of a ``Views`` — their
components — and the main ``UI``, returning ``{component: value}``):

- ``on_insight``: after each analysis, the score distribution among the reference images and
  scale 0 alone beside the fused verdict (the head only; never the image's encoder);
- ``on_step``: the teaching step picked, with this image's numbers;
- ``on_compare``: two images analysed with the page's settings, side by side;
- ``on_batch`` / ``on_batch_threshold`` / ``on_batch_csv``: the batch tab — encode once, then
  re-decide the whole table for any threshold with the head alone.

As in ``app.handlers``, no exception reaches Gradio: a failure is one sentence in the view.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

from . import batch as bt
from . import figures, views
from .deciding import own_threshold, probe_threshold, start_threshold
from .handlers import check_settings
from .messages import friendly_error, unseen_examples
from .presenting import UI, context
from .reference import PRESET_ID_KIND, ReferenceSet, id_kind_for
from .service import USER_ERRORS, Session, UserError
from .tabs import BatchTab, CompareTab
from .teaching import STEP_TITLES, teaching_steps

log = logging.getLogger(__name__)

NO_BATCH = "Upload several images, or a zip of them, and press Analyse batch."


@dataclass(repr=False)
class Views:
    """The components of the teaching and comparison views."""

    reference: ReferenceSet
    distribution: gr.HTML
    single: gr.HTML
    step: gr.Radio
    step_text: gr.Markdown
    compare: CompareTab
    batch: BatchTab


def _say(e: BaseException, what: str) -> str:
    if not isinstance(e, USER_ERRORS + (ValueError,)):
        log.exception("%s failed", what)
    return friendly_error(e)


# --------------------------------------------------------------------------- this image


def on_insight(ui: UI, v: Views, values: dict) -> dict:
    """The distribution and single-scale views of the session's prediction."""
    sess: Session = values[ui.session]
    pred = sess.prediction if sess else None
    if pred is None:
        return {v.distribution: "", v.single: ""}
    out = {v.single: views.single_scale_html(pred)}
    try:
        s = ui.controls.read(values)
        model = ui.service.model(sess.spec)
        ref = v.reference.scores(
            model,
            pred,
            id_kind_for(sess.spec, model),
            k=pred.k,
            entropy_filter=s.entropy_filter,
            renormalize=s.renormalize,
        )
        out[v.distribution] = views.distribution_html(ref, pred, unseen_examples(ui.examples, model.backbone))
    except Exception as e:  # noqa: BLE001
        out[v.distribution] = views.waiting_html(f"No score distribution: {_say(e, 'the reference set')}")
    return out


def on_step(ui: UI, v: Views, values: dict) -> dict:
    """The text of the teaching step picked (0 or none: nothing), for the session's prediction."""
    sess: Session = values[ui.session]
    step = int(values.get(v.step) or 0)
    if not step:
        return {v.step_text: ""}
    if sess is None or sess.prediction is None:
        return {v.step_text: f"**{step}. {STEP_TITLES[step]}.** Analyse an image to see this step with its numbers."}
    s = ui.controls.read(values)
    model = ui.service.model(sess.spec)
    text = dict((i, (t, md)) for i, t, md in teaching_steps(sess.prediction, context(sess, model, s)))
    title, md = text[step]
    return {v.step_text: f"**{step} of {len(text)}. {title}.** {md}"}


# --------------------------------------------------------------------------- compare


def _source(example: str | None, upload: str | None, examples: list[dict]) -> tuple[str, str] | None:
    if upload:
        return upload, Path(upload).name
    for e in examples:
        if example and Path(e["path"]).name == example:
            return e["path"], example
    return None


def compare_default(examples: list[dict], preset: str | None, current: str | None) -> str | None:
    """Image A for the class set ``preset``: the first example of its known kind (skin for the
    dermatology classes, H&E for the tissue ones). A picked example of another kind stays."""
    kind = PRESET_ID_KIND.get(preset or "")
    names = {Path(e["path"]).name: e["kind"] for e in examples}
    if current and names.get(current) not in PRESET_ID_KIND.values():
        return current  # an out-of-domain or failure example the user picked: keep it
    pick = next((Path(e["path"]).name for e in examples if e["kind"] == kind), None)
    return pick or current or next(iter(names), None)


def on_compare(ui: UI, v: Views, values: dict) -> dict:
    """Both images analysed with the page's class set, checkpoint, n and head options."""
    s = ui.controls.read(values)
    sides = []
    try:
        check_settings(s)
        spec, ck = ui.service.spec(s.preset, s.custom, s.checkpoint, s.n, s.backbone)
        for title, ex, up in (
            ("Image A", values[v.compare.a], values[v.compare.a_file]),
            ("Image B", values[v.compare.b], values[v.compare.b_file]),
        ):
            src = _source(ex, up, ui.examples)
            if src is None:
                raise UserError("pick an example or upload an image for both sides")
            sess = ui.service.load(src[0], previous=Session(model_identity=spec.identity()), name=src[1])
            thr = s.threshold
            sess, pred, model, _ = ui.service.analyse(
                sess, spec, ck, thr, s.k, s.entropy_filter, s.renormalize, score=s.score
            )
            thumb = figures.thumbnail_html(sess.loaded, sess.name, model.backbone.image_size)
            sides.append(
                views.compare_side_html(
                    f"{title}: {src[1]}", pred, thumb, figures.entropy_html(pred, 2, s.entropy_filter)
                )
            )
    except Exception as e:  # noqa: BLE001
        from .decision import error_html

        return {v.compare.out: error_html(_say(e, "comparison"))}
    return {v.compare.out: views.compare_html(sides)}


# --------------------------------------------------------------------------- batch


def _batch_outputs(v: Views, model, batch: bt.Batch, threshold: float) -> dict:
    name = views.score_noun(batch.predictions[0]) if batch.predictions else "score"
    sentence = bt.flips_sentence(batch, threshold)
    rng = batch.predictions[0].score_range if batch.predictions else (0.0, 1.0)
    return {
        v.batch.state: batch,
        v.batch.table: bt.rows(batch),
        v.batch.hist: views.histogram_html([p.score for p in batch.predictions], threshold, rng, name, sentence),
        v.batch.summary: sentence,
    }


def analyse_batch(service, s, files) -> tuple[bt.Batch, object]:
    """Read, encode and decide a batch with the page's settings: its class set, head options and
    decision score, at the model's threshold for that score (to the table's decimals, so the slider,
    the table and the CSV show the threshold the table was decided at); where the model has none
    for the score, just under the batch's median score."""
    check_settings(s)
    spec, ck = service.spec(s.preset, s.custom, s.checkpoint, s.n, s.backbone)
    model = service.model(spec, ck)
    score = s.score or model.score_name
    own = own_threshold(model, score)
    items = bt.read_uploads(files)
    batch = bt.encode(model, items)
    options = dict(
        k=max(1, min(int(s.k), 4 * model.n**2)), entropy_filter=s.entropy_filter, renormalize=s.renormalize, score=score
    )
    batch = replace(batch, spec=spec, options=options)
    if own is None:
        probe = bt.decide(model, batch, probe_threshold(model, score))
        threshold = start_threshold([p.score for p in probe.predictions] or [probe_threshold(model, score)])
    else:
        threshold = round(own, bt.TABLE_DIGITS)
    return bt.decide(model, replace(batch, analysed_threshold=threshold), threshold), model


def on_batch(ui: UI, v: Views, values: dict, progress=gr.Progress()) -> dict:
    s = ui.controls.read(values)
    try:
        batch, model = analyse_batch(ui.service, s, values[v.batch.files])
    except Exception as e:  # noqa: BLE001
        msg = _say(e, "batch")
        return {
            v.batch.summary: f"**Could not analyse the batch:** {msg}",
            v.batch.table: None,
            v.batch.hist: "",
            v.batch.state: None,
            v.batch.csv: None,
        }
    t = batch.analysed_threshold
    lo, hi = views.score_axis(
        [p.score for p in batch.predictions], batch.predictions[0] if batch.predictions else (0.0, 1.0), t
    )
    lo, hi, step = bt.slider_range(lo, hi)
    return {
        **_batch_outputs(v, model, batch, t),
        v.batch.csv: None,
        v.batch.threshold: gr.update(minimum=lo, maximum=hi, value=t, step=step),
    }


def on_batch_threshold(ui: UI, v: Views, batch: bt.Batch | None, threshold) -> dict:
    """A threshold move: the head alone re-decides the whole table on the cached encodings."""
    if not batch or threshold is None:
        return {}
    try:
        model = ui.service.model(batch.spec)
        batch = bt.decide(model, batch, float(threshold))
        return _batch_outputs(v, model, batch, float(threshold))
    except Exception as e:  # noqa: BLE001
        return {v.batch.summary: f"**Could not re-decide:** {_say(e, 'batch threshold')}"}


def on_batch_csv(v: Views, batch: bt.Batch | None) -> dict:
    if not batch:
        return {v.batch.summary: NO_BATCH}
    return {v.batch.csv: bt.write_csv(batch)}
