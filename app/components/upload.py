"""The image input: an upload box (images, DICOM, whole-slide images), a gallery of the bundled
examples with the "where OOD detection fails" set and a sentence on each, and the click on a
slide's thumbnail that picks another tile."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .. import handlers, lessons
from ..examples import ACRONYMS, ASSETS_DIR, KIND_LABELS
from ..queueing import BROWSER_GROUP

IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom", ".svs", ".ndpi"]
#: gallery captions are cut to this many characters (two lines under a thumbnail)
CAPTION_WIDTH = 40


#: right after the upload: the verdict, and the threshold with K, one Tab stop away (app.layout's
#: page script moves the focus there: to the sliders themselves, where the arrow keys work)
SKIP_LINKS = (
    "<nav class='hvl-skip' aria-label='Jump to the result'>Jump to "
    "<a href='#decision' data-hvl-focus='#decision .hvl-decision, #decision .hvl-empty, #decision .hvl-error'>"
    "the verdict</a> · <a href='#threshold' data-hvl-focus='#threshold input[type=range]'>the threshold</a> · "
    "<a href='#k' data-hvl-focus='#k input[type=range]'>K</a></nav>"
)


@dataclass
class Upload:
    upload: gr.File
    gallery: gr.Gallery


def gallery_caption(item: dict, width: int = CAPTION_WIDTH) -> str:
    """``Kind: subject`` — the subject from the file name (``ood_mri_abdomen.png`` → "MRI
    abdomen"): short enough to be read whole under a thumbnail."""
    kind = KIND_LABELS.get(item["kind"], "Example")
    words = Path(item["path"]).stem.split("_")
    if words and words[0].lower() in KIND_LABELS:
        words = words[1:]
    subject = " ".join(w.upper() if w.lower() in ACRONYMS else w for w in words) or item["caption"]
    full = f"{kind}: {subject}"
    if len(full) > width:
        full = full[: width - 1].rsplit(" ", 1)[0] + "…"
    return full


def failures_markdown(examples: list[dict]) -> str:
    """A sentence on each example of the failure set and each lesson of the others: the shipped
    model's verdict on it and why (``app.lessons``)."""
    lines = lessons.markdown(examples)
    return (
        "**Where OOD detection fails** (the “Fails” examples, and two lessons of the others):\n" + "\n".join(lines)
        if lines
        else ""
    )


def render(examples: list[dict]) -> Upload:
    upload = gr.File(
        label="Upload an image (PNG, JPEG, TIFF, BMP, WebP, DICOM) or a whole slide (SVS, NDPI, pyramidal TIFF)",
        file_types=IMAGE_TYPES,
        type="filepath",
        file_count="single",
        elem_id="upload",
        height=120,
    )
    gr.HTML(SKIP_LINKS, elem_id="skip-links", padding=False)
    # served from assets/ as they are: not copied into the upload folder, which the sweeper empties
    gr.set_static_paths(paths=[ASSETS_DIR])
    gallery = gr.Gallery(
        value=[(it["path"], gallery_caption(it)) for it in examples],
        label="Examples — click one to analyse it",
        columns=5,
        allow_preview=False,
        interactive=False,
        object_fit="cover",
        elem_id="examples",
        buttons=[],
    )
    fails = failures_markdown(examples)
    if fails:
        gr.Markdown(fails, elem_id="failures")
    return Upload(upload, gallery)


def listen(ui) -> None:
    events = dict(concurrency_id=BROWSER_GROUP, api_visibility="private")
    ui.upload.upload(ui.bind(handlers.on_upload), ui.inputs(), ui.outputs(), **events)

    def on_select(values: dict, evt: gr.SelectData, progress=gr.Progress()) -> dict:
        # gradio finds the event data by this annotation, which a partial would hide
        return handlers.on_example(ui, values, evt, progress)

    ui.gallery.select(on_select, ui.inputs(), ui.outputs(), **events)

    def on_thumbnail(values: dict, evt: gr.EventData, progress=gr.Progress()) -> dict:
        return handlers.on_pick_tile(ui, values, evt, progress)

    ui.thumbnail.click(on_thumbnail, ui.inputs(), ui.outputs(), **events)
