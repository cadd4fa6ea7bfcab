"""The app's event handlers: module-level functions of the ``UI`` (every component they read or
write) and the values of its inputs, returning ``{component: value}`` for what changed.

- ``on_upload`` / ``on_example`` / ``on_rerun``: a new image or the Analyse button → encode
  (unless cached) and decide;
- ``on_settings``: class set, custom classes, checkpoint or n → re-run what it must (a class
  change re-uses the encoding);
- ``on_options``: threshold, K, entropy filter, renormalise → the head only, on the cached
  encoding; before any analysis it changes nothing;
- ``on_score``: the decision score → the head only, the threshold back to the model's own for
  that score, the slider in its units;
- ``on_pick_tile``: a click on a whole-slide image's thumbnail → the tile there, analysed.

The public ``/predict`` and ``/batch`` endpoints are in ``app.api``.

``present`` redraws only what changed: each output has a key (``app.figures.*_key``, or its
text), the keys shown are kept per session in ``UI.shown``, and an output whose key did not
change is left out of the reply. No handler lets an exception reach Gradio: a failure becomes
one short sentence in the decision panel, and the server keeps serving.
"""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace
from pathlib import Path

import gradio as gr

from hvl_core.presets import split_class_list

from . import decision as dec
from . import figures
from .decision import model_score_range, threshold_slider
from .messages import (
    class_placeholder,
    duplicate_classes,
    friendly_error,
    header_markdown,
    k_not_applied,
    model_markdown,
    n_not_applied,
    status_markdown,
    threshold_not_applied,
)
from .service import MAX_N, USER_ERRORS, ModelService, Session, UserError, has_threshold
from .settings import Controls, Settings
from .teaching import Context, teaching_markdown

log = logging.getLogger(__name__)

KIND_PRESET = {"skin": "dermatology-isic4", "histology": "histology-nct-crc"}
NO_IMAGE = "Upload an image first (PNG, JPEG, TIFF, BMP or WebP), or click an example."


@dataclass(repr=False)
class UI:
    """The components the handlers read and write, and what they run on."""

    service: ModelService
    examples: list[dict]
    session: gr.State  # Session: the image and its cached encoding
    shown: gr.State  # {output name: key} of what the page shows now
    controls: Controls
    upload: gr.File
    gallery: gr.Gallery
    decision: gr.HTML
    top: gr.Label
    status: gr.Markdown
    model_info: gr.Markdown
    thumbnail: gr.HTML
    main_map: gr.HTML  # the high-scale entropy map, beside the verdict
    mid_map: gr.HTML
    gain_map: gr.HTML
    class_map: gr.HTML
    scales: gr.HTML
    teaching: gr.Markdown
    header: gr.Markdown | None = None  # names the backbone, its training data, what it never saw
    threshold_note: gr.Markdown | None = None  # a typed threshold the page cannot apply: why
    kn_note: gr.Markdown | None = None  # a typed K or n the page cannot apply: why

    def figures(self) -> list:
        return [self.thumbnail, self.main_map, self.mid_map, self.gain_map, self.class_map, self.scales]

    def inputs(self) -> set:
        """Every handler gets one dict of these (gradio passes a set of inputs as ``{component: value}``)."""
        return {self.session, self.shown, self.upload, *self.controls.components()}

    def outputs(self) -> list:
        c = self.controls
        return [
            self.session,
            self.shown,
            self.decision,
            self.top,
            self.status,
            self.model_info,
            *self.figures(),
            self.teaching,
            c.threshold,
            c.k,
            c.custom,
            self.upload,
            c.preset,
            *(x for x in (c.score, self.header, self.threshold_note, self.kn_note) if x is not None),
        ]

    def bind(self, handler):
        """``handler(ui, values, ...)`` as the event function (gradio still sees its
        ``gr.Progress`` / ``gr.SelectData`` parameters)."""
        return functools.partial(handler, self)


# --------------------------------------------------------------------------- presenting


def context(sess: Session, model, s: Settings, pred=None) -> Context:
    pred = pred if pred is not None else sess.prediction
    return Context(
        original_size=sess.loaded.original_size if sess.loaded else None,
        image_notes=list(sess.loaded.notes) if sess.loaded else [],
        backbone=model.backbone.describe(),
        image_size=model.backbone.image_size,
        entropy_filter=s.entropy_filter,
        renormalize=s.renormalize,
        calibrated=model.calibrated,
        checkpoint=model.checkpoint,
        detail=model.detail,
        similarity=model.head.config.similarity,
        class_bias=model.logit_bias is not None,
        kind=getattr(model.backbone, "kind", "vision-language"),
        threshold_measured=pred is None or has_threshold(model, pred.score_name),
    )


def present(ui: UI, sess: Session, shown: dict | None, pred, model, s: Settings, reset: bool = False) -> dict:
    """The outputs for a prediction: only those whose key differs from what is shown."""
    shown = dict(shown or {})
    out = {ui.session: sess}

    def put(component, name, key, draw):
        if shown.get(name) != key:
            out[component] = draw()
            shown[name] = key

    note = dec.threshold_note(pred, has_threshold(model, pred.score_name))
    # the threshold slider and the verdict bar cover the same stretch of the score
    current = shown.get("window") if shown.get("threshold_units") == pred.score_name and not reset else None
    window = dec.score_window(pred.score_range, (pred.score, pred.threshold), current)
    put(
        ui.decision,
        "decision",
        (pred.label, pred.score, pred.score_name, pred.threshold, pred.known, note, window),
        lambda: dec.decision_html(pred, note, window),
    )
    top = dec.top_classes(pred)
    put(ui.top, "top", tuple(top.items()), lambda: top)
    status = status_markdown(sess, pred)
    put(ui.status, "status", status, lambda: status)
    info = model_markdown(model)
    put(ui.model_info, "model", info, lambda: info)
    hint = class_placeholder(model.backbone)  # a label-only backbone takes only its labels
    put(ui.controls.custom, "placeholder", hint, lambda: gr.update(placeholder=hint))
    put(
        ui.thumbnail,
        "thumbnail",
        figures.thumbnail_key(sess.loaded, sess.name),
        lambda: figures.thumbnail_html(sess.loaded, sess.name, model.backbone.image_size),
    )
    put(
        ui.main_map,
        "main",
        figures.entropy_key(pred, 2, s.entropy_filter),
        lambda: figures.entropy_html(pred, 2, s.entropy_filter),
    )
    put(
        ui.mid_map,
        "mid",
        figures.entropy_key(pred, 1, s.entropy_filter),
        lambda: figures.entropy_html(pred, 1, s.entropy_filter),
    )
    put(ui.gain_map, "gain", figures.gain_key(pred), lambda: figures.gain_html(pred))
    put(ui.class_map, "classes", figures.classes_key(pred), lambda: figures.classes_html(pred))
    put(ui.scales, "scales", figures.scales_key(pred), lambda: figures.scales_html(pred))
    teaching = teaching_markdown(pred, context(sess, model, s, pred))
    put(ui.teaching, "teaching", teaching, lambda: teaching)
    g = 4 * model.n**2
    put(ui.controls.k, "k", (g, pred.k), lambda: gr.update(maximum=g, value=pred.k))
    if reset or shown.get("window") != window or shown.get("threshold_units") != pred.score_name:
        extra = {"value": pred.threshold} if reset or shown.get("threshold_units") != pred.score_name else {}
        out[ui.controls.threshold] = gr.update(
            **threshold_slider(pred.score_name, pred.score_range, (), window, **extra)
        )
        shown["window"], shown["threshold_units"] = window, pred.score_name
    if ui.controls.score is not None and (reset or s.score != pred.score_name):
        out[ui.controls.score] = gr.update(value=pred.score_name)
    if ui.header is not None:
        head = header_markdown(model.backbone)
        put(ui.header, "header", head, lambda: head)
    for name, note in (("threshold_note", ui.threshold_note), ("kn_note", ui.kn_note)):
        if note is not None:  # a value was applied: the sentence about the last one goes
            put(note, name, "", lambda: "")
    # what the head was last run with: an event repeating it (a key's .input, then a blur's .release) is skipped
    shown["options"] = (pred.threshold, pred.k, s.entropy_filter, s.renormalize, pred.score_name)
    shown["n"] = model.n
    out[ui.shown] = shown
    return out


def carried(shown: dict | None) -> dict:
    """What a new image keeps of what the page shows: the threshold slider's range and units
    (everything else is drawn anew)."""
    return {k: v for k, v in (shown or {}).items() if k in ("window", "threshold_units")}


def failed(ui: UI, sess: Session, e: BaseException, clear: bool = True) -> dict:
    """The failure as one sentence in the decision panel. ``clear``: the pictures of the last
    result go too (they would describe other settings), and the session keeps its image and
    encoding but no result, so head options wait for the next good run."""
    if not isinstance(e, USER_ERRORS + (ValueError,)):
        log.exception("analysis failed")
    msg = friendly_error(e)
    out = {ui.decision: dec.error_html(msg), ui.status: ""}
    if clear:
        out.update(
            {
                ui.session: replace(sess, prediction=None),
                ui.top: None,
                ui.teaching: "",
                ui.shown: {},
                **{f: "" for f in ui.figures()},
            }
        )
    else:  # the panel now shows the error, not the decision: redraw it next time
        out[ui.shown] = {}
    return out


def check_settings(s: Settings) -> None:
    dup = duplicate_classes(s.custom) if s.preset == "custom" else []
    if dup:
        raise UserError(f"Each class may appear only once (“{dup[0]}” is given twice).")


def run(ui: UI, sess: Session, shown: dict | None, s: Settings, progress=None) -> dict:
    check_settings(s)
    spec, ck = ui.service.spec(s.preset, s.custom, s.checkpoint, s.n, s.backbone)
    say = (lambda f, d: progress(f, desc=d)) if progress is not None else None
    if "threshold_units" in (shown or {}) and shown["threshold_units"] != s.score:
        s = replace(s, threshold=None)  # the slider's value is in another score's units
    sess, pred, model, reset = ui.service.analyse(
        sess, spec, ck, s.threshold, s.k, s.entropy_filter, s.renormalize, progress=say, score=s.score
    )
    return present(ui, sess, shown, pred, model, s, reset)


# --------------------------------------------------------------------------- handlers


def on_upload(ui: UI, values: dict, progress=gr.Progress()) -> dict:
    """A new upload: analyse it. The drop zone is emptied again at once: the image lives on in
    the session only, and the next upload needs no "clear" click."""
    path, sess, shown = values[ui.upload], values[ui.session], values[ui.shown]
    if not path:
        return {ui.shown: shown}
    s = ui.controls.read(values)
    try:
        new = ui.service.load(path, previous=sess)
    except Exception as e:  # noqa: BLE001 — every failure becomes a message
        return {**failed(ui, Session(model_identity=sess.model_identity), e), ui.upload: None}
    try:
        return {**run(ui, new, carried(shown), s, progress), ui.upload: None}
    except Exception as e:  # noqa: BLE001
        return {**failed(ui, new, e), ui.upload: None}


def on_example(ui: UI, values: dict, evt: gr.SelectData, progress=gr.Progress()) -> dict:
    """A gallery example: analyse it; a skin or histology example also picks its class set."""
    sess = values[ui.session]
    s = ui.controls.read(values)
    item = ui.examples[evt.index]
    out = {}
    preset = item.get("preset") or KIND_PRESET.get(item["kind"])
    if s.preset != "custom" and not s.checkpoint and preset:
        s = replace(s, preset=preset)
        out = {ui.controls.preset: s.preset}
    try:
        new = ui.service.load(item["path"], previous=sess, name=Path(item["path"]).name)
        return {**run(ui, new, carried(values[ui.shown]), s, progress), **out}
    except Exception as e:  # noqa: BLE001
        return {**failed(ui, sess, e), **out}


def on_rerun(ui: UI, values: dict, progress=gr.Progress()) -> dict:
    """The Analyse button: re-uses the session's image (and its encoding when the backbone and n
    are unchanged)."""
    sess, shown = values[ui.session], values[ui.shown]
    s = ui.controls.read(values)
    try:
        if not sess.has_image():
            if not values[ui.upload]:
                raise UserError(NO_IMAGE)
            sess = ui.service.load(values[ui.upload], previous=sess)
        return run(ui, sess, shown, s, progress)
    except Exception as e:  # noqa: BLE001
        return failed(ui, sess, e)


def on_settings(ui: UI, values: dict, progress=gr.Progress()) -> dict:
    """Class set, custom classes, checkpoint or n changed."""
    sess, shown = values[ui.session], values[ui.shown]
    s = ui.controls.read(values)
    if s.preset == "custom" and not split_class_list(s.custom) and not s.checkpoint:
        return {ui.status: "Type the custom classes, comma-separated, and press Enter.", ui.shown: shown}
    if sess.has_image():
        return on_rerun(ui, values, progress)
    try:  # nothing to re-analyse yet: just show the model choice
        check_settings(s)
        spec, ck = ui.service.spec(s.preset, s.custom, s.checkpoint, s.n, s.backbone)
        model = ui.service.model(spec, ck)
        reset = sess.model_identity != spec.identity()
        out = {
            ui.session: Session(model_identity=spec.identity()),
            ui.model_info: model_markdown(model),
            **({ui.header: header_markdown(model.backbone)} if ui.header is not None else {}),
            ui.status: "",
            ui.controls.k: gr.update(maximum=4 * model.n**2),
            ui.controls.custom: gr.update(placeholder=class_placeholder(model.backbone)),
            ui.shown: shown,
        }
        if reset:
            out[ui.controls.threshold] = gr.update(
                **threshold_slider(
                    model.score_name, model_score_range(model), (model.threshold,), value=model.threshold
                )
            )
            out[ui.shown] = {"threshold_units": model.score_name}
            if ui.controls.score is not None:
                out[ui.controls.score] = gr.update(value=model.score_name)
        return out
    except Exception as e:  # noqa: BLE001
        return failed(ui, sess, e)


def noted(ui: UI, shown: dict | None, note: gr.Markdown | None, name: str, text: str) -> dict:
    """The sentence ``text`` beside a control (``note``), kept in ``shown`` so the next applied
    value clears it."""
    shown = dict(shown or {})
    if note is None:
        return {ui.shown: shown}
    shown[name] = text
    return {note: text, ui.shown: shown}


def on_options(ui: UI, values: dict) -> dict:
    """Threshold, K, entropy filter, renormalise: the head only, from the cached encoding. A typed
    threshold outside the slider, or a K that is not a whole number from 1 to 4n², is answered
    with a sentence beside it; a value the head was last run with is not run again."""
    sess, shown = values[ui.session], values[ui.shown]
    if sess.prediction is None:  # nothing analysed yet: the new value waits for the first analysis
        return {ui.shown: shown}
    c = ui.controls
    raw_thr, raw_k = values.get(c.threshold), values.get(c.k)
    if raw_thr is None or raw_k is None:  # a box emptied while typing: wait for a number
        return {ui.shown: shown}
    s = ui.controls.read(values)
    pred = sess.prediction
    window = (shown or {}).get("window")
    if window and not window[0] <= s.threshold <= window[1]:
        units = (shown or {}).get("threshold_units")
        if units != pred.score_name or (s.score or pred.score_name) != pred.score_name:
            return {ui.shown: shown}  # sent in another score's units, before the slider moved: stale
        text = threshold_not_applied(s.threshold, window, dec.unit(pred.score_name), pred.threshold)
        return noted(ui, shown, ui.threshold_note, "threshold_note", text)
    if not (1 <= raw_k <= 4 * pred.n**2 and float(raw_k).is_integer()):
        return noted(ui, shown, ui.kn_note, "kn_note", k_not_applied(raw_k, pred.n, pred.k))
    options = (s.threshold, s.k, s.entropy_filter, s.renormalize, s.score or pred.score_name)
    if (shown or {}).get("options") == options:
        return {ui.shown: shown}
    try:
        sess, pred, model = ui.service.decide(sess, s.threshold, s.k, s.entropy_filter, s.renormalize, s.score)
        return present(ui, sess, shown, pred, model, s)
    except Exception as e:  # noqa: BLE001
        return failed(ui, sess, e, clear=False)


def on_n(ui: UI, values: dict, progress=gr.Progress()) -> dict:
    """n changed (a key, a drag, a typed value): re-encode (``on_settings``) unless it is the n
    already analysed; a value that is not a whole number from 1 to ``MAX_N`` is answered beside it."""
    sess, shown = values[ui.session], values[ui.shown]
    raw = values.get(ui.controls.n)
    if raw is None:  # a box emptied while typing: wait for a number
        return {ui.shown: shown}
    current = sess.spec.n if sess.spec is not None else (shown or {}).get("n")
    if not (1 <= raw <= MAX_N and float(raw).is_integer()):
        return noted(ui, shown, ui.kn_note, "kn_note", n_not_applied(raw, MAX_N, current))
    if sess.prediction is not None and (shown or {}).get("n") == int(raw):
        return {ui.shown: shown}
    out = on_settings(ui, values, progress)
    if ui.kn_note is not None and (shown or {}).get("kn_note"):
        out[ui.kn_note] = ""
        if isinstance(out.get(ui.shown), dict):
            out[ui.shown] = {**out[ui.shown], "kn_note": ""}
    return out


def on_score(ui: UI, values: dict) -> dict:
    """The decision score changed: the head only, on the cached encoding; the threshold goes back
    to the model's own for that score (or, where it has none, the image's own score) and the
    slider moves to the score's units. Before any analysis only the slider changes."""
    sess, shown = values[ui.session], values[ui.shown]
    s = replace(ui.controls.read(values), threshold=None)
    if sess.prediction is None:
        try:
            spec, ck = ui.service.spec(s.preset, s.custom, s.checkpoint, s.n, s.backbone)
            model = ui.service.model(spec, ck)
            if not has_threshold(model, s.score):  # the first image's score will be the threshold
                return {
                    ui.controls.threshold: gr.update(label=threshold_slider(s.score, (None, None), ())["label"]),
                    ui.shown: {**(shown or {}), "threshold_units": None},
                }
            thr, _ = model.resolve_threshold(None, s.score)
            return {
                ui.controls.threshold: gr.update(
                    **threshold_slider(s.score, model_score_range(model, s.score), (thr,), value=thr)
                ),
                ui.shown: {**(shown or {}), "threshold_units": s.score},
            }
        except Exception as e:  # noqa: BLE001
            return failed(ui, sess, e, clear=False)
    try:
        sess, pred, model = ui.service.decide(sess, None, s.k, s.entropy_filter, s.renormalize, s.score)
        return present(ui, sess, shown, pred, model, s, reset=True)
    except Exception as e:  # noqa: BLE001
        return failed(ui, sess, e, clear=False)


def on_pick_tile(ui: UI, values: dict, evt: gr.EventData, progress=gr.Progress()) -> dict:
    """A click on a whole-slide image's thumbnail, at fractions (u, v) of its width and height:
    the tile centred there, analysed (the model and its settings stay)."""
    sess, shown = values[ui.session], values[ui.shown]
    data = getattr(evt, "_data", None) or {}
    slide = sess.loaded.slide if sess.loaded is not None else None
    try:
        u, v = float(data.get("u")), float(data.get("v"))
    except (TypeError, ValueError):
        return {ui.shown: shown}
    if slide is None or not (0 <= u <= 1 and 0 <= v <= 1):  # NaN fails this too
        return {ui.shown: shown}
    s = ui.controls.read(values)
    try:
        new = ui.service.pick_tile(sess, u * slide.thumbnail.width, v * slide.thumbnail.height)
        return run(ui, new, carried(shown), s, progress)
    except Exception as e:  # noqa: BLE001
        return failed(ui, sess, e)
