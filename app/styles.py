"""The page's legibility and accessibility rules, after ``app.layout``'s CSS: the smallest type, a
focus mark on every control, results never shown faded, and the first screen's fit (the verdict and
the main map with its colour bar on a 1366×768 laptop; upload, verdict and main map on a 1920×1080
projector in lecture mode; on a phone, the class set a few hundred pixels under the upload).

Gradio copies each rule under ``.gradio-container… .contain`` (four classes), where a
``body.hvl-lecture`` rule cannot match; the unprefixed copy then loses on specificity. So lecture
mode sets variables on ``<body>`` that the base rules read, or adds an id to outrank them."""

CSS = """
/* the smallest type that reads from the back of a room: 14 px, 18 px in lecture mode; gradio's own
   small sizes (info lines, slider ends, small buttons) follow */
body { --hvl-small: 14px; --text-xxs: 14px; --text-xs: 14px; --text-sm: 14px;
  --block-info-text-size: var(--hvl-small); --button-small-text-size: var(--hvl-small); }
body.hvl-lecture { --hvl-small: 18px; --hvl-gallery-cols: 4; }
#decision .hvl-decision, #decision .hvl-empty, #decision .hvl-error { font-size: calc(1.25 * var(--hvl-small)); }
#decision .hvl-decision { line-height: 1.3; }

/* a focus mark on every control (WCAG 2.4.7): vermillion, 3.9:1 on white; a radio or a checkbox
   rings its whole label, so the mark is not hidden under the small circle */
.gradio-container :is(a, button, input, select, textarea, summary, [tabindex]):not([type=radio], [type=checkbox]):focus-visible,
.gradio-container label:has(input:is([type=radio], [type=checkbox]):focus-visible) {
  outline: 3px solid #D55E00 !important; outline-offset: 2px !important; }

/* gradio dims an output while its event runs and lifts the dimming a moment after the new value is
   in: the batch's and the comparison's results are never shown faded (2.9:1 text) */
#batch-summary .pending, #batch-hist .pending, #batch-table .pending, #compare-out .pending { opacity: 1 !important; }

/* the first screen: the analysed image and the main map take the height the window has left
   under the header and the verdict (FIT_JS measures it), so the map's colour bar stays in view */
body { --hvl-map-cap: 316px; --hvl-first-maps: calc(100vh - 520px); }
/* the header: the title and one line; "About" (the method, the backbone) opens on a line of its own */
.hvl-sub { display: flex; flex-wrap: wrap; align-items: baseline; column-gap: 1em; }
.hvl-sub details[open] { flex-basis: 100%; }
.hvl-about summary { cursor: pointer; color: #194a76; text-decoration: underline; }
.hvl-about p { margin: 2px 0; max-width: 110ch; }
body.hvl-lecture { --hvl-map-cap: 560px; }
/* a phone: the examples in one row that scrolls sideways, the failure cases after the settings,
   so the class set sits a few hundred pixels under the upload (not thousands) */
@media (max-width: 700px) {
  #examples .grid-container { grid-template-columns: none !important; grid-auto-flow: column;
    grid-auto-columns: 31%; overflow-x: auto; padding-bottom: 6px; }
  #failures { order: 1; }
}
@media (min-width: 821px) {
  #first-maps .hvl-pic img { max-height: min(var(--hvl-map-cap), var(--hvl-first-maps)) !important; width: auto; } }
"""


#: part of the page script: ``--hvl-first-maps`` is the height left on the first screen under the
#: main map's top for the map and its colour bar (at least 200 px; a short window scrolls instead);
#: measured again whenever the page's size changes (a verdict, lecture mode, the window)
FIT_JS = """
  const fitFirstMaps = () => {
    const img = document.querySelector('#entropy-high .hvl-pic img');
    const bar = document.querySelector('#entropy-high .hvl-cbar');
    if (!img || !bar) return;
    const box = img.getBoundingClientRect();
    const room = window.innerHeight - (box.top + window.scrollY) - (bar.getBoundingClientRect().bottom - box.bottom) - 12;
    const px = Math.max(200, Math.floor(room)) + 'px';
    if (document.body.style.getPropertyValue('--hvl-first-maps') !== px) document.body.style.setProperty('--hvl-first-maps', px);
  };
  new ResizeObserver(fitFirstMaps).observe(document.body);
  window.addEventListener('resize', fitFirstMaps);
"""
