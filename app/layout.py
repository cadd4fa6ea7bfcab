"""The page: renders the components in their places, then lets each ``listen``.

``build_demo(service)`` returns the ``gr.Blocks``; ``launch_kwargs`` the options its ``launch``
needs (gradio 6 takes theme and CSS at launch). At 1366×768 the verdict, the analysed image with
its square and the main map share the first screen; on a phone the page scrolls to the verdict.
"""

from __future__ import annotations

import os

import gradio as gr
from starlette.middleware import Middleware

from . import gpu, model_thread, styles, views
from .components import api, batch, compare, controls, header, insight, results, teaching, upload
from .examples import ASSETS_DIR, load_examples
from .handlers import on_rerun
from .messages import model_markdown
from .presenting import UI
from .queueing import BROWSER_GROUP, configure_queue
from .reference import ReferenceSet
from .requests_guard import BodyLimit, refuse_missing_values
from .service import ModelService, Session, Spec
from .sessions import MAX_SESSIONS
from .settings import Controls
from .views_handlers import Views

#: every minute, delete the uploads gradio cached more than 10 minutes ago
DELETE_CACHE = (60, 600)
MAX_FILE_SIZE = "100mb"

FOOTER = (
    "Privacy: images are processed in memory; the uploaded file sits in this server's own temporary folder, "
    "emptied every few minutes and removed when the server stops; pictures are sent inside the page, and "
    "no image, file name or path is logged or sent anywhere. "
    "Analytics are off."
)

CSS = (
    """
:root, .dark { --body-text-color-subdued: #3d3d3d; }
.hvl-header h1 { margin: 0 0 0.15em 0; font-size: var(--hvl-title, 1.45rem); }
.hvl-header p { margin: 0; }
.hvl-header p.hvl-backbone { font-size: var(--hvl-small); line-height: 1.25; margin-top: 2px; color: #333; }
#decision { min-height: 120px; }
#model-info p { margin: 0.15em 0; }
#status p { margin: 0; }
.hvl-fig { margin: 0; }
.hvl-fig-title { font-weight: 700; margin: 0 0 4px 0; color: #111; }
.hvl-pics { display: flex; gap: 8px; }
.hvl-pic { flex: 1 1 0; min-width: 0; }
.hvl-pic-title { font-weight: 600; font-size: max(var(--hvl-small), 0.9em); }
.hvl-pic img { display: block; width: 100%; max-width: 480px; height: auto; object-fit: contain; }
#thumbnail .hvl-pic img { max-height: 260px; }
#thumbnail img.hvl-slide { cursor: crosshair; }
.hvl-rest .hvl-class-name { font-style: italic; font-weight: 500; }
#entropy-high .hvl-pic img { max-height: 316px; }
.hvl-fig-notes p { margin: 4px 0; font-size: var(--hvl-small); line-height: 1.35; color: #1a1a1a; max-width: 75ch; }
.hvl-cbar { margin-top: 6px; max-width: 448px; font-size: var(--hvl-small); color: #1a1a1a; }
.hvl-cbar-grad { height: 12px; border: 1px solid #555; }
.hvl-cbar-ticks { display: flex; justify-content: space-between; }
.hvl-legend { list-style: none; display: flex; flex-wrap: wrap; gap: 4px 14px; padding: 0; margin: 6px 0; font-size: var(--hvl-small); }
.hvl-swatch { display: inline-block; min-width: 1.35em; height: 1.35em; line-height: 1.35em; margin-right: 5px;
  text-align: center; font-weight: 700; font-size: 1em; border: 1px solid #333; border-radius: 3px; vertical-align: middle; }
.hvl-chart { display: flex; flex-direction: column; gap: 0; }
/* one line per row of the chart: its name beside its four bars (compact enough for one screen) */
.hvl-class { display: grid; grid-template-columns: minmax(6em, 10em) 1fr; align-items: center; column-gap: 10px;
  padding: 4px 0; border-bottom: 1px solid #d0d0d0; }
.hvl-class-name { font-weight: 700; font-size: calc(var(--hvl-small) + 1px); line-height: 1.2; color: #111; }
.hvl-barrow { display: grid; grid-template-columns: 2.6em 1fr 3.2em; align-items: center; gap: 6px; font-size: var(--hvl-small);
  line-height: calc(var(--hvl-small) + 1px); color: #111; }
.hvl-track { position: relative; height: var(--hvl-track, 10px); background: #e6e6e6; }
.hvl-fill { position: absolute; left: 0; top: 0; bottom: 0; }
.hvl-thr { position: absolute; top: -4px; bottom: -4px; width: 3px; margin-left: -1px; background: #D55E00; }
.hvl-val { text-align: right; font-variant-numeric: tabular-nums; }
#teaching { max-width: 80ch; }
#examples { height: auto !important; }
#examples .grid-wrap { height: auto !important; min-height: 0 !important; max-height: none !important; overflow: visible !important; }
#examples .grid-container { grid-template-columns: repeat(var(--hvl-gallery-cols, 5), minmax(0, 1fr)) !important; gap: 6px !important; padding-top: 28px; }
#examples .grid-container { grid-auto-rows: auto !important; }
#examples .gallery-item, #examples .thumbnail-item { width: 100% !important; height: auto !important; }
/* each caption under its picture, never over it (lecture mode's large type would cover the thumbnail) */
#examples .thumbnail-item { display: flex !important; flex-direction: column; align-items: stretch;
  aspect-ratio: auto !important; height: auto !important; overflow: visible !important; }
#examples .thumbnail-item img { aspect-ratio: 1 / 1; width: 100% !important; height: auto !important; flex: 0 0 auto; }
#examples .caption-label { position: static !important; max-width: none !important; margin: 0; transform: none !important;
  white-space: normal !important; overflow: visible !important; text-overflow: clip !important; border-radius: 0;
  font-size: var(--hvl-small); line-height: 1.15; padding: 2px 3px; background: #fff; color: #000; text-align: left; }
/* the upload box's label above the drop zone, not over its "Drop File Here" */
#upload > label[data-testid="block-label"] { position: static !important; margin-bottom: 4px; }
.hvl-skip { font-size: var(--hvl-small); margin: 2px 0 4px 2px; }
.hvl-skip a { color: #194a76; text-decoration: underline; }
.hvl-skip a:focus-visible, #decision [tabindex]:focus-visible { outline: 3px solid #D55E00; outline-offset: 2px; }
.hvl-note p { margin: 2px 0 0 0; color: #8a2a00; font-weight: 600; font-size: var(--hvl-small); }
/* a phone scrolls the verdict into view with its top border in sight */
#decision { scroll-margin-top: 16px; }
@media (max-width: 700px) {
  #header-row { flex-direction: column !important; }
  #header-row > * { width: 100% !important; }
  .hvl-maps-row { flex-direction: column !important; }
  .hvl-maps-row > * { width: 100% !important; }
  #examples .grid-container { grid-template-columns: repeat(3, minmax(0, 1fr)) !important; }
  .hvl-class { grid-template-columns: 1fr; }
}
/* lecture mode: gradio's copies of the rules above outrank a body.hvl-lecture rule, so it sets the
   variables they read (app.styles) */
body.hvl-lecture { --text-xxs: 18px; --text-xs: 18px; --text-sm: 18px; --text-md: 20px; --text-lg: 24px; --text-xl: 28px;
  --block-label-text-size: 18px; --checkbox-label-text-size: 18px; --section-header-text-size: 20px;
  --body-text-color-subdued: #000; --body-text-size: 20px; --hvl-title: 2rem; --hvl-track: 1.1em; }
body.hvl-lecture .gradio-container { font-size: 20px; color: #000; }
body.hvl-lecture .hvl-pic img { max-height: none !important; max-width: none; }
body.hvl-lecture #upload { height: auto !important; min-height: 150px; }
body.hvl-lecture #upload .upload-container { height: auto !important; min-height: 120px; padding: 6px 0; }
body.hvl-lecture label, body.hvl-lecture [data-testid="block-label"], body.hvl-lecture [data-testid="block-info"] { font-size: 18px !important; color: #000; }
"""
    + views.CSS
    + teaching.CSS
    + styles.CSS
)


#: the page's own palette (a blue whose 500 shade has white text at 7.2:1 and reads at 5.8:1 on its
#: 100 shade, where gradio's indigo gave 3.6:1): every label, tab and selected choice meets WCAG AA
HVL_BLUE = gr.themes.Color(
    c50="#eef4fa",
    c100="#dde9f5",
    c200="#bcd3ea",
    c300="#8fb4d9",
    c400="#2f6fa8",
    c500="#1f5a8f",
    c600="#194a76",
    c700="#143b5e",
    c800="#0f2c46",
    c900="#0a1e30",
    c950="#06131f",
    name="hvl_blue",
)


def theme() -> gr.themes.Base:
    """Gradio's Soft layout in the page's palette, with dark grey (not mid grey) secondary text."""
    return gr.themes.Soft(primary_hue=HVL_BLUE, neutral_hue="slate").set(
        body_text_color_subdued="#3d3d3d",
        block_info_text_color="#3d3d3d",
        input_placeholder_color="#595959",
        link_text_color="*primary_600",
        link_text_color_visited="*primary_700",
    )


#: keyboard order, for every page: a radio group is one Tab stop (arrows move within it, as in any
#: form), the example gallery is one Tab stop (arrows move between thumbnails, Enter picks one),
#: and the "jump to" links put the focus on the verdict or the threshold
PAGE_JS = (
    "() => {\n"
    + styles.FIT_JS
    + controls.COMMIT_JS
    + """
  const tidy = () => {
    // a dropdown's option list scrolls, so Chromium makes it a Tab stop that vanishes on blur,
    // leaving the focus on <body>: the arrow keys move through the options instead
    document.querySelectorAll('ul.option-list:not([tabindex])').forEach((u) => { u.tabIndex = -1; });
    // a file box's "add files" button holds gradio's drop zone, itself a button (nested controls, named
    // by an untranslated key): the outer one keeps the name and the Tab stop and opens the file dialog
    document.querySelectorAll('button.icon-button[aria-label="common.upload"]').forEach((b) => {
      b.setAttribute('aria-label', 'Add files');
      b.title = 'Add files';
      const inner = b.querySelector('button.upload-container');
      if (!inner || inner.inert) return;
      inner.inert = true;
      b.addEventListener('click', () => { const f = inner.querySelector('input[type=file]'); if (f) f.click(); });
    });
    document.querySelectorAll('fieldset[id]').forEach((fs) => {
      fs.querySelectorAll('input[type=radio]').forEach((r) => { if (r.name !== fs.id + '-choice') r.name = fs.id + '-choice'; });
    });
    // gradio's empty placeholders carry an aria-label without a role: name them as pictures
    document.querySelectorAll('.empty[aria-label]:not([role])').forEach((e) => {
      e.setAttribute('role', 'img');
      if (e.closest('#top-classes')) e.setAttribute('aria-label', 'p_ID per class: shown after an analysis');
    });
    const thumbs = [...document.querySelectorAll('#examples button.thumbnail-item')];
    thumbs.forEach((b) => {  // the caption names the thumbnail; the picture's alt would repeat it
      const cap = b.querySelector('.caption-label');
      const img = b.querySelector('img');
      if (cap && img && img.alt) { b.setAttribute('aria-label', cap.textContent.trim()); img.alt = ''; }
    });
    if (thumbs.length && !thumbs.some((b) => b.tabIndex === 0 && b.dataset.hvlRoving)) {
      thumbs.forEach((b, i) => { b.tabIndex = i === 0 ? 0 : -1; b.dataset.hvlRoving = '1'; });
    }
  };
  tidy();
  new MutationObserver(tidy).observe(document.body, {childList: true, subtree: true});
  document.addEventListener('keydown', (e) => {
    const b = e.target.closest && e.target.closest('#examples button.thumbnail-item');
    if (!b) return;
    const thumbs = [...document.querySelectorAll('#examples button.thumbnail-item')];
    const step = {ArrowRight: 1, ArrowDown: 1, ArrowLeft: -1, ArrowUp: -1}[e.key];
    if (step === undefined && e.key !== 'Home' && e.key !== 'End') return;
    const i = thumbs.indexOf(b);
    const j = e.key === 'Home' ? 0 : e.key === 'End' ? thumbs.length - 1 : (i + step + thumbs.length) % thumbs.length;
    thumbs.forEach((t, k) => { t.tabIndex = k === j ? 0 : -1; });
    thumbs[j].focus();
    e.preventDefault();
  });
  document.addEventListener('click', (e) => {
    const a = e.target.closest && e.target.closest('a[data-hvl-focus]');
    if (!a) return;
    const el = document.querySelector(a.dataset.hvlFocus);
    if (!el) return;
    e.preventDefault();
    if (el.tabIndex < 0 && !el.matches('input, button, select, textarea')) el.setAttribute('tabindex', '-1');
    el.scrollIntoView({block: 'center'});
    el.focus({preventScroll: true});
  });
}"""
)


def build_demo(service: ModelService | None = None) -> gr.Blocks:
    service = service or ModelService()
    model = model_thread.run(service.preload, Spec())  # no torch work on this thread (app/model_thread.py)
    examples = load_examples()
    reference = ReferenceSet(examples)  # the score distribution's images: their shipped encodings
    model_thread.run(reference.warm, model)
    warming = gpu.warm_up(model)  # the encoder's first calls, beside the page's construction
    with gr.Blocks(title="HVL — known or unknown?", analytics_enabled=False, delete_cache=DELETE_CACHE) as demo:
        session = gr.State(Session(model_identity=Spec().identity()), time_to_live=1800)
        shown = gr.State({}, time_to_live=1800)
        head = header.render(model)
        with gr.Row(equal_height=False):
            with gr.Column(scale=4, min_width=320, elem_id="inputs"):
                up = upload.render(examples)
                backbone = controls.render_backbone(model)
                preset, custom = controls.render_classes(model)
                head_controls = controls.render_head(model)
                score, threshold, k, n = head_controls.score, head_controls.threshold, head_controls.k, head_controls.n
                ckpt_text, ckpt_files = controls.render_checkpoint()
                analyse_btn = gr.Button("Analyse", variant="secondary", elem_id="analyse", size="sm")
                model_info = gr.Markdown(model_markdown(model), elem_id="model-info")
            with gr.Column(scale=6, min_width=360, elem_id="outputs"):
                verdict = results.render_verdict()
                first = results.render_first_maps()
                results.render_status(verdict)
                top = results.render_top()
        more = results.render_more_maps()
        seen = insight.render()
        teach = teaching.render()
        with gr.Tabs(elem_id="tools-tabs"):
            with gr.Tab("Compare two images", elem_id="tab-compare"):
                compare_tab = compare.render(examples)
            with gr.Tab("Batch", elem_id="tab-batch"):
                batch_tab = batch.render()
        gr.Markdown(FOOTER, elem_id="footer")
        api.register(service)

        ui = UI(
            service=service,
            examples=examples,
            session=session,
            shown=shown,
            controls=Controls(
                preset,
                custom,
                ckpt_text,
                ckpt_files,
                n,
                threshold,
                k,
                head_controls.entropy_filter,
                head_controls.renormalize,
                score=score,
                backbone=backbone,
            ),
            upload=up.upload,
            gallery=up.gallery,
            decision=verdict.decision,
            top=top,
            status=verdict.status,
            model_info=model_info,
            thumbnail=first.thumbnail,
            main_map=first.main_map,
            mid_map=more.mid_map,
            gain_map=more.gain_map,
            class_map=more.class_map,
            scales=more.scales,
            teaching=teach.text,
            header=head.text,
            threshold_note=head_controls.threshold_note,
            kn_note=head_controls.kn_note,
        )
        v = Views(
            reference=reference,
            distribution=seen.distribution,
            single=seen.single,
            step=teach.step,
            step_text=teach.step_text,
            compare=compare_tab,
            batch=batch_tab,
        )
        header.listen(head.lecture)
        insight.listen(ui, v)
        teaching.listen(ui, v)
        compare.listen(ui, v)
        batch.listen(ui, v)
        upload.listen(ui)
        controls.listen(ui)
        analyse_btn.click(
            ui.bind(on_rerun), ui.inputs(), ui.outputs(), concurrency_id=BROWSER_GROUP, api_visibility="private"
        )
    refuse_missing_values(demo)
    if warming is not None:  # served only once it is done: a request right after the start waits for no warm-up
        warming.result()
    return configure_queue(demo)


def launch_kwargs(server_name: str | None = None, server_port: int | None = None) -> dict:
    """Options for ``demo.launch``: theme/CSS (gradio 6 takes them at launch), the assets folder
    the gallery serves, no run history kept in the browser, an upload size limit."""
    return dict(
        server_name=server_name or os.environ.get("GRADIO_SERVER_NAME", "127.0.0.1"),
        server_port=int(server_port or os.environ.get("GRADIO_SERVER_PORT", 7860)),
        css=CSS,
        theme=theme(),
        js=PAGE_JS,
        allowed_paths=[str(ASSETS_DIR)],
        run_history=False,
        max_file_size=MAX_FILE_SIZE,
        show_error=False,
        footer_links=["api"],
        ssr_mode=False,
        mcp_server=mcp_enabled(),
        app_kwargs={"middleware": [Middleware(BodyLimit)]},  # a body is read up to MAX_BODY_BYTES
        # gradio keeps each session's inputs and outputs (the pictures too) until 10,000 sessions:
        # as many as the image store, whose older pages have lost their image anyway
        state_session_capacity=MAX_SESSIONS,
    )


def mcp_enabled() -> bool:
    """The app as an MCP server (its ``/predict`` and ``/batch`` endpoints as the tools
    ``hvl_predict`` and ``hvl_batch``, at
    ``/gradio_api/mcp/``): on unless ``HVL_MCP=0``, and only when the ``mcp`` package is installed."""
    if os.environ.get("HVL_MCP", "1").strip().lower() in ("0", "false", "no", "off"):
        return False
    try:
        import mcp  # noqa: F401
    except ImportError:
        return False
    return True
