"""Where this image stands: its score among the reference images, and scale 0 alone beside the
fused verdict. Both follow every analysis and re-decision (they listen to the per-scale chart,
which changes whenever the probabilities or the threshold do)."""

from __future__ import annotations

import functools
from dataclasses import dataclass

import gradio as gr

from .. import views_handlers as vh
from ..queueing import REFERENCE_GROUP


@dataclass
class Insight:
    distribution: gr.HTML  # this image's score among the reference images
    single: gr.HTML  # scale 0 alone beside the fused verdict


def render() -> Insight:
    gr.Markdown("## Where this image stands", elem_id="insight-title")
    with gr.Row(elem_classes="hvl-maps-row"):
        distribution = gr.HTML("", elem_id="distribution", min_width=320)
        single = gr.HTML("", elem_id="single-scale", min_width=320)
    return Insight(distribution, single)


def listen(ui, v) -> None:
    ui.scales.change(
        functools.partial(vh.on_insight, ui, v),
        ui.inputs(),
        [v.distribution, v.single],
        api_visibility="private",
        concurrency_id=REFERENCE_GROUP,
        show_progress="hidden",
        trigger_mode="always_last",
    )
