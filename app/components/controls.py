"""The settings: class set, custom classes, checkpoint, n, and the head options (threshold, K,
entropy filter, renormalise). ``Settings`` is their values, ``Controls`` the components."""
from __future__ import annotations

from dataclasses import dataclass, fields

import gradio as gr

from .. import handlers
from ..messages import class_placeholder
from ..service import DEFAULT_N, DEFAULT_PRESET, MAX_N, PRESETS, checkpoint_ref

#: keyboard step of the threshold slider
THRESHOLD_STEP = 0.01


@dataclass(frozen=True)
class Settings:
    """What the controls say, in one value the handlers take."""

    preset: str = DEFAULT_PRESET
    custom: str = ""
    checkpoint_text: str = ""
    checkpoint_files: tuple = ()
    n: int = DEFAULT_N
    threshold: float | None = None
    k: int = 4
    entropy_filter: bool = True
    renormalize: bool = False

    @property
    def checkpoint(self) -> tuple | None:
        return checkpoint_ref(self.checkpoint_text, self.checkpoint_files)


@dataclass
class Controls:
    """The components behind each ``Settings`` field (same names)."""

    preset: gr.Radio
    custom: gr.Textbox
    checkpoint_text: gr.Textbox
    checkpoint_files: gr.File
    n: gr.Slider
    threshold: gr.Slider
    k: gr.Slider
    entropy_filter: gr.Checkbox
    renormalize: gr.Checkbox

    def components(self) -> list:
        return [getattr(self, f.name) for f in fields(self)]

    def read(self, values: dict) -> Settings:
        """The ``Settings`` in a handler's input dict (gradio passes ``{component: value}``)."""
        v = {f.name: values.get(getattr(self, f.name)) for f in fields(self)}
        return Settings(preset=v["preset"] or DEFAULT_PRESET, custom=v["custom"] or "",
                        checkpoint_text=v["checkpoint_text"] or "",
                        checkpoint_files=tuple(str(f) for f in (v["checkpoint_files"] or []) if f),
                        n=int(v["n"] or DEFAULT_N), threshold=None if v["threshold"] is None else float(v["threshold"]),
                        k=int(v["k"] or 1), entropy_filter=bool(v["entropy_filter"]), renormalize=bool(v["renormalize"]))


def render_classes(model) -> tuple[gr.Radio, gr.Textbox]:
    preset = gr.Radio(choices=[(label, key) for key, label in PRESETS.items()], value=DEFAULT_PRESET,
                      label="Known classes", elem_id="preset")
    custom = gr.Textbox(label="Custom classes (comma-separated; press Enter)", lines=1, max_lines=1, visible=False,
                        elem_id="custom-classes", placeholder=class_placeholder(model.backbone),
                        info="'name: description' puts a longer description in the prompt")
    return preset, custom


def render_checkpoint() -> tuple[gr.Textbox, gr.File]:
    with gr.Accordion("Checkpoint (optional: a trained HVL head)", open=False):
        text = gr.Textbox(label="Checkpoint folder or Hugging Face id", placeholder="org/name",
                          elem_id="checkpoint-path")
        files = gr.File(label="…or upload its head.safetensors and hvl.json", file_count="multiple",
                        file_types=[".safetensors", ".json"], type="filepath", height=90, elem_id="checkpoint-files")
    return text, files


def render_head(model) -> tuple[gr.Slider, gr.Slider, gr.Slider, gr.Checkbox, gr.Checkbox]:
    cfg = model.head.config
    threshold = gr.Slider(0, 1, value=model.threshold, step=THRESHOLD_STEP, label="MSP threshold",
                          info="Below it the image is 'unknown'. Moving it does not re-run the model.",
                          elem_id="threshold")
    with gr.Row():
        k = gr.Slider(1, 4 * DEFAULT_N ** 2, value=cfg.k, step=1, label="K pseudo-OOD cells", elem_id="k")
        n = gr.Slider(1, MAX_N, value=DEFAULT_N, step=1, label="n: mid grid n×n (re-encodes)", elem_id="n")
    with gr.Row():
        entropy_filter = gr.Checkbox(value=cfg.entropy_filter, label="Entropy filter (drop unsure patches)",
                                     elem_id="entropy-filter")
        renormalize = gr.Checkbox(value=cfg.renormalize, label="Renormalize (÷ kept patches, not all)",
                                  elem_id="renormalize")
    return threshold, k, n, entropy_filter, renormalize


def listen(ui) -> None:
    c = ui.controls
    inputs = ui.inputs()
    model_events = dict(concurrency_id="model", api_visibility="private")
    c.preset.change(lambda p: gr.update(visible=p == "custom"), c.preset, c.custom, queue=False,
                    api_visibility="private")
    settings_fn = ui.bind(handlers.on_settings)
    c.preset.input(settings_fn, inputs, ui.outputs(), **model_events)
    c.custom.submit(settings_fn, inputs, ui.outputs(), **model_events)
    c.checkpoint_text.submit(settings_fn, inputs, ui.outputs(), **model_events)
    c.checkpoint_files.upload(settings_fn, inputs, ui.outputs(), **model_events)
    c.checkpoint_files.clear(settings_fn, inputs, ui.outputs(), **model_events)
    c.n.release(settings_fn, inputs, ui.outputs(), **model_events)
    head = dict(trigger_mode="always_last", api_visibility="private", show_progress="hidden")
    options_fn = ui.bind(handlers.on_options)
    for ev in (c.k.release, c.entropy_filter.input, c.renormalize.input, c.threshold.release):
        ev(options_fn, inputs, ui.outputs(), **head)
    c.threshold.input(options_fn, inputs, ui.outputs(), **head)
