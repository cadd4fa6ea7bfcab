"""Teaching mode: the steps of HVL for this image, with its own numbers (``app.teaching``).

Picking a step shows its text in a panel pinned to the bottom of the window and outlines the
figures it is about (``app.teaching.STEP_FIGURES``), scrolling the first into view; "Off"
unpins it. The whole walk-through stays below."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass

import gradio as gr

from .. import views_handlers as vh
from ..teaching import STEP_FIGURES, STEP_TITLES

PLACEHOLDER = "Analyse an image to see the steps with its own numbers."

#: client side: outline the step's figures, pin the step panel, scroll the first figure into view
STEP_JS = """(step) => {
  const figs = FIGS;
  document.querySelectorAll('.hvl-highlight').forEach((e) => e.classList.remove('hvl-highlight'));
  const panel = document.getElementById('teach-steps');
  const n = parseInt(step || 0);
  if (panel) panel.classList.toggle('hvl-step-pinned', n > 0);
  let first = null;
  (figs[n] || []).forEach((id) => {
    const el = document.getElementById(id);
    if (el) { el.classList.add('hvl-highlight'); first = first || el; }
  });
  if (first) first.scrollIntoView({block: 'start', behavior: 'instant'});
  return [];
}""".replace("FIGS", json.dumps({str(k): list(v) for k, v in STEP_FIGURES.items()}))

CSS = """
#teach-steps.hvl-step-pinned { position: fixed; left: 0; right: 0; bottom: 0; z-index: 60; max-height: 36vh;
  overflow-y: auto; background: #fff; border-top: 4px solid #D55E00; box-shadow: 0 -4px 14px rgba(0,0,0,0.25);
  padding: 6px 14px 10px 14px; margin: 0; }
#teach-steps.hvl-step-pinned > * { flex-shrink: 0; }
#teach-steps.hvl-step-pinned #step-text { max-width: 110ch; }
#teach-steps.hvl-step-pinned #step-picker label { padding: 2px 8px; }
#step-picker .wrap { gap: 4px 6px; }
@media (max-width: 700px) { #teach-steps.hvl-step-pinned #step-picker label { font-size: var(--hvl-small); padding: 1px 5px; }
  #teach-steps.hvl-step-pinned { max-height: 45vh; } }
"""


@dataclass
class Teaching:
    text: gr.Markdown  # the whole walk-through
    step: gr.Radio  # the step picker
    step_text: gr.Markdown  # the picked step, pinned


def render() -> Teaching:
    with gr.Accordion("Teaching mode: how HVL decided, step by step", open=True, elem_id="teaching-panel"):
        with gr.Column(elem_id="teach-steps"):
            step = gr.Radio(
                choices=[("Off", 0)] + [(f"{i}. {t}", i) for i, t in STEP_TITLES.items()],
                value=0,
                label="Walk through one step (its figures are outlined)",
                elem_id="step-picker",
            )
            step_text = gr.Markdown("", elem_id="step-text")
        text = gr.Markdown(PLACEHOLDER, elem_id="teaching")
    return Teaching(text, step, step_text)


def listen(ui, v) -> None:
    v.step.input(None, v.step, None, js=STEP_JS, queue=False, api_visibility="private")
    step_fn = functools.partial(vh.on_step, ui, v)
    v.step.input(step_fn, ui.inputs() | {v.step}, [v.step_text], api_visibility="private", queue=False)
    # a new analysis or re-decision: the pinned step shows the new numbers
    ui.teaching.change(step_fn, ui.inputs() | {v.step}, [v.step_text], api_visibility="private", queue=False)
