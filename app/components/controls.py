"""The settings: class set, custom classes, checkpoint, n, and the head options (decision score,
threshold, K, entropy filter, renormalise). ``Settings`` is their values, ``Controls`` the
components. The threshold slider is in the units of the score: its range is the score's
(MSP: 0 to 1) or a window around the threshold and the image's score (``threshold_slider``)."""

from __future__ import annotations

import functools
from typing import NamedTuple

import gradio as gr

from hvl_core.scores import SCORES

from .. import handlers
from ..decision import model_score_range, threshold_slider
from ..messages import backbone_choices, class_placeholder
from ..queueing import BROWSER_GROUP, HEAD_GROUP
from ..service import CHOOSABLE_BACKBONES, DEFAULT_N, DEFAULT_PRESET, MAX_N, PRESETS
from .score_slider import ScoreSlider

#: keyboard step of the threshold slider
THRESHOLD_STEP = 0.01

#: part of the page script: Enter in a slider's number box commits the typed value as leaving the
#: box does (gradio's .release: a value out of range comes back as the one in use), and the focus stays
COMMIT_JS = """
  document.addEventListener('keydown', (e) => {
    if (e.key !== 'Enter' || !e.target.matches || !e.target.matches('#threshold input[type=number], #k input[type=number], #n input[type=number]')) return;
    e.target.blur();
    e.target.focus();
  });
"""


def render_classes(model) -> tuple[gr.Radio, gr.Textbox]:
    preset = gr.Radio(
        choices=[(label, key) for key, label in PRESETS.items()],
        value=DEFAULT_PRESET,
        label="Known classes",
        elem_id="preset",
    )
    custom = gr.Textbox(
        label="Custom classes (comma-separated; press Enter)",
        lines=1,
        max_lines=1,
        visible=False,
        elem_id="custom-classes",
        placeholder=class_placeholder(model.backbone),
        info="'name: description' puts a longer description in the prompt",
    )
    return preset, custom


def render_backbone(model) -> gr.Dropdown:
    """The backbone chooser: the server's own first, then the catalog's, each labelled (kind,
    training data, zero-shot or trained head); another one is built on first use (an offline one
    fails with one sentence)."""
    return gr.Dropdown(
        choices=backbone_choices(model.backbone.name, CHOOSABLE_BACKBONES),
        value="",
        label="Backbone",
        elem_id="backbone",
        interactive=True,
        info="A checkpoint brings its own. Another backbone re-encodes the image.",
    )


def render_checkpoint() -> tuple[gr.Textbox, gr.File]:
    with gr.Accordion("Checkpoint (optional: a trained HVL head)", open=False):
        text = gr.Textbox(
            label="Checkpoint folder or Hugging Face id", placeholder="org/name", elem_id="checkpoint-path"
        )
        files = gr.File(
            label="…or upload its model.safetensors and config.json (or head.safetensors and hvl.json)",
            file_count="multiple",
            file_types=[".safetensors", ".json"],
            type="filepath",
            height=90,
            elem_id="checkpoint-files",
        )
    return text, files


class Head(NamedTuple):
    """The head options' components, and the notes that answer a typed value the page cannot apply."""

    score: gr.Radio
    threshold: gr.Slider
    threshold_note: gr.Markdown
    k: gr.Slider
    n: gr.Slider
    kn_note: gr.Markdown
    entropy_filter: gr.Checkbox
    renormalize: gr.Checkbox


def render_head(model) -> Head:
    cfg = model.head.config
    score = gr.Radio(
        choices=[(sc.label + (" (the paper's)" if sc.paper else ""), sc.name) for sc in SCORES.values()],
        value=model.score_name,
        label="Decision score",
        elem_id="score",
        info="Default: this backbone's measured choice for the class set. Changing it re-decides only.",
    )
    slider = threshold_slider(model.score_name, model_score_range(model), (model.threshold,))
    threshold = ScoreSlider(
        slider["minimum"],
        slider["maximum"],
        value=model.threshold,
        step=THRESHOLD_STEP,
        label=slider["label"],
        info="Below it the image is 'unknown'. Moving it does not re-run the model.",
        elem_id="threshold",
        buttons=[],  # no reset button: one Tab stop fewer between the image and the verdict
    )
    threshold_note = gr.Markdown("", elem_id="threshold-note", elem_classes="hvl-note")
    with gr.Row():
        # any typed number reaches the handlers, which apply it or say why not (next to the row)
        k = ScoreSlider(1, 4 * DEFAULT_N**2, value=cfg.k, step=1, label="K pseudo-OOD cells", elem_id="k", buttons=[])
        n = ScoreSlider(
            1, MAX_N, value=DEFAULT_N, step=1, label="n: mid grid n×n (re-encodes)", elem_id="n", buttons=[]
        )
    kn_note = gr.Markdown("", elem_id="kn-note", elem_classes="hvl-note")
    with gr.Row():
        entropy_filter = gr.Checkbox(
            value=cfg.entropy_filter, label="Entropy filter (drop unsure patches)", elem_id="entropy-filter"
        )
        renormalize = gr.Checkbox(
            value=cfg.renormalize, label="Renormalize (÷ kept patches, not all)", elem_id="renormalize"
        )
    return Head(score, threshold, threshold_note, k, n, kn_note, entropy_filter, renormalize)


def listen(ui) -> None:
    c = ui.controls
    inputs = ui.inputs()
    model_events = dict(concurrency_id=BROWSER_GROUP, api_visibility="private")
    c.preset.change(
        lambda p: gr.update(visible=p == "custom"), c.preset, c.custom, queue=False, api_visibility="private"
    )
    settings_fn = ui.bind(handlers.on_settings)
    c.preset.input(settings_fn, inputs, ui.outputs(), **model_events)
    c.custom.submit(settings_fn, inputs, ui.outputs(), **model_events)
    c.checkpoint_text.submit(settings_fn, inputs, ui.outputs(), **model_events)
    c.checkpoint_files.upload(settings_fn, inputs, ui.outputs(), **model_events)
    c.checkpoint_files.clear(settings_fn, inputs, ui.outputs(), **model_events)
    # n: a key, a drag or a typed value sends .input; a blur of the typed box (which gradio clamps
    # to the slider's ends) sends .release, whose answer to a value out of range also puts the
    # control back on the n in use. ``on_n`` runs only when n differs from the analysed one.
    for ev, committed in ((c.n.input, False), (c.n.release, True)):
        fn = functools.partial(handlers.on_n, ui, committed=committed)
        ev(fn, inputs, ui.outputs(), trigger_mode="always_last", **model_events)
    if c.backbone is not None:
        c.backbone.input(settings_fn, inputs, ui.outputs(), **model_events)
    # one queue group for the head's events, so they run in order: a threshold typed in one score's
    # units is decided before a score change moves the slider to another's
    head = dict(trigger_mode="always_last", api_visibility="private", show_progress="hidden", concurrency_id=HEAD_GROUP)
    options_fn = ui.bind(handlers.on_options)
    # keys, drags and typing send .input (keys never send .release); a blur of a typed box sends
    # .release with the typed value (gradio then shows it clamped to the slider's ends): a value out
    # of range is answered with the control back on the value in use, never mid-typing. ``on_options``
    # runs the head only when a value differs from the one applied, so the pair never decides twice.
    for ev in (c.k.input, c.entropy_filter.input, c.renormalize.input, c.threshold.input):
        ev(options_fn, inputs, ui.outputs(), **head)
    for ev in (c.k.release, c.threshold.release):
        ev(functools.partial(handlers.on_options, ui, committed=True), inputs, ui.outputs(), **head)
    if c.score is not None:
        c.score.input(
            ui.bind(handlers.on_score),
            inputs,
            ui.outputs(),
            api_visibility="private",
            show_progress="hidden",
            concurrency_id=HEAD_GROUP,
        )
