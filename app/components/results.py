"""What an analysis shows: the verdict (announced to screen readers), the top classes, the
analysed image with its square, the main map, and the other pictures below."""

from __future__ import annotations

from dataclasses import dataclass

import gradio as gr

from .. import decision as dec

#: the decision panel is a live region, and on a phone the page scrolls it into view
DECISION_JS = """
element.setAttribute('aria-live', 'polite');
element.setAttribute('role', 'status');
watch('value', () => {
  if (window.matchMedia('(max-width: 820px)').matches && element.querySelector('.hvl-decision, .hvl-error')) {
    // the block (with its scroll margin), once the new outputs above it are laid out
    const block = element.closest('#decision') || element;
    requestAnimationFrame(() => requestAnimationFrame(() => block.scrollIntoView({block: 'start'})));
  }
});
"""


#: a click on a whole-slide image's thumbnail sends where, as fractions of its width and height
#: (``app.handlers.on_pick_tile`` picks the tile there); other pictures ignore clicks
THUMBNAIL_JS = """
element.addEventListener('click', (e) => {
  const img = e.target.closest('img.hvl-slide');
  if (!img) return;
  const r = img.getBoundingClientRect();
  trigger('click', {u: (e.clientX - r.left) / r.width, v: (e.clientY - r.top) / r.height});
});
"""


@dataclass
class Verdict:
    decision: gr.HTML
    status: gr.Markdown


def render_verdict() -> Verdict:
    """The verdict; the status line ("Analysed …") is placed under the first maps
    (``render_status``), so the main map's colour bar fits a laptop's first screen."""
    decision = gr.HTML(dec.empty_html(), elem_id="decision", js_on_load=DECISION_JS)
    return Verdict(decision, gr.Markdown("", elem_id="status", render=False))


def render_status(verdict: Verdict) -> None:
    verdict.status.render()


def render_top() -> gr.Label:
    # the likeliest known classes, the rest of them, "other" and the dropped share: they sum to 1
    return gr.Label(
        label="Where the fused probability p_ID goes (sums to 1)",
        num_top_classes=8,
        show_heading=False,
        elem_id="top-classes",
    )


@dataclass
class FirstMaps:
    thumbnail: gr.HTML
    main_map: gr.HTML


@dataclass
class MoreMaps:
    mid_map: gr.HTML
    gain_map: gr.HTML
    class_map: gr.HTML
    scales: gr.HTML


def render_first_maps() -> FirstMaps:
    """The analysed image and the main map, side by side under the verdict."""
    with gr.Row(elem_id="first-maps", elem_classes="hvl-maps-row"):
        thumbnail = gr.HTML("", elem_id="thumbnail", min_width=200, js_on_load=THUMBNAIL_JS)
        main_map = gr.HTML("", elem_id="entropy-high", min_width=260)
    return FirstMaps(thumbnail, main_map)


def render_more_maps() -> MoreMaps:
    gr.Markdown("## What the model looked at", elem_id="more-title")
    with gr.Row(elem_classes="hvl-maps-row"):  # two per row on a screen, one per row on a phone
        scales = gr.HTML("", elem_id="scales", min_width=320)
        mid_map = gr.HTML("", elem_id="entropy-mid", min_width=320)
    with gr.Row(elem_classes="hvl-maps-row"):
        gain_map = gr.HTML("", elem_id="entropy-gain", min_width=320)
        class_map = gr.HTML("", elem_id="patch-classes", min_width=320)
    return MoreMaps(mid_map, gain_map, class_map, scales)
