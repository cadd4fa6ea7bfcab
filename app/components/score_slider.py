"""The threshold slider: a ``gr.Slider`` whose value is checked against the decision score by the
handlers (``ScoreError``), not by gradio against the range it was built with. Gradio validates a
slider's input against its constructor's range, so a page that starts with MSP's [0, 1] would
refuse every energy or max-logit threshold above 1. K and n use it too: a typed value out of
their range reaches the handlers, which answer it with a sentence beside the slider instead of
gradio's bare error. (Gradio keeps a ``.pyi`` stub of every
component subclass beside its module: ``score_slider.pyi`` is that file.)"""

from __future__ import annotations

import gradio as gr


class ScoreSlider(gr.Slider):
    """A slider in the units of the decision score; any finite number passes to the handlers."""

    @classmethod
    def get_block_name(cls) -> str:
        return "slider"

    def preprocess(self, payload: float | None) -> float | None:
        return None if payload is None else float(payload)
