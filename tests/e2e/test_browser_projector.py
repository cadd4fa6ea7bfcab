"""The lecture on a projector and by keyboard, in a real browser (Chromium, Playwright) against
``python app.py``: lecture mode at 1920×1080 holds the upload, the verdict and the main map with
its colour bar in the first screen, a 1366×768 laptop the map with its colour bar, a phone the
class set near the upload; no text under 14 px (18 px in lecture mode); every kind of control
shows a focus mark when the keyboard reaches it, and Tab never falls onto ``<body>``; a typed
value out of range leaves the control on the value in use; axe-core finds nothing serious on the
batch tab after a run nor on the compare tab after a comparison. Screenshots of the three sizes
after an analysis go to ``out/screenshots/projector_*.png``.
"""

from __future__ import annotations

import re

import pytest

from tests.e2e import test_browser as base
from tests.e2e.test_browser import SCREENSHOTS, SUFFIX, _no_error_badges, _open
from tests.e2e.test_browser_lecture import EXAMPLE, HISTO, OOD, _analyse, _axe

app_server, app_url, browser = base.app_server, base.app_url, base.browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

#: the visible text smaller than ``limit`` px: "where: text (size)" (sub- and superscripts aside)
SMALL_TEXT_JS = """(limit) => {
  const out = [];
  const walk = document.createTreeWalker(document.body, NodeFilter.SHOW_TEXT);
  for (let n = walk.nextNode(); n; n = walk.nextNode()) {
    const e = n.parentElement;
    if (!n.textContent.trim() || !e || e.closest('sub, sup') || !e.checkVisibility({visibilityProperty: true})) continue;
    const r = e.getBoundingClientRect();
    const size = parseFloat(getComputedStyle(e).fontSize);
    if (r.width > 0 && r.height > 0 && size < limit) {
      out.push(`${(e.closest('[id]') || {}).id}: ${n.textContent.trim().slice(0, 30)} (${size}px)`);
    }
  }
  return out;
}"""

#: the outline and shadow of an element, the marks a focus ring is drawn with, once its
#: transitions have run (gradio eases a label's colours in)
RING_JS = """async (e) => { await Promise.all(e.getAnimations().map((a) => a.finished)); const s = getComputedStyle(e);
  return {style: s.outlineStyle, width: parseFloat(s.outlineWidth), color: s.outlineColor, shadow: s.boxShadow}; }"""


def _settled(pg) -> None:
    """Two animation frames: the page script's resize observer has fitted the first maps."""
    pg.evaluate("() => new Promise((r) => requestAnimationFrame(() => requestAnimationFrame(r)))")


def _analysed_at(browser, app_url, width: int, height: int, lecture: bool = False):
    pg = _open(browser, app_url, width, height)
    if lecture:
        pg.locator("#lecture input").check()
        pg.wait_for_function("() => document.body.classList.contains('hvl-lecture')")
    _analyse(pg)
    pg.wait_for_selector("#scales .hvl-class")
    pg.wait_for_function(
        "() => [...document.querySelectorAll('#first-maps img')].every((i) => i.complete && i.naturalWidth > 0)"
    )
    _settled(pg)
    return pg


def _box(pg, sel: str) -> dict:
    return pg.locator(sel).first.bounding_box()


def _luminance(rgb: str) -> float:
    def lin(c):
        c /= 255
        return c / 12.92 if c <= 0.03928 else ((c + 0.055) / 1.055) ** 2.4

    r, g, b = (lin(float(x)) for x in re.findall(r"[\d.]+", rgb)[:3])
    return 0.2126 * r + 0.7152 * g + 0.0722 * b


def contrast(a: str, b: str) -> float:
    hi, lo = sorted((_luminance(a), _luminance(b)), reverse=True)
    return (hi + 0.05) / (lo + 0.05)


def test_contrast_is_wcags():
    assert contrast("rgb(0, 0, 0)", "rgb(255, 255, 255)") == pytest.approx(21)
    assert contrast("rgb(213, 94, 0)", "rgb(255, 255, 255)") == pytest.approx(3.87, abs=0.02)


# --------------------------------------------------------------------------- the first screen


SIZES = [("lecture", 1920, 1080), ("laptop", 1366, 768), ("phone", 390, 844)]


@pytest.mark.parametrize("state,width,height", SIZES)
def test_the_first_screen_after_an_analysis(browser, app_url, state, width, height):
    """Lecture mode on a projector: upload, verdict, main map and its colour bar in the first
    screen, the gallery in 4 columns; a laptop: the map with its colour bar; a phone: the verdict
    scrolled into view whole, and the class set a few hundred pixels under the upload."""
    pg = _analysed_at(browser, app_url, width, height, lecture=state == "lecture")
    try:
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SCREENSHOTS / f"projector_{state}_{width}x{height}{SUFFIX}.png"))
        if state == "phone":
            verdict = _box(pg, "#decision .hvl-decision")
            assert 0 <= verdict["y"] < height / 2, verdict  # its top edge on the screen
            upload, preset = _box(pg, "#upload"), _box(pg, "#preset")
            assert 0 < preset["y"] - (upload["y"] + upload["height"]) < 700, (upload, preset)
            return
        pg.evaluate("() => window.scrollTo(0, 0)")
        needed = ["#decision .hvl-verdict", "#entropy-high .hvl-pic img", "#entropy-high .hvl-cbar"]
        if state == "lecture":
            needed.append("#upload")
        for sel in needed:
            box = _box(pg, sel)
            assert box["y"] >= 0 and box["y"] + box["height"] <= height, (sel, box)
            assert box["x"] >= 0 and box["x"] + box["width"] <= width, (sel, box)
        assert _box(pg, "#entropy-high .hvl-pic img")["height"] >= 200  # a map, not a stamp
        if state == "lecture":
            lefts = pg.locator("#examples button.thumbnail-item").evaluate_all(
                "els => new Set(els.map((b) => Math.round(b.getBoundingClientRect().left))).size"
            )
            assert lefts == 4
        _no_error_badges(pg)
    finally:
        pg.close()


@pytest.mark.parametrize("state,width,height,limit", [("laptop", 1366, 768, 14), ("lecture", 1920, 1080, 18)])
def test_no_text_is_smaller_than_a_room_can_read(browser, app_url, state, width, height, limit):
    pg = _analysed_at(browser, app_url, width, height, lecture=state == "lecture")
    try:
        pg.wait_for_selector("#distribution .hvl-dot", timeout=120_000)
        small = pg.evaluate(SMALL_TEXT_JS, limit)
        assert small == [], small[:12]
        # and the texts the issue measured, by name
        for sel in ("#examples .caption-label", "#threshold [data-testid=block-info]", ".hvl-backbone"):
            assert pg.locator(sel).first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)") >= limit, sel
    finally:
        pg.close()


# --------------------------------------------------------------------------- the keyboard


@pytest.fixture(scope="module")
def analysed(browser, app_url):
    pg = _analysed_at(browser, app_url, 1366, 768)
    yield pg
    pg.close()


#: (the control, the element its ring is drawn on: a radio or a checkbox rings its label)
CONTROLS = [
    ("#threshold input[type=range]", None),
    ("#threshold input[type=number]", None),
    ("#score input[type=radio]:checked", "label"),
    ("#entropy-filter input[type=checkbox]", "label"),
    ("#analyse", None),
    ("#backbone input", None),
    ("#examples button.thumbnail-item[tabindex='0']", None),
    (".hvl-skip a", None),
    ("#header summary", None),
]


@pytest.mark.parametrize("control,ring", CONTROLS)
def test_a_keyboard_focus_is_visible_on_every_control(analysed, control, ring):
    """The control reached by the keyboard (``:focus-visible``) against the same control unfocused:
    a solid outline of at least 3 px that stands at least 3:1 against the page."""
    pg = analysed
    el = pg.locator(control).first
    mark = el.locator(f"xpath=ancestor::{ring}[1]") if ring else el
    pg.evaluate("() => document.activeElement && document.activeElement.blur()")
    before = mark.evaluate(RING_JS)
    pg.keyboard.press("Shift")  # the keyboard is the last input: a focus now is a visible one
    el.focus()
    assert el.evaluate("e => e.matches(':focus-visible')")
    after = mark.evaluate(RING_JS)
    pg.keyboard.press("Escape")
    assert after != before, after
    assert after["style"] == "solid" and after["width"] >= 3, after
    page_bg = pg.evaluate("() => getComputedStyle(document.body).backgroundColor")
    assert contrast(after["color"], page_bg) >= 3, (after, page_bg)


def test_tab_never_lands_on_the_body(analysed):
    """From the first control (lecture mode) to the last (the footer's API link), through the
    Backbone dropdown and compare's images: every Tab stop is a control."""
    pg = analysed
    pg.locator("#lecture input").focus()
    seen = []
    for _ in range(80):
        pg.keyboard.press("Tab")
        where = pg.evaluate(
            "() => { const e = document.activeElement; if (e === document.body || e === null) return 'BODY'; "
            "return e.getAttribute('aria-label') || e.textContent.trim().slice(0, 30) || (e.closest('[id]') || {}).id; }"
        )
        seen.append(where)
        if where == "Use via API or MCP":
            break
    assert "BODY" not in seen, seen
    assert seen[-1] == "Use via API or MCP", seen
    for passed in ("Backbone", "Image B: an example…", "range slider for Threshold (MSP, 0 to 1)"):
        assert passed in seen, seen


def test_skip_links_land_where_the_arrow_keys_work(analysed):
    pg = analysed
    link = pg.locator(".hvl-skip a", has_text="the threshold")
    before = float(pg.locator("#decision .hvl-decision").get_attribute("data-threshold"))
    link.focus()
    pg.keyboard.press("Enter")
    assert pg.evaluate("() => document.activeElement.matches('#threshold input[type=range]')")
    # the range input steps on its grid (min + k·step): from a calibrated threshold off the grid
    # (0.128 for MSP), Chromium's ArrowRight goes one step above the nearest grid value (0.14)
    lo, step = pg.evaluate(
        "() => { const r = document.querySelector('#threshold input[type=range]'); return [+r.min, +r.step]; }"
    )
    up = lo + step * (round((before - lo) / step) + 1)
    pg.keyboard.press("ArrowRight")
    pg.wait_for_function(
        f"() => Math.abs(parseFloat(document.querySelector('#decision .hvl-decision').dataset.threshold) - {up}) < 1e-6"
    )
    pg.keyboard.press("ArrowLeft")
    pg.wait_for_function(
        f"() => Math.abs(parseFloat(document.querySelector('#decision .hvl-decision').dataset.threshold) - {up - step}) < 1e-6"
    )
    k0 = int(pg.locator("#k input[type=number]").input_value())
    pg.locator(".hvl-skip a", has_text="K").focus()
    pg.keyboard.press("Enter")
    assert pg.evaluate("() => document.activeElement.matches('#k input[type=range]')")
    pg.keyboard.press("ArrowRight")
    pg.wait_for_function(f"() => document.querySelector('#entropy-gain').innerText.includes('top-K = {k0 + 1} cells')")
    pg.keyboard.press("ArrowLeft")
    pg.wait_for_function(f"() => document.querySelector('#entropy-gain').innerText.includes('top-K = {k0} cells')")


def _control_on(pg, elem: str, value: float) -> None:
    """Waits until the box and the slider of ``#elem`` both show ``value``."""
    pg.wait_for_function(
        f"() => ['number', 'range'].every((t) => Math.abs(parseFloat("
        f"document.querySelector('#{elem} input[type=' + t + ']').value) - {value}) < 1e-6)"
    )


def test_a_refused_typed_value_leaves_the_control_on_the_value_in_use(analysed):
    pg = analysed
    in_use = float(pg.locator("#decision .hvl-decision").get_attribute("data-threshold"))
    box = pg.locator("#threshold input[type=number]")
    for typed in ("999", "-5"):
        box.fill(typed)
        box.press("Enter")
        pg.wait_for_function(
            f"() => document.querySelector('#threshold-note').innerText.includes('{typed} is outside this slider')"
        )
        _control_on(pg, "threshold", in_use)
        assert f"keeps the threshold {in_use:.3f}" in pg.locator("#threshold-note").inner_text()
    box.fill("999")
    pg.keyboard.press("Tab")  # leaving the box: gradio would clamp it to 1
    _control_on(pg, "threshold", in_use)
    # the next key starts from the value in use, not from the slider's end
    pg.locator("#threshold input[type=range]").focus()
    pg.keyboard.press("ArrowLeft")
    pg.wait_for_function(
        f"() => Math.abs(parseFloat(document.querySelector('#decision .hvl-decision').dataset.threshold) - {in_use - 0.01}) < 1e-6"
    )
    pg.keyboard.press("ArrowRight")
    _control_on(pg, "threshold", in_use)
    k_in_use = int(pg.locator("#k input[type=number]").input_value())
    k = pg.locator("#k input[type=number]")
    for typed in ("99", "0"):
        k.fill(typed)
        k.press("Enter")
        pg.wait_for_function(f"() => document.querySelector('#kn-note').innerText.includes('{typed} is not applied')")
        _control_on(pg, "k", k_in_use)
        assert f"K stays {k_in_use}" in pg.locator("#kn-note").inner_text()
    _no_error_badges(pg)


# --------------------------------------------------------------------------- axe on the other tabs


def test_axe_finds_nothing_serious_on_the_batch_tab_after_a_run(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    try:
        pg.get_by_role("tab", name="Batch").click()
        pg.set_input_files("#batch-files input[type=file]", [str(EXAMPLE), str(OOD), str(HISTO)])
        pg.wait_for_selector('#batch-files button[aria-label="Add files"]')
        pg.locator("#batch-run").click()
        pg.wait_for_function(
            "() => document.querySelector('#batch-summary').innerText.includes('of 3 known')", timeout=120_000
        )
        problems = _axe(pg)  # right after the run, while gradio would still fade the results in
        assert problems == [], problems
        assert pg.locator('button[aria-label="common.upload"]').count() == 0
    finally:
        pg.close()


def test_axe_finds_nothing_serious_on_the_compare_tab_after_a_comparison(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    try:
        pg.get_by_role("tab", name="Compare two images").click()
        pg.locator("#compare-run").click()
        pg.wait_for_function("() => document.querySelectorAll('#compare-out .hvl-compare-side').length === 2")
        problems = _axe(pg)
        assert problems == [], problems
        # heading-order (moderate): the sides' titles follow the page's h2
        from axe_playwright_python.sync_playwright import Axe

        ids = [v["id"] for v in Axe().run(pg).response["violations"]]
        assert "heading-order" not in ids, ids
    finally:
        pg.close()
