"""The public ``/predict`` endpoint (hidden components; argument order as README documents)."""

from __future__ import annotations

import gradio as gr

from .. import handlers
from ..service import DEFAULT_N, DEFAULT_PRESET

DESCRIPTION = (
    "Predict one image: returns the decision, MSP, threshold, probabilities per scale, entropies and "
    "pseudo-OOD cells. Arguments: image file, preset (dermatology-isic4 | histology-nct-crc | custom), "
    "custom classes (comma-separated), threshold (empty: the model's), n, K, entropy filter, renormalize."
)


def render_and_listen(service, k_default: int) -> None:
    with gr.Row(visible=False):
        inputs = [
            gr.File(type="filepath"),
            gr.Textbox(value=DEFAULT_PRESET),
            gr.Textbox(value=""),
            gr.Number(value=None),
            gr.Number(value=DEFAULT_N, precision=0),
            gr.Number(value=k_default, precision=0),
            gr.Checkbox(value=True),
            gr.Checkbox(value=False),
        ]
        out = gr.JSON()

    def hvl_predict(path, preset_v, classes_v, thr_v, n_v, k_v, ef_v, rn_v):
        # a named function (same parameters as ``handlers.api_predict``): the MCP tool takes its name
        return handlers.api_predict(service, path, preset_v, classes_v, thr_v, n_v, k_v, ef_v, rn_v)

    gr.Button(visible=False).click(
        hvl_predict, inputs, out, api_name="predict", concurrency_id="model", api_description=DESCRIPTION
    )
