"""Teaching mode: the steps of HVL for this image, with its own numbers (``app.teaching``)."""
from __future__ import annotations

import gradio as gr

PLACEHOLDER = "Analyse an image to see the steps with its own numbers."


def render() -> gr.Markdown:
    with gr.Accordion("Teaching mode: how HVL decided, step by step", open=True, elem_id="teaching-panel"):
        return gr.Markdown(PLACEHOLDER, elem_id="teaching")
