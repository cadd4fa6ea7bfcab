"""The components of the compare and batch tabs, as the handlers see them. They live here, not in
``app.components``, so that ``app.views_handlers`` (which the components wire their events to)
imports no component module: the import graph stays one-way, components → handlers."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr


@dataclass
class CompareTab:
    """The compare tab's components: images A and B (an example or an upload each), the button
    and the side-by-side result."""

    a: gr.Dropdown
    a_file: gr.File
    b: gr.Dropdown
    b_file: gr.File
    button: gr.Button
    out: gr.HTML


@dataclass
class BatchTab:
    """The batch tab's components."""

    files: gr.File
    run: gr.Button
    state: gr.State
    threshold: gr.Slider
    table: gr.Dataframe
    hist: gr.HTML
    summary: gr.Markdown
    csv: gr.File
    csv_btn: gr.Button
