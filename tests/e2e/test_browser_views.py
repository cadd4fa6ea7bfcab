"""The teaching and comparison views in a real browser (Chromium, Playwright) against ``python
app.py``: the score distribution and the single-scale verdict after an upload, a teaching step
outlining its figures, the comparison of two images, the batch tab (a zip among the files, the
threshold moving verdicts without re-encoding, the CSV), the ``/batch`` endpoint and the MCP
tools. Screenshots of each view at 1366×768 and at a 390×844 phone go to ``out/screenshots/``.
"""

from __future__ import annotations

import json
import urllib.request
import zipfile

import pytest

from tests.e2e import test_browser as base
from tests.e2e.test_browser import ROOT, SCREENSHOTS, SUFFIX, _no_error_badges, _open

# the fixtures of the main browser test: this module gets an app server and a browser of its own
app_server, app_url, browser = base.app_server, base.app_url, base.browser

pytestmark = [pytest.mark.browser, pytest.mark.slow]

EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"
OOD = ROOT / "assets" / "ood_ct_vertebra.png"
HISTO = ROOT / "assets" / "histology_tumor_nuclei.jpg"
VIEWPORTS = [(1366, 768), (390, 844)]
N_REFERENCE = len(json.loads((ROOT / "assets" / "manifest.json").read_text()))  # the examples of the manifest


def _shot(pg, name: str, selector: str | None = None) -> None:
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    if selector:
        pg.locator(selector).first.scroll_into_view_if_needed()
        pg.wait_for_timeout(200)
    pg.screenshot(path=str(SCREENSHOTS / f"{name}{SUFFIX}.png"))


def _analyse(pg):
    pg.set_input_files("#upload input[type=file]", str(EXAMPLE))
    pg.wait_for_selector("#decision .hvl-decision")


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_distribution_and_single_scale(browser, app_url, width, height):
    pg = _open(browser, app_url, width, height)
    try:
        _analyse(pg)
        pg.wait_for_function(
            f"() => document.querySelectorAll('#distribution .hvl-dot').length === {N_REFERENCE}", timeout=120_000
        )
        pg.wait_for_selector("#single-scale .hvl-card")
        known = pg.locator("#decision .hvl-decision").get_attribute("data-known")
        cards = pg.locator("#single-scale .hvl-card")
        assert cards.count() == 2 and cards.nth(1).get_attribute("data-known") == known
        assert "known (ID): skin photos (2)" in pg.locator("#distribution").inner_text()
        assert (
            pg.locator("#distribution .hvl-mark").count() == 1
            and pg.locator("#distribution .hvl-axis-thr").count() >= 1
        )
        # the threshold moves the line in both views, and the single-scale verdicts follow
        box = pg.locator("#threshold input[type=number]")
        box.fill("0.99")
        box.press("Enter")
        pg.wait_for_function(
            "() => [...document.querySelectorAll('#single-scale .hvl-card')].every(c => c.dataset.known === '0')"
        )
        assert "0.990" in pg.locator("#distribution").inner_text()
        _shot(pg, f"view_distribution_{width}x{height}", "#distribution")
        _no_error_badges(pg)
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_teaching_step_outlines_its_figures(browser, app_url, width, height):
    pg = _open(browser, app_url, width, height)
    try:
        _analyse(pg)
        pg.locator("#step-picker label", has_text="3. Patch predictions").click()
        pg.wait_for_function(
            "() => document.querySelector('#entropy-high').classList.contains('hvl-highlight') "
            "&& document.querySelector('#entropy-mid').classList.contains('hvl-highlight')"
        )
        assert "hvl-step-pinned" in pg.locator("#teach-steps").get_attribute("class")
        pg.wait_for_function("() => document.querySelector('#step-text').innerText.includes('3 of 7')")
        assert "H̄¹ =" in pg.locator("#step-text").inner_text()
        assert pg.locator("#decision.hvl-highlight").count() == 0
        _shot(pg, f"view_teaching_step3_{width}x{height}")
        pg.locator("#step-picker label", has_text="6. Decision").click()
        pg.wait_for_function("() => document.querySelector('#decision').classList.contains('hvl-highlight')")
        assert pg.locator("#entropy-high.hvl-highlight").count() == 0
        pg.locator("#step-picker label", has_text="Off").click()
        pg.wait_for_function("() => !document.querySelector('#teach-steps').classList.contains('hvl-step-pinned')")
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_compare_two_images(browser, app_url, width, height):
    pg = _open(browser, app_url, width, height)
    try:
        pg.get_by_role("tab", name="Compare two images").click()
        pg.locator("#compare-run").click()
        pg.wait_for_function("() => document.querySelectorAll('#compare-out .hvl-compare-side').length === 2")
        pg.wait_for_function(
            "() => [...document.querySelectorAll('#compare-out img')].every(i => i.complete && i.naturalWidth > 0)"
        )
        assert pg.locator("#compare-out .hvl-decision").count() == 2
        assert pg.locator("#compare-out img").count() == 4  # each side: the analysed square and the main map
        sides = pg.locator("#compare-out .hvl-compare-side")
        a, b = sides.nth(0).bounding_box(), sides.nth(1).bounding_box()
        if width > 700:
            assert abs(a["y"] - b["y"]) < 2 and b["x"] > a["x"] + a["width"] - 1  # side by side, aligned
        else:
            assert b["y"] >= a["y"] + a["height"] - 1  # stacked on a phone
        _shot(pg, f"view_compare_{width}x{height}", "#compare-out")
        _no_error_badges(pg)
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


@pytest.mark.parametrize("width,height", VIEWPORTS)
def test_batch_tab(browser, app_url, width, height, tmp_path):
    z = tmp_path / "more.zip"
    with zipfile.ZipFile(z, "w") as zf:
        zf.write(HISTO, "sub/histo.jpg")
        zf.write(OOD, "../ct.png")
    pg = _open(browser, app_url, width, height)
    try:
        pg.get_by_role("tab", name="Batch").click()
        pg.set_input_files("#batch-files input[type=file]", [str(EXAMPLE), str(OOD), str(z)])
        pg.wait_for_timeout(800)
        pg.locator("#batch-run").click()
        pg.wait_for_function(
            "() => document.querySelector('#batch-summary').innerText.includes('of 4 known')", timeout=120_000
        )
        table = pg.locator("#batch-table").inner_text()
        for name in (EXAMPLE.name, OOD.name, "histo.jpg", "ct.png"):
            assert name in table
        assert pg.locator("#batch-hist .hvl-hist-bar").count() > 0
        # a threshold of 1.0 rejects everything: the table and the histogram follow, flips are counted
        box = pg.locator("#batch-threshold input[type=number]")
        box.fill("1")
        box.press("Enter")
        pg.wait_for_function("() => document.querySelector('#batch-summary').innerText.includes('0 of 4 known')")
        assert "flip (" in pg.locator("#batch-summary").inner_text()  # against the model's threshold
        pg.locator("#batch-csv-button").click()
        link = pg.locator("#batch-csv a[download='hvl-batch.csv']")
        link.wait_for()
        text = pg.request.get(link.get_attribute("href")).text()
        lines = text.splitlines()
        assert lines[0].startswith("file,class,score,score_name,threshold,verdict,") and len(lines) == 5
        assert "ct.png" in text
        assert all(line.split(",")[5] == "unknown" for line in lines[1:])  # the threshold of 1 rejected every image
        _shot(pg, f"view_batch_{width}x{height}", "#batch-hist")
        _no_error_badges(pg)
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


def test_batch_endpoint_and_mcp_tools(app_url):
    from gradio_client import Client, handle_file

    client = Client(app_url, verbose=False)
    rows = json.loads(
        client.predict([handle_file(str(EXAMPLE)), handle_file(str(OOD))], threshold=0.2, api_name="/batch")
    )
    assert [r["file"] for r in rows] == [EXAMPLE.name, OOD.name]
    assert all(r["known"] == (r["score"] >= 0.2) for r in rows)
    one = json.loads(client.predict(handle_file(str(EXAMPLE)), "dermatology-isic4", api_name="/predict"))
    assert "decision" in one and "msp" in one
    with urllib.request.urlopen(app_url + "gradio_api/mcp/schema", timeout=10) as r:
        tools = {t["name"] for t in json.loads(r.read())}
    assert tools == {"hvl_predict", "hvl_batch"}, tools  # the page's own events are no tools
