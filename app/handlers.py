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

What a result or a failure shows is ``app.presenting``'s (only what changed is sent). No handler
lets an exception reach Gradio: a failure becomes one short sentence in the decision panel, and
the server keeps serving.
"""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import gradio as gr

from hvl_core.presets import split_class_list

from . import decision as dec
from .decision import model_score_range, threshold_slider
from .messages import (
    class_placeholder,
    duplicate_classes,
    header_markdown,
    k_not_applied,
    model_markdown,
    n_not_applied,
    threshold_not_applied,
)
from .presenting import UI, carried, failed, present
from .service import MAX_N, Session, UserError, has_threshold
from .settings import Settings

KIND_PRESET = {"skin": "dermatology-isic4", "histology": "histology-nct-crc"}
NO_IMAGE = "Upload an image first (PNG, JPEG, TIFF, BMP or WebP), or click an example."


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


def restore(control, value) -> dict:
    """The control (its box and its slider) back on ``value``, the one in use."""
    return {control: gr.update(value=value)}


def on_options(ui: UI, values: dict, committed: bool = False) -> dict:
    """Threshold, K, entropy filter, renormalise: the head only, from the cached encoding. A typed
    threshold outside the slider, or a K that is not a whole number from 1 to 4n², is answered
    with a sentence beside it; once the box is left (``committed``: its .release), the control
    goes back to the value in use too (gradio would leave it clamped to the slider's end, not the
    value the verdict uses). A value the head was last run with is not run again."""
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
        return {
            **noted(ui, shown, ui.threshold_note, "threshold_note", text),
            **(restore(c.threshold, pred.threshold) if committed else {}),
        }
    if not (1 <= raw_k <= 4 * pred.n**2 and float(raw_k).is_integer()):
        note = noted(ui, shown, ui.kn_note, "kn_note", k_not_applied(raw_k, pred.n, pred.k))
        return {**note, **(restore(c.k, pred.k) if committed else {})}
    options = (s.threshold, s.k, s.entropy_filter, s.renormalize, s.score or pred.score_name)
    if (shown or {}).get("options") == options:
        return {ui.shown: shown}
    try:
        sess, pred, model = ui.service.decide(sess, s.threshold, s.k, s.entropy_filter, s.renormalize, s.score)
        return present(ui, sess, shown, pred, model, s)
    except Exception as e:  # noqa: BLE001
        return failed(ui, sess, e, clear=False)


def on_n(ui: UI, values: dict, progress=gr.Progress(), committed: bool = False) -> dict:
    """n changed (a key, a drag, a typed value): re-encode (``on_settings``) unless it is the n
    already analysed; a value that is not a whole number from 1 to ``MAX_N`` is answered beside it
    (and, ``committed``, the control goes back to the n in use)."""
    sess, shown = values[ui.session], values[ui.shown]
    raw = values.get(ui.controls.n)
    if raw is None:  # a box emptied while typing: wait for a number
        return {ui.shown: shown}
    current = sess.spec.n if sess.spec is not None else (shown or {}).get("n")
    if not (1 <= raw <= MAX_N and float(raw).is_integer()):
        note = noted(ui, shown, ui.kn_note, "kn_note", n_not_applied(raw, MAX_N, current))
        return {**note, **(restore(ui.controls.n, current) if committed and current else {})}
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
