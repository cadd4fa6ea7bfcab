"""The title, one line on the method, the backbone in use (its kind, training data and what it has
never seen: ``app.messages.header_markdown``), and the lecture-mode switch (large type, high
contrast)."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from ..messages import header_markdown

#: lecture mode is a class on <body>; the CSS in app.layout does the rest
LECTURE_JS = "(on) => { document.body.classList.toggle('hvl-lecture', Boolean(on)); return []; }"


@dataclass
class Header:
    text: gr.Markdown
    lecture: gr.Checkbox


def render(model) -> Header:
    with gr.Row(equal_height=True, elem_id="header-row"):
        text = gr.Markdown(header_markdown(model.backbone), elem_id="header")
        lecture = gr.Checkbox(
            value=False, label="Lecture mode (large type, high contrast)", elem_id="lecture", scale=0, min_width=220
        )
    return Header(text, lecture)


def listen(lecture: gr.Checkbox) -> None:
    lecture.change(None, lecture, None, js=LECTURE_JS, queue=False, api_visibility="private")
