"""The Gradio app: upload → decision, thresholds, visual explanations, teaching mode.

``build_demo(service)`` returns the ``gr.Blocks``; ``LAUNCH_KWARGS`` are the options its
``launch`` needs (gradio 6 takes theme/css at launch). Handlers never let an exception reach
Gradio: a bad upload or an unusable checkpoint comes back as a readable message (an error panel
plus a toast), and the server keeps serving.
"""
from __future__ import annotations

import json
import logging
import os
from dataclasses import replace
from pathlib import Path

import gradio as gr

from . import decision as dec
from . import render
from .service import (DEFAULT_N, DEFAULT_PRESET, MAX_N, PRESETS, USER_ERRORS, ModelService, Session, Spec,
                      UserError, checkpoint_ref, normalise_classes, threshold_note)
from .teaching import Context, teaching_markdown

log = logging.getLogger(__name__)

ROOT = Path(__file__).resolve().parent.parent
ASSETS_DIR = ROOT / "assets"
IMAGE_TYPES = [".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp"]
KIND_LABELS = {"skin": "Skin", "histology": "Histology", "ood": "Out-of-domain"}
KIND_PRESET = {"skin": "dermatology-isic4", "histology": "histology-nct-crc"}
#: every minute, delete the uploads and rendered images gradio cached more than 10 minutes ago
DELETE_CACHE = (60, 600)
MAX_FILE_SIZE = "100mb"

CSS = """
.hvl-header h1 {margin-bottom: 0.2em}
#decision {min-height: 150px}
#model-info p {margin: 0.15em 0}
"""

HEADER = """<div class="hvl-header">

# HVL — known disease, or refer to a specialist?

A vision-language model looks at your image at three scales, fuses what it sees coarse to fine, ignores
patches it finds irrelevant, and says **unknown** when its fused confidence (MSP) is below a threshold
(Lai et al., *Hierarchical Vision-Language Learning for Medical Out-of-Distribution Detection*, MICCAI 2025).
**Research and teaching demo — not a medical device.**
</div>"""

FOOTER = ("Privacy: images are processed in memory; the uploaded file and the rendered pictures sit in a "
          "temporary cache that is emptied every few minutes, and nothing is logged or sent anywhere. "
          "Analytics are off.")


# --------------------------------------------------------------------------- examples

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
                kind = e.get("kind", "")
                items.append({"path": str(path), "kind": kind, "caption": e.get("caption", path.stem)})
    if not items and assets_dir.is_dir():
        for path in sorted(p for p in assets_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
            kind = next((k for k in KIND_LABELS if path.stem.lower().startswith(k)), "")
            items.append({"path": str(path), "kind": kind, "caption": path.stem.replace("_", " ")})
    order = {"skin": 0, "histology": 1, "ood": 2}
    return sorted(items, key=lambda it: order.get(it["kind"], 3))


def gallery_caption(item: dict, width: int = 70) -> str:
    kind = KIND_LABELS.get(item["kind"], "Example")
    text = item["caption"]
    if len(text) > width:
        text = text[:width - 1].rsplit(" ", 1)[0] + "…"
    return f"{kind}: {text}"


# --------------------------------------------------------------------------- text blocks

def model_markdown(model) -> str:
    bb = model.backbone
    note = f" — *{bb.note}*" if bb.note else ""
    head = (f"trained checkpoint ({model.checkpoint})" if model.checkpoint
            else "untrained (zero-shot: W, b⁰, b² are zero)")
    classes = ", ".join(model.classes.names)
    neg = model.classes.negatives
    negatives = (f"**Negative classes ({len(neg)}):** {', '.join(neg)} — in the softmax, never the answer  \n"
                 if neg else "")
    cfg = model.head.config
    similarity = "" if cfg.similarity == "cosine" else f"; {cfg.similarity} similarity, τ = {cfg.tau:g}"
    return (f"**Backbone:** `{bb.name}`{note}  \n"
            f"**Known classes ({len(model.classes.names)}):** {classes}  \n{negatives}"
            f"**Head:** {head}; n = {model.n} ({1 + model.n ** 2 + 4 * model.n ** 2} crops){similarity}; device {model.device.type}")


def status_markdown(session: Session, pred) -> str:
    parts = [f"Analysed **{session.name}**"]
    if session.loaded is not None:
        w, h = session.loaded.original_size
        parts.append(f"{w}×{h} px")
    notes = list(pred.notes)
    text = ", ".join(parts)
    if notes:
        text += " — " + "; ".join(notes)
    return text


def _context(session: Session, model, entropy_filter: bool, renormalize: bool) -> Context:
    return Context(original_size=session.loaded.original_size if session.loaded else None,
                   image_notes=list(session.loaded.notes) if session.loaded else [],
                   backbone=model.backbone.describe(), image_size=model.backbone.image_size,
                   entropy_filter=bool(entropy_filter), renormalize=bool(renormalize),
                   calibrated=model.calibrated, checkpoint=model.checkpoint, detail=model.detail,
                   similarity=model.head.config.similarity, class_bias=model.logit_bias is not None)


def friendly_error(e: BaseException) -> str:
    if isinstance(e, USER_ERRORS):
        return str(e)
    if isinstance(e, ValueError):  # e.g. a custom class list the class set refuses
        return str(e)
    return (f"Something went wrong while analysing ({type(e).__name__}). The server is still running: "
            "try again, or another image.")


# --------------------------------------------------------------------------- the app

def build_demo(service: ModelService | None = None) -> gr.Blocks:
    service = service or ModelService()
    default_model = service.preload(Spec())
    examples = load_examples()
    initial = Session(model_identity=Spec().identity())
    g_max = 4 * DEFAULT_N ** 2

    with gr.Blocks(title="HVL — known or unknown?", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        session = gr.State(initial, time_to_live=1800)
        gr.Markdown(HEADER)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320):
                upload = gr.File(label="Upload an image (PNG, JPEG, TIFF, BMP, WebP)", file_types=IMAGE_TYPES,
                                 type="filepath", file_count="single", elem_id="upload", height=110)
                gallery = gr.Gallery(value=[(it["path"], gallery_caption(it)) for it in examples],
                                     label="Examples — click one to analyse it", columns=3, height=330,
                                     allow_preview=False, interactive=False, object_fit="cover",
                                     elem_id="examples", buttons=[])
                preset = gr.Radio(choices=[(label, key) for key, label in PRESETS.items()], value=DEFAULT_PRESET,
                                  label="Known classes", elem_id="preset")
                custom = gr.Textbox(label="Custom classes (comma-separated; press Enter)", lines=1, max_lines=1,
                                    visible=False, elem_id="custom-classes",
                                    placeholder="e.g. melanoma, nevus: a benign mole, scar",
                                    info="'name: description' puts a longer description in the prompt")
                with gr.Accordion("Checkpoint (optional: a trained HVL head)", open=False):
                    ckpt_text = gr.Textbox(label="Checkpoint folder or Hugging Face id", placeholder="org/name",
                                           elem_id="checkpoint-path")
                    ckpt_files = gr.File(label="…or upload its head.safetensors and hvl.json", file_count="multiple",
                                         file_types=[".safetensors", ".json"], type="filepath", height=90,
                                         elem_id="checkpoint-files")
                analyse_btn = gr.Button("Analyse", variant="primary", elem_id="analyse")
                model_md = gr.Markdown(model_markdown(default_model), elem_id="model-info")
            with gr.Column(scale=6, min_width=420):
                decision = gr.HTML(dec.empty_html(), elem_id="decision")
                threshold = gr.Slider(0, 1, value=default_model.threshold, step=0.001, label="MSP threshold",
                                      info="Below it the image is 'unknown'. Moving it does not re-run the model.",
                                      elem_id="threshold")
                with gr.Row():
                    k = gr.Slider(1, g_max, value=default_model.head.config.k, step=1, label="K pseudo-OOD cells",
                                  elem_id="k")
                    n = gr.Slider(1, MAX_N, value=DEFAULT_N, step=1, label="n: mid grid n×n (re-encodes)",
                                  elem_id="n")
                with gr.Row():
                    entropy_filter = gr.Checkbox(value=default_model.head.config.entropy_filter,
                                                 label="Entropy filter (drop unsure patches)", elem_id="entropy-filter")
                    renormalize = gr.Checkbox(value=default_model.head.config.renormalize,
                                              label="Renormalize (÷ kept patches, not all)", elem_id="renormalize")
                top = gr.Label(label="Top classes (fused p_ID)", num_top_classes=5, show_heading=False,
                               elem_id="top-classes")
                status = gr.Markdown("", elem_id="status")
        img_opts = dict(type="numpy", format="png", interactive=False, show_label=False,
                        buttons=["download", "fullscreen"])
        gr.Markdown("### What the model looked at")
        with gr.Row():
            ent_mid = gr.Image(label="Entropy, mid scale", elem_id="entropy-mid", **img_opts)
            ent_high = gr.Image(label="Entropy, high scale", elem_id="entropy-high", **img_opts)
        with gr.Row():
            gain = gr.Image(label="Entropy gain ΔH and pseudo-OOD cells", elem_id="entropy-gain", **img_opts)
            scales = gr.Image(label="Per-scale predictions", elem_id="scales", **img_opts)
        with gr.Row():
            patch_cls = gr.Image(label="Per-patch predicted class", elem_id="patch-classes", height=520, **img_opts)
        with gr.Accordion("Teaching mode: how HVL decided, step by step", open=True, elem_id="teaching-panel"):
            teaching = gr.Markdown("Analyse an image to see the steps with its own numbers.", elem_id="teaching")
        gr.Markdown(FOOTER)

        # hidden components of the public API endpoint /predict
        with gr.Row(visible=False):
            api_image = gr.File(type="filepath")
            api_preset = gr.Textbox(value=DEFAULT_PRESET)
            api_classes = gr.Textbox(value="")
            api_threshold = gr.Number(value=None)
            api_n = gr.Number(value=DEFAULT_N, precision=0)
            api_k = gr.Number(value=default_model.head.config.k, precision=0)
            api_filter = gr.Checkbox(value=True)
            api_renorm = gr.Checkbox(value=False)
            api_out = gr.JSON()

        figures = [ent_mid, ent_high, gain, scales, patch_cls]
        full_outputs = [session, decision, top, *figures, teaching, status, model_md, threshold, k]
        light_outputs = [session, decision, top, teaching, status]
        settings = [preset, custom, ckpt_text, ckpt_files, n, threshold, k, entropy_filter, renormalize]

        # ------------------------------------------------------------------ handlers
        def full_render(sess: Session, pred, model, reset: bool, ef: bool, rn: bool) -> dict:
            ctx = _context(sess, model, ef, rn)
            g = 4 * model.n ** 2
            return {
                session: sess,
                decision: dec.decision_html(pred, threshold_note(model)),
                top: dec.top_classes(pred),
                ent_mid: render.entropy_figure(pred, 1),
                ent_high: render.entropy_figure(pred, 2),
                gain: render.gain_figure(pred),
                scales: render.scales_figure(pred),
                patch_cls: render.patch_class_figure(pred),
                teaching: teaching_markdown(pred, ctx),
                status: status_markdown(sess, pred),
                model_md: model_markdown(model),
                threshold: gr.update(value=pred.threshold) if reset else gr.update(),
                k: gr.update(maximum=g, value=pred.k),
            }

        def failed(sess: Session, e: BaseException, clear: bool = True) -> dict:
            """The message in the decision panel and a toast. ``clear``: the pictures of the last
            result go too (they would describe other settings), and the session keeps its image
            and encoding but no result, so threshold moves wait for the next good run."""
            msg = friendly_error(e)
            if not isinstance(e, USER_ERRORS + (ValueError,)):
                log.exception("analysis failed")
            gr.Warning(msg)
            out = {decision: dec.error_html(msg), status: f"⚠ {msg}"}
            if clear:
                out.update({session: replace(sess, prediction=None), top: None, teaching: "",
                            **{f: None for f in figures}})
            return out

        def run(sess: Session, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                progress) -> dict:
            spec, ck = service.spec(preset_v, custom_v, checkpoint_ref(ckpt_text_v, ckpt_files_v), int(n_v))
            sess, pred, model, reset = service.analyse(
                sess, spec, ck, thr_v, int(k_v), bool(ef_v), bool(rn_v),
                progress=lambda f, d: progress(f, desc=d))
            progress(0.9, desc="Drawing")
            return full_render(sess, pred, model, reset, ef_v, rn_v)

        def on_upload(path, sess, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                      progress=gr.Progress()):
            if not path:
                return {}
            # the drop zone is emptied again at once: the image lives on in the session only,
            # and the next upload needs no "clear" click
            try:
                new = service.load(path, previous=sess)
            except Exception as e:  # noqa: BLE001 — every failure becomes a message
                return {**failed(Session(model_identity=sess.model_identity), e), upload: None}
            try:
                return {**run(new, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                              progress), upload: None}
            except Exception as e:  # noqa: BLE001
                return {**failed(new, e), upload: None}

        def on_example(sess, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                       evt: gr.SelectData, progress=gr.Progress()):
            item = examples[evt.index]
            out_preset = {}
            if preset_v != "custom" and not checkpoint_ref(ckpt_text_v, ckpt_files_v) and item["kind"] in KIND_PRESET:
                preset_v = KIND_PRESET[item["kind"]]
                out_preset = {preset: preset_v, custom: gr.update(visible=False)}
            try:
                new = service.load(item["path"], previous=sess, name=Path(item["path"]).name)
                return {**run(new, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                              progress), **out_preset}
            except Exception as e:  # noqa: BLE001
                return {**failed(sess, e), **out_preset}

        def on_rerun(path, sess, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                     progress=gr.Progress()):
            """Analyse button and model settings (preset, classes, checkpoint, n): re-uses the
            session's image (and its encoding when the backbone and n are unchanged)."""
            try:
                if not sess.has_image():
                    if not path:
                        raise UserError("upload an image first (PNG, JPEG, TIFF, BMP or WebP), or click an example")
                    sess = service.load(path, previous=sess)
                return run(sess, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v, progress)
            except Exception as e:  # noqa: BLE001
                return failed(sess, e)

        def on_settings(sess, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                        progress=gr.Progress()):
            if preset_v == "custom" and not normalise_classes(custom_v) and not checkpoint_ref(ckpt_text_v, ckpt_files_v):
                return {status: "Type the custom classes, comma-separated, and press Enter."}
            if not sess.has_image():  # nothing to re-analyse yet: just show the model choice
                try:
                    spec, ck = service.spec(preset_v, custom_v, checkpoint_ref(ckpt_text_v, ckpt_files_v), int(n_v))
                    model = service.model(spec, ck)
                    reset = sess.model_identity != spec.identity()
                    sess = Session(model_identity=spec.identity())
                    return {session: sess, model_md: model_markdown(model), status: "",
                            threshold: gr.update(value=model.threshold) if reset else gr.update(),
                            k: gr.update(maximum=4 * model.n ** 2)}
                except Exception as e:  # noqa: BLE001
                    return failed(sess, e)
            return on_rerun(None, sess, preset_v, custom_v, ckpt_text_v, ckpt_files_v, n_v, thr_v, k_v, ef_v, rn_v,
                            progress)

        def on_options(sess, thr_v, k_v, ef_v, rn_v):
            """K, entropy filter, renormalize: the head only, from the cached encoding."""
            if sess.prediction is None:
                return {}
            try:
                sess, pred, model = service.decide(sess, thr_v, int(k_v), bool(ef_v), bool(rn_v))
                return full_render(sess, pred, model, False, ef_v, rn_v)
            except Exception as e:  # noqa: BLE001
                return failed(sess, e, clear=False)

        def on_threshold(sess, thr_v, k_v, ef_v, rn_v):
            """The threshold: re-decide from the cached encoding; only the verdict texts change."""
            if sess.prediction is None:
                return {}
            try:
                sess, pred, model = service.decide(sess, thr_v, int(k_v), bool(ef_v), bool(rn_v))
                return {session: sess, decision: dec.decision_html(pred, threshold_note(model)),
                        top: dec.top_classes(pred),
                        teaching: teaching_markdown(pred, _context(sess, model, ef_v, rn_v)),
                        status: status_markdown(sess, pred)}
            except Exception as e:  # noqa: BLE001
                return failed(sess, e, clear=False)

        def api_predict(path, preset_v, classes_v, thr_v, n_v, k_v, ef_v, rn_v):
            """Predict one image; a bad file or setting raises gr.Error with the reason."""
            try:
                spec, ck = service.spec(preset_v or DEFAULT_PRESET, classes_v or "", None, int(n_v or DEFAULT_N))
                # a threshold given by the caller is used as is; none: the model's own
                sess = service.load(path, previous=Session(model_identity=spec.identity()))
                sess, pred, model, _ = service.analyse(sess, spec, ck, thr_v, int(k_v or 4), bool(ef_v), bool(rn_v))
            except Exception as e:  # noqa: BLE001
                if not isinstance(e, USER_ERRORS + (ValueError,)):
                    log.exception("API prediction failed")
                raise gr.Error(friendly_error(e), print_exception=False) from None
            out = pred.to_dict()
            out.update(decision=dec.decision_text(pred), top=[[c, p] for c, p in pred.top(5)],
                       backbone_description=model.backbone.describe(), calibrated=model.calibrated)
            return out

        # ------------------------------------------------------------------ events
        model_events = dict(concurrency_id="model", api_visibility="private")
        upload.upload(on_upload, [upload, session, *settings], [*full_outputs, upload], **model_events)
        gallery.select(on_example, [session, *settings], [*full_outputs, preset, custom], **model_events)
        analyse_btn.click(on_rerun, [upload, session, *settings], full_outputs, **model_events)
        preset.change(lambda p: gr.update(visible=p == "custom"), preset, custom, queue=False,
                      api_visibility="private")
        preset.input(on_settings, [session, *settings], full_outputs, **model_events)
        custom.submit(on_settings, [session, *settings], full_outputs, **model_events)
        ckpt_text.submit(on_settings, [session, *settings], full_outputs, **model_events)
        ckpt_files.upload(on_settings, [session, *settings], full_outputs, **model_events)
        ckpt_files.clear(on_settings, [session, *settings], full_outputs, **model_events)
        n.release(on_settings, [session, *settings], full_outputs, **model_events)
        head_inputs = [session, threshold, k, entropy_filter, renormalize]
        for ev in (k.release, entropy_filter.input, renormalize.input):
            ev(on_options, head_inputs, full_outputs, trigger_mode="always_last", show_progress="minimal",
               api_visibility="private")
        threshold.input(on_threshold, head_inputs, light_outputs, trigger_mode="always_last",
                        show_progress="hidden", api_visibility="private")
        threshold.release(on_threshold, head_inputs, light_outputs, trigger_mode="always_last",
                          show_progress="hidden", api_visibility="private")
        gr.Button(visible=False).click(
            api_predict, [api_image, api_preset, api_classes, api_threshold, api_n, api_k, api_filter, api_renorm],
            api_out, api_name="predict", concurrency_id="model",
            api_description="Predict one image: returns the decision, MSP, threshold, probabilities per scale, "
                            "entropies and pseudo-OOD cells. Arguments: image file, preset "
                            "(dermatology-isic4 | histology-nct-crc | custom), custom classes (comma-separated), "
                            "threshold (empty: the model's), n, K, entropy filter, renormalize.")
    demo.queue(default_concurrency_limit=1, max_size=16)
    return demo


def launch_kwargs(server_name: str | None = None, server_port: int | None = None) -> dict:
    """Options for ``demo.launch``: theme/CSS (gradio 6 takes them at launch), the assets folder
    the gallery serves, no run history kept in the browser, an upload size limit."""
    return dict(server_name=server_name or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
                server_port=int(server_port or os.environ.get("GRADIO_SERVER_PORT", 7860)),
                css=CSS, theme=gr.themes.Soft(), allowed_paths=[str(ASSETS_DIR)], run_history=False,
                max_file_size=MAX_FILE_SIZE, show_error=False, footer_links=["api"], ssr_mode=False)
