"""The batch tab: several images (or a zip), a table (file, class, score, known), the scores'
histogram with the threshold, a threshold slider that re-decides the table without re-encoding
(and says how many flip), a CSV download."""

from __future__ import annotations

import functools

import gradio as gr

from .. import views_handlers as vh
from ..batch import COLUMNS, MAX_BATCH_BYTES, MAX_BATCH_IMAGES
from ..queueing import BATCH_GROUP, BROWSER_GROUP
from ..tabs import BatchTab
from .upload import IMAGE_TYPES


def render() -> BatchTab:
    gr.Markdown(
        f"Up to {MAX_BATCH_IMAGES} images ({MAX_BATCH_BYTES // 2**20} MB), or zips of them, analysed with "
        "the class set and options above. The threshold here re-decides the whole table without "
        "re-encoding.",
        elem_id="batch-intro",
    )
    files = gr.File(
        label="Images or a zip",
        file_count="multiple",
        file_types=IMAGE_TYPES + [".zip"],
        type="filepath",
        height=110,
        elem_id="batch-files",
    )
    run = gr.Button("Analyse batch", variant="secondary", size="sm", elem_id="batch-run")
    state = gr.State(None, time_to_live=1800)
    with gr.Row(elem_classes="hvl-maps-row"):
        with gr.Column(min_width=320):
            threshold = gr.Slider(0, 1, value=0.5, step=0.01, label="Batch threshold", elem_id="batch-threshold")
            summary = gr.Markdown("", elem_id="batch-summary")
            hist = gr.HTML("", elem_id="batch-hist")
        with gr.Column(min_width=320):
            table = gr.Dataframe(
                headers=COLUMNS,
                column_count=(len(COLUMNS), "fixed"),
                interactive=False,
                elem_id="batch-table",
                max_height=360,
                wrap=True,
                column_widths=["26%", "22%", "12%", "10%", "12%", "18%"],
            )
            csv_btn = gr.Button("Download the table as CSV", size="sm", elem_id="batch-csv-button")
            csv = gr.File(label="CSV", interactive=False, elem_id="batch-csv", height=70)
    return BatchTab(files, run, state, threshold, table, hist, summary, csv, csv_btn)


def listen(ui, v) -> None:
    b = v.batch
    outs = [b.state, b.table, b.hist, b.summary, b.csv, b.threshold]
    b.run.click(
        functools.partial(vh.on_batch, ui, v),
        ui.inputs() | {b.files},
        outs,
        concurrency_id=BROWSER_GROUP,
        api_visibility="private",
    )
    redecide = functools.partial(vh.on_batch_threshold, ui, v)
    for ev in (b.threshold.release, b.threshold.input):
        ev(
            redecide,
            [b.state, b.threshold],
            [b.state, b.table, b.hist, b.summary],
            api_visibility="private",
            trigger_mode="always_last",
            show_progress="hidden",
            concurrency_id=BATCH_GROUP,
        )
    b.csv_btn.click(functools.partial(vh.on_batch_csv, v), b.state, [b.csv, b.summary], api_visibility="private")
