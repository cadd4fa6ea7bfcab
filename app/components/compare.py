"""Compare two images side by side (e.g. a known tissue and an image of another modality):
verdicts, scores, the analysed squares and the main maps aligned, with the page's settings."""

from __future__ import annotations

import functools
from pathlib import Path

import gradio as gr

from .. import views_handlers as vh
from ..queueing import BROWSER_GROUP
from ..service import DEFAULT_PRESET
from ..tabs import CompareTab
from .upload import IMAGE_TYPES, gallery_caption


def render(examples: list[dict]) -> CompareTab:
    choices = [(gallery_caption(e), Path(e["path"]).name) for e in examples]
    first = {e["kind"]: Path(e["path"]).name for e in reversed(examples)}
    a_default = vh.compare_default(examples, DEFAULT_PRESET, None)
    gr.Markdown("Two images analysed with the class set, threshold and options above, side by side.")
    with gr.Row(elem_classes="hvl-maps-row"):
        with gr.Column(min_width=280):
            a = gr.Dropdown(choices=choices, value=a_default, label="Image A: an example…", elem_id="compare-a")
            a_file = gr.File(
                label="…or upload image A", file_types=IMAGE_TYPES, type="filepath", height=90, elem_id="compare-a-file"
            )
        with gr.Column(min_width=280):
            b = gr.Dropdown(choices=choices, value=first.get("ood"), label="Image B: an example…", elem_id="compare-b")
            b_file = gr.File(
                label="…or upload image B", file_types=IMAGE_TYPES, type="filepath", height=90, elem_id="compare-b-file"
            )
    button = gr.Button("Compare", variant="secondary", size="sm", elem_id="compare-run")
    out = gr.HTML("", elem_id="compare-out")
    return CompareTab(a, a_file, b, b_file, button, out)


def listen(ui, v) -> None:
    c = v.compare
    # image A follows the class set (a known image for it), unless the user picked another
    ui.controls.preset.change(
        functools.partial(vh.compare_default, ui.examples),
        [ui.controls.preset, c.a],
        c.a,
        queue=False,
        api_visibility="private",
        show_progress="hidden",
    )
    inputs = ui.inputs() | {c.a, c.a_file, c.b, c.b_file}
    c.button.click(
        functools.partial(vh.on_compare, ui, v),
        inputs,
        [c.out],
        concurrency_id=BROWSER_GROUP,
        api_visibility="private",
    )
