"""The image input: an upload box (images, DICOM, whole-slide images), a gallery of the bundled
examples with the "where OOD detection fails" set and a sentence on each, and the click on a
slide's thumbnail that picks another tile."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

import gradio as gr

from .. import handlers, lessons

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent.parent
ASSETS_DIR = ROOT / "assets"
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm", ".dicom", ".svs", ".ndpi"]
KIND_LABELS = {"skin": "Skin", "histology": "Histology", "ood": "Out-of-domain", "failure": "Fails"}
#: gallery captions are cut to this many characters (two lines under a thumbnail)
CAPTION_WIDTH = 40
ACRONYMS = {"mri", "ct", "he", "ihc"}


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


def load_examples(assets_dir: Path = ASSETS_DIR) -> list[dict]:
    """The example gallery: ``assets/manifest.json`` when present, else the images in ``assets/``."""
    manifest = assets_dir / "manifest.json"
    items = []
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("ignoring %s: %s", manifest, e)
            entries = []
        for e in entries:
            path = assets_dir / str(e.get("file", ""))
            if path.is_file():
                items.append(
                    {
                        "path": str(path),
                        "kind": e.get("kind", ""),
                        "caption": e.get("caption", path.stem),
                        "preset": e.get("preset"),
                        "why": e.get("why") or {},
                        "title": e.get("title", ""),
                        # what kind of picture it is, in the words of a backbone's "never seen" list
                        "imaging": e.get("imaging", ""),
                    }
                )
    if not items and assets_dir.is_dir():
        for path in sorted(p for p in assets_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
            kind = next((k for k in KIND_LABELS if path.stem.lower().startswith(k)), "")
            items.append({"path": str(path), "kind": kind, "caption": path.stem.replace("_", " ")})
    order = {"skin": 0, "histology": 1, "ood": 2, "failure": 3}
    return sorted(items, key=lambda it: order.get(it["kind"], 3))


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
    events = dict(concurrency_id="model", api_visibility="private")
    ui.upload.upload(ui.bind(handlers.on_upload), ui.inputs(), ui.outputs(), **events)

    def on_select(values: dict, evt: gr.SelectData, progress=gr.Progress()) -> dict:
        # gradio finds the event data by this annotation, which a partial would hide
        return handlers.on_example(ui, values, evt, progress)

    ui.gallery.select(on_select, ui.inputs(), ui.outputs(), **events)

    def on_thumbnail(values: dict, evt: gr.EventData, progress=gr.Progress()) -> dict:
        return handlers.on_pick_tile(ui, values, evt, progress)

    ui.thumbnail.click(on_thumbnail, ui.inputs(), ui.outputs(), **events)
