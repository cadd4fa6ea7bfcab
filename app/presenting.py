"""What the page shows for a result, and for a failure: ``UI`` (every component the handlers read
or write), ``present`` (only the outputs whose key changed: each figure is a ``Figure`` with a
``key()``, each text its own key; the keys shown are kept per session in ``UI.shown``) and
``failed`` (one short sentence in the decision panel; the server keeps serving)."""

from __future__ import annotations

import functools
import logging
from dataclasses import dataclass, replace

import gradio as gr

from . import decision as dec
from . import figures
from .decision import threshold_slider
from .messages import class_placeholder, friendly_error, header_markdown, model_markdown, status_markdown
from .service import USER_ERRORS, ModelService, Session, has_threshold
from .settings import Controls, Settings
from .teaching import Context, teaching_markdown

log = logging.getLogger(__name__)


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


def page_figures(sess: Session, pred, model, s: Settings) -> dict[str, figures.Figure]:
    """The figures of a result, by the ``UI`` field that shows each."""
    return {
        "thumbnail": figures.Thumbnail(sess.loaded, sess.name, model.backbone.image_size),
        "main_map": figures.EntropyMap(pred, 2, s.entropy_filter),
        "mid_map": figures.EntropyMap(pred, 1, s.entropy_filter),
        "gain_map": figures.GainMap(pred),
        "class_map": figures.ClassMap(pred),
        "scales": figures.ScalesChart(pred),
    }


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
    for name, fig in page_figures(sess, pred, model, s).items():
        put(getattr(ui, name), name, fig.key(), fig.html)
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
