"""The lecture, by keyboard and on a projector, in a real browser (Chromium, Playwright) against
``python app.py``: K and n answer the arrow keys; a typed threshold, K or n out of range gets a
sentence beside its control; the header's "never seen" list and the reference groups agree; the
failure notes teach the MSP retina and the wrong-organ H&E; compare's image A follows the class
set; the batch tab's slider ends, table, histogram and CSV; the verdict, threshold and K a few Tab
stops from the image; axe-core (``axe-playwright-python``, its bundled axe.min.js) finds no serious
or critical violation on the empty page, after an analysis, in lecture mode and on a phone; the
layout faults a projector or a phone showed (labels over the drop zone, captions over thumbnails,
the verdict's top edge cut, a per-scale chart taller than the screen).
"""

from __future__ import annotations

import re

import pytest

from tests.e2e import test_browser as base
from tests.e2e.test_browser import ROOT, SCREENSHOTS, SUFFIX, _no_error_badges, _open

app_server, app_url, browser = base.app_server, base.app_url, base.browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"
OOD = ROOT / "assets" / "ood_ct_vertebra.png"
HISTO = ROOT / "assets" / "histology_tumor_nuclei.jpg"
#: axe-core impacts that fail the page
BLOCKING = ("serious", "critical")


def _analyse(pg, path=EXAMPLE):
    pg.set_input_files("#upload input[type=file]", str(path))
    pg.wait_for_selector("#decision .hvl-decision")


def _shot(pg, name: str) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    pg.screenshot(path=str(SCREENSHOTS / f"lecture_{name}{SUFFIX}.png"))


def _threshold(pg) -> float:
    return float(pg.locator("#decision .hvl-decision").get_attribute("data-threshold"))


def _axe(pg) -> list[str]:
    from axe_playwright_python.sync_playwright import Axe

    violations = Axe().run(pg).response["violations"]
    return [
        f"{v['id']} ({v['impact']}): {[n['target'] for n in v['nodes']][:3]}"
        for v in violations
        if v["impact"] in BLOCKING
    ]


# --------------------------------------------------------------------------- keyboard


@pytest.fixture(scope="module")
def analysed(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    _analyse(pg)
    yield pg
    pg.close()


def test_k_follows_the_arrow_keys(analysed):
    pg = analysed
    k0 = int(pg.locator("#k input[type=number]").input_value())
    pg.locator("#k input[type=range]").focus()
    pg.keyboard.press("ArrowRight")
    assert pg.locator("#k input[type=number]").input_value() == str(k0 + 1)
    pg.wait_for_function(f"() => document.querySelector('#entropy-gain').innerText.includes('top-K = {k0 + 1} cells')")
    pg.keyboard.press("ArrowLeft")
    pg.wait_for_function(f"() => document.querySelector('#entropy-gain').innerText.includes('top-K = {k0} cells')")
    _no_error_badges(pg)


def test_typed_values_out_of_range_get_a_sentence_beside_the_control(analysed):
    pg = analysed
    before = _threshold(pg)
    box = pg.locator("#threshold input[type=number]")
    for typed in ("999", "-999"):
        box.fill(typed)
        box.press("Enter")
        pg.wait_for_function(
            f"() => document.querySelector('#threshold-note').innerText.includes('{typed} is outside this slider')"
        )
        note = pg.locator("#threshold-note").inner_text()
        assert f"keeps the threshold {before:.3f}" in note and note.count(".") <= 6  # one sentence
        assert _threshold(pg) == pytest.approx(before)
    # the note sits right under the slider
    s, n = pg.locator("#threshold").bounding_box(), pg.locator("#threshold-note").bounding_box()
    assert 0 <= n["y"] - (s["y"] + s["height"]) < 40
    box.fill("0.3")
    box.press("Enter")
    pg.wait_for_function(
        "() => Math.abs(parseFloat(document.querySelector('#decision .hvl-decision').dataset.threshold) - 0.3) < 1e-9"
    )
    pg.wait_for_function("() => document.querySelector('#threshold-note').innerText.trim() === ''")
    k = pg.locator("#k input[type=number]")
    k.fill("99")
    k.press("Enter")
    pg.wait_for_function("() => document.querySelector('#kn-note').innerText.includes('99 is not applied')")
    assert "whole number from 1 to 16" in pg.locator("#kn-note").inner_text()
    k.fill("3")
    k.press("Enter")
    pg.wait_for_function("() => document.querySelector('#entropy-gain').innerText.includes('top-K = 3 cells')")
    pg.wait_for_function("() => document.querySelector('#kn-note').innerText.trim() === ''")
    _no_error_badges(pg)


def test_n_follows_the_arrow_keys(analysed):
    pg = analysed
    pg.locator("#n input[type=range]").focus()
    pg.keyboard.press("ArrowLeft")  # 2 → 1: re-encoded with a 1×1 mid grid
    pg.wait_for_function("() => document.querySelector('#model-info').innerText.includes('n = 1 (6 crops)')")
    assert pg.locator("#k input[type=range]").get_attribute("max") == "4"
    pg.keyboard.press("ArrowRight")
    pg.wait_for_function("() => document.querySelector('#model-info').innerText.includes('n = 2 (21 crops)')")
    _no_error_badges(pg)


def test_energy_threshold_out_of_range_is_answered(analysed):
    pg = analysed
    pg.locator("#score input[value='energy']").check()
    pg.wait_for_function("() => document.querySelector('#decision .hvl-decision').dataset.scoreName === 'energy'")
    before = _threshold(pg)
    box = pg.locator("#threshold input[type=number]")
    box.fill("999")
    box.press("Enter")
    pg.wait_for_function("() => document.querySelector('#threshold-note').innerText.includes('energy units')")
    assert _threshold(pg) == pytest.approx(before)
    pg.locator("#score input[value='msp']").check()
    pg.wait_for_function("() => document.querySelector('#decision .hvl-decision').dataset.scoreName === 'msp'")
    pg.wait_for_function("() => document.querySelector('#threshold-note').innerText.trim() === ''")


def test_verdict_threshold_and_k_are_a_few_tab_stops_from_the_image(analysed):
    """From the upload box: the "jump to" links, then the examples (one stop), the backbone, the
    class set and the score (one stop each), the threshold; each link puts the focus on its target."""
    pg = analysed
    pg.evaluate("() => window.scrollTo(0, 0)")

    def tab_from_upload(n: int) -> list[str]:
        pg.locator("#upload button.upload-container").focus()
        seen = []
        for _ in range(n):
            pg.keyboard.press("Tab")
            seen.append(
                pg.evaluate(
                    "() => { const e = document.activeElement; "
                    "return e.getAttribute('aria-label') || e.textContent.trim().slice(0, 40); }"
                )
            )
        return seen

    seen = tab_from_upload(10)
    for target in ("the verdict", "the threshold", "K"):
        assert target in seen, seen
    assert any(s.startswith("number input for Threshold") for s in seen), seen
    for link, focused in (
        ("the verdict", "() => document.activeElement.closest('#decision') !== null"),
        ("the threshold", "() => document.activeElement.matches('#threshold input[type=range]')"),
        ("K", "() => document.activeElement.matches('#k input[type=range]')"),
    ):  # the sliders themselves, where the arrow keys work (test_browser_projector presses them)
        tab_from_upload(seen.index(link) + 1)
        pg.keyboard.press("Enter")
        assert pg.evaluate(focused), link


# --------------------------------------------------------------------------- one truth per page


def test_the_header_and_the_reference_groups_say_one_thing(browser, app_url):
    """No example whose kind of picture the header's "About" says the backbone never saw is counted
    as "known (ID)"; the failure notes teach the MSP retina and the wrong-organ H&E."""
    import json

    manifest = json.loads((ROOT / "assets" / "manifest.json").read_text())
    pg = _open(browser, app_url, 1366, 768)
    try:
        pg.locator("#header summary").click()  # the backbone's facts are under the header's "About"
        header = pg.locator("#header").inner_text()
        assert "never seen " in header or "seeded random weights" in header, header
        never = header.split("never seen ", 1)[1].split(". ", 1)[0] if "never seen " in header else ""
        _analyse(pg)
        pg.wait_for_selector("#distribution .hvl-dot", timeout=120_000)
        text = pg.locator("#distribution").inner_text()
        unseen = [e for e in manifest if e["kind"] == "skin" and e.get("imaging") and e["imaging"] in never]
        seen = [e for e in manifest if e["kind"] == "skin" and e not in unseen]
        assert f"known (ID): skin photos ({len(seen)})" in text, text
        if unseen:
            assert "known classes, unseen imaging" in text
        fails = pg.locator("#failures").inner_text()
        assert "Fundus retina, with the paper's score" in fails and "melanocytic nevus" in fails
        assert "H&E of another organ" in fails and "smooth muscle" in fails
    finally:
        pg.close()


def test_compare_image_a_follows_the_class_set(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    try:
        pg.wait_for_selector("#examples button.thumbnail-item img")
        srcs = pg.locator("#examples button.thumbnail-item img").evaluate_all("els => els.map(e => e.src)")
        for kind, caption in (("histology_", "Histology"), ("skin_", "Skin")):
            index = next(i for i, s in enumerate(srcs) if kind in s)
            pg.locator("#examples button.thumbnail-item").nth(index).click()
            pg.wait_for_selector("#decision .hvl-decision")
            pg.wait_for_function(
                f"() => document.querySelector('#compare-a input').value.startsWith('{caption}:')", timeout=30_000
            )
        pg.get_by_role("tab", name="Compare two images").click()
        pg.locator("#compare-run").click()
        pg.wait_for_function("() => document.querySelectorAll('#compare-out .hvl-compare-side').length === 2")
        assert "skin_" in pg.locator("#compare-out .hvl-compare-side").nth(0).inner_text()
    finally:
        pg.close()


# --------------------------------------------------------------------------- batch


def test_batch_ends_table_histogram_and_csv(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    try:
        pg.get_by_role("tab", name="Batch").click()
        pg.set_input_files("#batch-files input[type=file]", [str(EXAMPLE), str(OOD), str(HISTO)])
        pg.wait_for_timeout(800)
        pg.locator("#batch-run").click()
        pg.wait_for_function(
            "() => document.querySelector('#batch-summary').innerText.includes('of 3 known')", timeout=120_000
        )
        ends = [pg.locator(f"#batch-threshold [data-testid={e}]").inner_text() for e in ("min-value", "max-value")]
        assert all(re.fullmatch(r"-?\d+(\.\d{1,2})?", e) for e in ends), ends
        table = pg.locator("#batch-table").inner_text()
        numbers = re.findall(r"(?<![\w.])-?\d+\.\d+(?![\w.])", table)
        assert numbers and all(re.fullmatch(r"-?\d+\.\d{3}", c) for c in numbers), numbers
        thr = float(pg.locator("#batch-threshold input[type=number]").input_value())
        bars = pg.locator("#batch-hist .hvl-hist-bar").evaluate_all("els => els.map(e => e.title)")
        for title in bars:  # "a–b: count": no bin holds both sides of the threshold
            a, b = (float(x.replace("−", "-")) for x in title.split(":")[0].split("–"))
            assert not a < thr - 1e-3 < thr + 1e-3 < b, (title, thr)
        assert "known (≥ threshold)" in pg.locator("#batch-hist .hvl-legend").inner_text()
        pg.locator("#batch-csv-button").click()
        link = pg.locator("#batch-csv a[download='hvl-batch.csv']")
        link.wait_for()
        lines = pg.request.get(link.get_attribute("href")).text().splitlines()
        head = lines[0].split(",")
        assert head[:6] == ["file", "class", "score", "score_name", "threshold", "verdict"], head
        rows = [line.split(",") for line in lines[1:]]
        assert len(rows) == 3 and len({r[3] for r in rows}) == 1 and rows[0][3] in ("msp", "energy", "maxlogit")
        assert all(float(r[4]) == pytest.approx(thr, abs=1e-6) for r in rows)
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.locator("#batch-hist").scroll_into_view_if_needed()
        _shot(pg, "batch_1366x768")
        _no_error_badges(pg)
    finally:
        pg.close()


# --------------------------------------------------------------------------- axe and layout


STATES = [("empty", 1366, 768), ("analysed", 1366, 768), ("lecture", 1920, 1080), ("phone", 390, 844)]


def _open_state(browser, app_url, state: str, width: int, height: int):
    """A page in one of ``STATES``: before any analysis, after one, in lecture mode, on a phone."""
    pg = _open(browser, app_url, width, height)
    pg.wait_for_selector("#examples button.thumbnail-item img")
    if state != "empty":
        _analyse(pg)
        pg.wait_for_selector("#scales .hvl-class")
        pg.wait_for_timeout(600)  # the phone's scroll to the verdict
    if state == "lecture":
        pg.locator("#lecture input").check()
        pg.wait_for_function("() => document.body.classList.contains('hvl-lecture')")
    return pg


@pytest.mark.parametrize("state,width,height", STATES)
def test_axe_finds_nothing_serious(browser, app_url, state, width, height):
    pg = _open_state(browser, app_url, state, width, height)
    try:
        _shot(pg, f"{state}_{width}x{height}")
        problems = _axe(pg)
        assert problems == [], problems
        if state == "empty":  # the empty p_ID chart has a text alternative
            assert pg.locator("#top-classes [role=img][aria-label]").count() >= 1
        _no_error_badges(pg)
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


@pytest.mark.parametrize("state,width,height", STATES[1:])
def test_nothing_covers_the_drop_zone_the_thumbnails_or_the_verdict(browser, app_url, state, width, height):
    pg = _open_state(browser, app_url, state, width, height)
    try:
        # the upload box's label never covers its "Drop File Here"
        label = pg.locator("#upload label[data-testid=block-label]").bounding_box()
        drop, click = (
            pg.locator("#upload [data-testid=upload-text]").evaluate(
                "(el, text) => { const w = document.createTreeWalker(el, NodeFilter.SHOW_TEXT); let n; "
                "while ((n = w.nextNode()) && !n.textContent.includes(text)); "
                "const r = document.createRange(); r.selectNodeContents(n); const b = r.getBoundingClientRect(); "
                "return {y: b.top, height: b.height, bottom: b.bottom}; }",
                text,
            )
            for text in ("Drop File Here", "Click to Upload")
        )
        assert drop["height"] > 0 and label["y"] + label["height"] <= drop["y"] + 1, (label, drop)
        zone = pg.locator("#upload button.upload-container").bounding_box()
        assert click["bottom"] <= zone["y"] + zone["height"] + 1, (click, zone)  # not cut off either
        # each gallery caption sits under its picture, whole (not clipped by its thumbnail)
        boxes = pg.locator("#examples button.thumbnail-item").evaluate_all(
            "els => els.map(b => { const r = (e) => e.getBoundingClientRect(); "
            "const c = r(b.querySelector('.caption-label')); const i = r(b.querySelector('img')); "
            "return {img: i.bottom, top: c.top, bottom: c.bottom, height: c.height, button: r(b).bottom}; })"
        )
        assert boxes and all(
            b["top"] >= b["img"] - 1 and b["bottom"] <= b["button"] + 1 and b["height"] > 8 for b in boxes
        ), boxes
        if state == "phone":  # the verdict scrolled into view with its top edge on the screen
            box = pg.locator("#decision .hvl-decision").bounding_box()
            assert 0 <= box["y"] < height / 2, box
        else:  # the per-scale chart: a few rows, legible type, most of one screen at most
            chart = pg.locator("#scales .hvl-chart")
            assert chart.bounding_box()["height"] <= 0.75 * 768, chart.bounding_box()
            size = chart.locator(".hvl-class-name").first.evaluate("e => parseFloat(getComputedStyle(e).fontSize)")
            assert size >= 15 and pg.locator("#scales .hvl-class").count() <= 6
            # each row: its name beside its four bars, which stand one under another
            lefts = chart.locator(".hvl-class").evaluate_all(
                "els => els.map(c => [...c.querySelectorAll('.hvl-barrow')].map(b => b.getBoundingClientRect().left))"
            )
            assert all(len(row) == 4 and max(row) - min(row) < 1 for row in lefts), lefts
    finally:
        pg.close()
