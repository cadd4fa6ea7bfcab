"""The title, one line on the method, and the lecture-mode switch (large type, high contrast)."""
from __future__ import annotations

import gradio as gr

HEADER = """<div class="hvl-header">

# HVL — known disease, or refer to a specialist?

Three scales of your image, fused coarse to fine; unsure patches ignored; **unknown** when the fused
confidence (MSP) is under a threshold (Lai et al., MICCAI 2025). **Research and teaching demo — not a medical device.**
</div>"""

#: lecture mode is a class on <body>; the CSS in app.layout does the rest
LECTURE_JS = "(on) => { document.body.classList.toggle('hvl-lecture', Boolean(on)); return []; }"


def render() -> gr.Checkbox:
    with gr.Row(equal_height=True, elem_id="header-row"):
        gr.Markdown(HEADER, elem_id="header")
        lecture = gr.Checkbox(value=False, label="Lecture mode (large type, high contrast)", elem_id="lecture",
                              scale=0, min_width=220)
    return lecture


def listen(lecture: gr.Checkbox) -> None:
    lecture.change(None, lecture, None, js=LECTURE_JS, queue=False, api_visibility="private")
