"""The demo in a real browser: Debian's Chromium driven by Playwright against ``python app.py``.

Uploads an example, waits for the decision, moves the threshold across the score and watches
the decision flip both ways, checks that every overlay is an image of nonzero size, clicks a
gallery example, uploads a bad file (a readable message, and the app keeps working), changes the
decision score (the slider follows its units), uploads a whole-slide image and clicks its
thumbnail to pick another tile, clicks a "where OOD detection fails" example. Also: the
controls before any analysis (no error badge, no console error), the first screen at 1366×768
and 1920×1080 (verdict, analysed image, main map) and on a 390×844 phone (the verdict scrolled
into view), alt text and the live region, lecture mode. Screenshots of each viewport go to
``out/screenshots/`` — look at them after a change to the page.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

pytestmark = [pytest.mark.browser, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--headless",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]
SCREENSHOTS = ROOT / "out" / "screenshots"
EXAMPLE = ROOT / "assets" / "skin_nevus_closeup.jpg"
OVERLAYS = ["#thumbnail", "#entropy-high", "#entropy-mid", "#entropy-gain", "#patch-classes"]
STARTUP_TIMEOUT_S = 150
#: the backbone the app runs with (HVL_TEST_BACKBONE=medmnist-densenet121 for the offline one);
#: screenshots of another backbone than the default get its name as a suffix
BACKBONE = os.environ.get("HVL_TEST_BACKBONE", "tiny-clip-random")
SUFFIX = "" if BACKBONE == "tiny-clip-random" else f"_{BACKBONE}"


def _require_browser():
    if not os.path.exists(CHROMIUM):
        if os.environ.get("CI"):
            pytest.fail(f"{CHROMIUM} is missing in CI; scripts/setup.sh --dev installs it (apt-get install chromium)")
        pytest.skip(f"{CHROMIUM} is not installed (scripts/setup.sh --dev installs it); CI is not set")
    try:
        import playwright.sync_api  # noqa: F401
    except ImportError:
        if os.environ.get("CI"):
            raise
        pytest.skip("the playwright package is not installed (requirements-dev.txt)")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def app_server(tmp_path_factory):
    """``python app.py`` on a free port: yields (url, log path); at the end, the log must hold no
    traceback and no gradio warning about arguments."""
    _require_browser()
    port = _free_port()
    log_path = tmp_path_factory.mktemp("app") / "app.log"
    env = {
        **os.environ,
        "HVL_BACKBONE": BACKBONE,
        "HVL_DEVICE": "cpu",
        "GRADIO_SERVER_NAME": "127.0.0.1",
        "GRADIO_SERVER_PORT": str(port),
        "GRADIO_TEMP_DIR": str(tmp_path_factory.mktemp("gradio-cache")),
    }
    with open(log_path, "w") as log:
        proc = subprocess.Popen([sys.executable, "app.py"], cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}/"
    try:
        deadline = time.monotonic() + STARTUP_TIMEOUT_S
        while True:
            if proc.poll() is not None:
                pytest.fail(f"app.py exited with {proc.returncode}:\n{log_path.read_text()[-3000:]}")
            try:
                with urllib.request.urlopen(url, timeout=2) as r:
                    if r.status == 200:
                        break
            except OSError:
                pass
            if time.monotonic() > deadline:
                pytest.fail(f"app.py did not answer within {STARTUP_TIMEOUT_S} s:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url, log_path
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    text = log_path.read_text()
    for bad in ("Traceback", "Too many arguments", "didn't return enough output values"):
        assert bad not in text, text[-3000:]


@pytest.fixture(scope="module")
def app_url(app_server):
    return app_server[0]


@pytest.fixture(scope="module")
def browser(app_url):
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


def _open(browser, app_url, width: int, height: int):
    """A fresh page at this viewport, recording console errors and requests that leave the machine."""
    pg = browser.new_page(viewport={"width": width, "height": height})
    pg.set_default_timeout(60_000)
    pg.external_requests, pg.console_errors = [], []
    pg.on(
        "request",
        lambda r: pg.external_requests.append(r.url) if not r.url.startswith((app_url, "data:", "blob:")) else None,
    )
    pg.on("console", lambda m: pg.console_errors.append(m.text) if m.type == "error" else None)
    pg.on("pageerror", lambda e: pg.console_errors.append(str(e)))
    pg.goto(app_url)
    pg.wait_for_selector("#upload input[type=file]", state="attached")
    return pg


@pytest.fixture(scope="module")
def page(browser, app_url):
    pg = _open(browser, app_url, 1400, 1000)
    yield pg
    pg.close()


def _decision(page) -> dict:
    d = page.locator("#decision .hvl-decision")
    return {
        "known": d.get_attribute("data-known"),
        "msp": float(d.get_attribute("data-msp")),
        "score": float(d.get_attribute("data-score")),
        "score_name": d.get_attribute("data-score-name"),
        "threshold": float(d.get_attribute("data-threshold")),
        "text": d.locator(".hvl-verdict").inner_text(),
    }


def _wait_decision(page, known: str, threshold: float | None = None) -> dict:
    cond = f"d.dataset.known === '{known}'"
    if threshold is not None:
        cond += f" && Math.abs(parseFloat(d.dataset.threshold) - {threshold}) < 1e-6"
    page.wait_for_function(
        f"() => {{ const d = document.querySelector('#decision .hvl-decision'); return d !== null && {cond}; }}"
    )
    return _decision(page)


def _set_threshold(page, value: float) -> None:
    box = page.locator("#threshold input[type=number]")
    box.fill(f"{value:.2f}")
    box.press("Enter")


def _overlay_sizes(page) -> dict:
    out = {}
    for sel in OVERLAYS:
        img = page.locator(f"{sel} img").first
        img.wait_for(state="visible")
        page.wait_for_function(
            f"() => {{ const i = document.querySelector('{sel} img'); return i && i.complete && i.naturalWidth > 0; }}"
        )
        out[sel] = img.evaluate(
            "i => [i.naturalWidth, i.naturalHeight, i.getBoundingClientRect().width, i.getBoundingClientRect().height]"
        )
    return out


def _no_error_badges(page) -> None:
    """Gradio marks a failed event with a red "Error" badge on its outputs: there must be none."""
    assert page.get_by_text("Error", exact=True).count() == 0
    assert "Traceback" not in page.content()


def test_controls_are_safe_before_any_analysis(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    try:
        assert pg.locator("#threshold input[type=range]").get_attribute("step") == "0.01"
        box = pg.locator("#threshold input[type=number]")
        box.fill("0.30")
        box.press("Enter")
        pg.locator("#threshold input[type=range]").press("ArrowRight")
        pg.locator("#entropy-filter input").uncheck()
        pg.locator("#renormalize input").check()
        k = pg.locator("#k input[type=number]")
        k.fill("2")
        k.press("Enter")
        pg.wait_for_timeout(1500)  # let any event come back
        _no_error_badges(pg)
        assert pg.locator("#decision .hvl-empty").count() == 1  # still waiting for an image
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


def _in_view(page, selector: str) -> bool:
    box = page.locator(selector).first.bounding_box()
    vp = page.viewport_size
    return (
        box is not None
        and box["y"] >= -1
        and box["y"] + min(box["height"], 60) <= vp["height"] + 1
        and box["x"] >= -1
        and box["x"] + box["width"] <= vp["width"] + 1
    )


@pytest.mark.parametrize("width,height", [(1366, 768), (1920, 1080), (390, 844)])
def test_one_screen_after_an_upload(browser, app_url, width, height):
    """Verdict, analysed image and main map on the first screen (desktop); on a phone the page
    brings the verdict into view. Screenshots at each viewport go to out/screenshots/."""
    pg = _open(browser, app_url, width, height)
    try:
        pg.set_input_files("#upload input[type=file]", str(EXAMPLE))
        pg.wait_for_selector("#decision .hvl-decision")
        pg.wait_for_selector("#entropy-high img")
        pg.wait_for_timeout(500)  # the scroll into view
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.screenshot(path=str(SCREENSHOTS / f"app_{width}x{height}{SUFFIX}.png"))
        pg.screenshot(path=str(SCREENSHOTS / f"app_{width}x{height}{SUFFIX}_full.png"), full_page=True)
        if width >= 1000:
            pg.evaluate("() => window.scrollTo(0, 0)")
            for sel in ("#decision .hvl-verdict", "#thumbnail img", "#entropy-high img"):
                box = pg.locator(sel).first.bounding_box()
                assert box and box["y"] + box["height"] <= height and box["x"] + box["width"] <= width, (sel, box)
        else:
            assert _in_view(pg, "#decision .hvl-verdict"), pg.locator("#decision").bounding_box()
        _no_error_badges(pg)
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


def test_figures_are_described_and_the_decision_is_announced(page):
    if page.locator("#decision .hvl-decision").count() == 0:
        page.set_input_files("#upload input[type=file]", str(EXAMPLE))
        page.wait_for_selector("#decision .hvl-decision")
    _overlay_sizes(page)
    alts = page.locator(
        "#thumbnail img, #entropy-high img, #entropy-mid img, #entropy-gain img, #patch-classes img"
    ).evaluate_all("els => els.map(e => e.alt)")
    assert len(alts) == 6 and all(len(a) > 40 for a in alts), alts
    assert any("entropy" in a and "4×4" in a for a in alts) and any("pseudo-OOD" in a for a in alts)
    live = page.locator("#decision[aria-live=polite], #decision [aria-live=polite]")
    assert live.count() == 1 and live.locator(".hvl-verdict").count() == 1  # the verdict is announced
    # the rule of each map is written on its figure; the chart has the threshold line
    assert "ΔH > 0" in page.locator("#entropy-gain").inner_text()
    assert (
        "Hatched" in page.locator("#entropy-high").inner_text()
        or "none is dropped" in page.locator("#entropy-high").inner_text()
    )
    assert page.locator("#scales .hvl-thr").count() >= 1
    for sel in ("#entropy-high", "#entropy-mid", "#entropy-gain", "#scales", "#teaching"):
        assert "−0.00" not in page.locator(sel).inner_text() and "-0.00" not in page.locator(sel).inner_text()


def test_lecture_mode_enlarges_the_type(page):
    size = lambda: page.evaluate("() => parseFloat(getComputedStyle(document.querySelector('#teaching')).fontSize)")  # noqa: E731
    before = size()
    page.locator("#lecture input").check()
    page.wait_for_function("() => document.body.classList.contains('hvl-lecture')")
    assert size() >= before * 1.2
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"app_lecture_mode{SUFFIX}.png"), full_page=True)
    page.locator("#lecture input").uncheck()
    page.wait_for_function("() => !document.body.classList.contains('hvl-lecture')")


def test_upload_decide_threshold_flip_overlays(page):
    t0 = time.monotonic()
    page.set_input_files("#upload input[type=file]", str(EXAMPLE))
    page.wait_for_selector("#decision .hvl-decision")
    first = _decision(page)
    assert first["known"] in ("0", "1")
    elapsed = time.monotonic() - t0
    assert elapsed < 60, f"first prediction took {elapsed:.1f} s"

    # every overlay is a real image with a nonzero size, on the page and in pixels
    sizes = _overlay_sizes(page)
    for sel, (nw, nh, w, h) in sizes.items():
        assert nw > 200 and nh > 200 and w > 100 and h > 100, (sel, sizes[sel])

    # teaching mode walks through this image
    teaching = page.locator("#teaching").inner_text()
    assert "How HVL reached this decision" in teaching and "21 crops" in teaching

    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"app_after_prediction{SUFFIX}.png"), full_page=True)

    # threshold below the score → Known, above → Unknown, and back: the decision flips each time
    score = first["score"]
    assert first["score_name"] == "msp" and score == pytest.approx(first["msp"])
    below, above = round(max(score - 0.05, 0.0), 2), round(min(score + 0.05, 1.0), 2)
    assert below < score < above
    _set_threshold(page, below)
    d = _wait_decision(page, "1", below)
    assert d["text"].startswith("Known: ") and d["score"] == pytest.approx(score)
    _set_threshold(page, above)
    d = _wait_decision(page, "0", above)
    assert d["text"] == "Unknown — refer to a specialist" and d["score"] == pytest.approx(score)
    assert "Rejected" in page.locator("#teaching").inner_text()
    _set_threshold(page, below)
    d = _wait_decision(page, "1", below)
    assert d["text"].startswith("Known: ")
    assert "Accepted" in page.locator("#teaching").inner_text()
    page.screenshot(path=str(SCREENSHOTS / f"app_threshold_known{SUFFIX}.png"), full_page=False)


def test_gallery_example_switches_preset_and_analyses(page):
    """Clicking a histology example analyses it with the histology class set."""
    names = page.locator("#examples button.thumbnail-item img").evaluate_all("els => els.map(e => e.src)")
    index = next(i for i, src in enumerate(names) if "histology_" in src)
    name = names[index].rsplit("/", 1)[-1]
    page.locator("#examples button.thumbnail-item").nth(index).click()
    page.wait_for_function(
        f"() => {{ const s = document.querySelector('#status'); return s && s.innerText.includes('{name}'); }}"
    )
    assert page.locator("#preset input[value='histology-nct-crc']").get_attribute("aria-checked") == "true"
    assert "Known classes (8)" in page.locator("#model-info").inner_text()
    assert _decision(page)["text"]
    _overlay_sizes(page)
    # the per-patch class map on H&E: numbered chips, a legend with all 8 classes and "other" (the
    # preset's negative class, background)
    legend = page.locator("#patch-classes .hvl-legend li").all_inner_texts()
    assert len(legend) == 9 and legend[-1] == "9other (not a known class)"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"app_histology{SUFFIX}.png"), full_page=True)


def test_changing_n_reencodes_and_head_options_rerender(page):
    box = page.locator("#n input[type=number]")
    box.fill("1")
    box.press("Enter")
    box.blur()
    page.wait_for_function("() => document.querySelector('#model-info').innerText.includes('n = 1 (6 crops)')")
    page.wait_for_function("() => document.querySelector('#teaching').innerText.includes('6 crops')")
    assert page.locator("#k input[type=range]").get_attribute("max") == "4"  # K ≤ 4n² high-scale cells
    page.locator("#entropy-filter input").uncheck()
    page.wait_for_function("() => document.querySelector('#teaching').innerText.includes('filter is off')")
    page.locator("#entropy-filter input").check()
    page.wait_for_function("() => !document.querySelector('#teaching').innerText.includes('filter is off')")
    _overlay_sizes(page)


def test_bad_upload_shows_a_message_and_the_app_keeps_working(page, tmp_path):
    bad = tmp_path / "not_an_image.png"
    bad.write_bytes(b"this is not an image at all\n" * 10)
    page.set_input_files("#upload input[type=file]", str(bad))
    err = page.locator("#decision .hvl-error-message")
    err.wait_for()
    assert "not an image this app can read" in err.inner_text()
    assert "Traceback" not in page.content()
    # the server still serves: a good upload works again
    page.set_input_files("#upload input[type=file]", str(EXAMPLE))
    page.wait_for_selector("#decision .hvl-decision")
    assert _decision(page)["text"]


def test_score_chooser_moves_the_slider_to_the_score_units(page):
    """Energy instead of MSP: the decision, its bar and the slider are in energy units; back to MSP."""
    if page.locator("#decision .hvl-decision").count() == 0:
        page.set_input_files("#upload input[type=file]", str(EXAMPLE))
        page.wait_for_selector("#decision .hvl-decision")
    page.locator("#score input[value='energy']").check()
    page.wait_for_function(
        "() => { const d = document.querySelector('#decision .hvl-decision'); "
        "return d && d.dataset.scoreName === 'energy'; }"
    )
    d = _decision(page)
    assert "energy" in page.locator("#threshold").inner_text()
    lo = float(page.locator("#threshold input[type=range]").get_attribute("min"))
    hi = float(page.locator("#threshold input[type=range]").get_attribute("max"))
    assert lo < d["score"] < hi and lo < d["threshold"] < hi and hi - lo >= 10  # a window around both
    assert "energy units" in page.locator("#decision").inner_text()
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"app_energy_score{SUFFIX}.png"), full_page=False)
    # a threshold above the image's energy (above 1 too: not MSP's range) rejects it
    _set_threshold(page, d["score"] + 1)
    page.wait_for_function("() => document.querySelector('#decision .hvl-decision').dataset.known === '0'")
    page.locator("#score input[value='msp']").check()
    page.wait_for_function("() => document.querySelector('#decision .hvl-decision').dataset.scoreName === 'msp'")
    assert page.locator("#threshold input[type=range]").get_attribute("max") == "1"
    _no_error_badges(page)


def _slide_file(tmp_path):
    from tests.wsi_files import write_pyramid

    path = tmp_path / "slide.tiff"
    write_pyramid(path, 3072, 2048, mpp=0.5, levels=3)
    return path


@pytest.mark.parametrize("width,height", [(1366, 768), (390, 844)])
def test_slide_thumbnail_and_a_click_that_picks_a_tile(browser, app_url, tmp_path, width, height):
    """A pyramidal TIFF: its thumbnail with the analysed tile ringed; a click elsewhere on the
    thumbnail analyses the tile there."""
    pg = _open(browser, app_url, width, height)
    try:
        pg.set_input_files("#upload input[type=file]", str(_slide_file(tmp_path)))
        pg.wait_for_selector("#thumbnail img.hvl-slide")
        notes = pg.locator("#thumbnail").inner_text()
        assert "whole-slide image, 3072×2048 px" in notes and "picked automatically" in notes
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.locator("#thumbnail").scroll_into_view_if_needed()
        pg.screenshot(path=str(SCREENSHOTS / f"app_slide_{width}x{height}{SUFFIX}.png"), full_page=False)
        img = pg.locator("#thumbnail img.hvl-slide")
        box = img.bounding_box()
        img.click(position={"x": box["width"] * 0.1, "y": box["height"] * 0.9})  # lower left: glass
        pg.wait_for_function("() => document.querySelector('#thumbnail').innerText.includes('where you clicked')")
        x, y = (
            int(v) for v in pg.locator("#thumbnail").inner_text().split("centred at (")[1].split(")")[0].split(", ")
        )
        assert abs(x - 307) <= 20 and abs(y - 1843) <= 20, (x, y)  # 10% and 90% of 3072×2048
        _no_error_badges(pg)
        assert pg.console_errors == [], pg.console_errors[:5]
    finally:
        pg.close()


def test_an_ood_image_shows_where_its_probability_went(browser, app_url):
    """An out-of-domain image: the top classes and the per-scale chart sum to 1 on screen, with the
    share of the negative classes ("other", on backbones that have them) and the dropped patches."""
    pg = _open(browser, app_url, 1366, 768)
    try:
        pg.set_input_files("#upload input[type=file]", str(ROOT / "assets" / "ood_ct_vertebra.png"))
        pg.wait_for_selector("#decision .hvl-decision")
        chart = pg.locator("#scales").inner_text()
        assert "dropped by the entropy filter" in chart and "sum 0.00" not in chart
        vals = [float(v) for v in pg.locator("#scales .hvl-val").all_inner_texts()]
        assert [round(sum(vals[i::4]), 2) for i in range(4)] == [1.0, 1.0, 1.0, 1.0]
        if BACKBONE == "medmnist-densenet121":  # negative classes: the other labels of the classifier
            assert "other (not a known class)" in chart
            assert "other (not a known class)" in pg.locator("#top-classes").inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        pg.locator("#scales").scroll_into_view_if_needed()
        pg.screenshot(path=str(SCREENSHOTS / f"app_ood_shares{SUFFIX}.png"), full_page=True)
        _no_error_badges(pg)
    finally:
        pg.close()


def test_failure_examples_are_explained(page):
    """The "where OOD detection fails" set: in the gallery, a sentence each under it."""
    assert "Where OOD detection fails" in page.locator("#failures").inner_text()
    page.wait_for_selector("#examples button.thumbnail-item img")
    srcs = page.locator("#examples button.thumbnail-item img").evaluate_all("els => els.map(e => e.src)")
    index = next(i for i, src in enumerate(srcs) if "failure_ihc" in src)
    page.locator("#examples button.thumbnail-item").nth(index).click()
    page.wait_for_function(
        "() => { const s = document.querySelector('#status'); "
        "return s && s.innerText.includes('failure_ihc_colon.jpg'); }"
    )
    assert page.locator("#preset input[value='histology-nct-crc']").get_attribute("aria-checked") == "true"
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"app_failure_ihc{SUFFIX}.png"), full_page=True)


def test_no_requests_leave_the_machine_and_no_console_errors(page):
    assert page.external_requests == [], page.external_requests[:5]
    assert page.console_errors == [], page.console_errors[:5]


def test_backbone_chooser_is_labelled_and_an_offline_choice_is_one_sentence(browser, app_url):
    pg = _open(browser, app_url, 1366, 768)
    try:
        pg.set_input_files("#upload input[type=file]", str(EXAMPLE))
        pg.wait_for_selector("#decision .hvl-decision")
        pg.locator("#backbone input").click()
        options = pg.locator("ul[role=listbox] li").all_inner_texts()
        assert len(options) >= 5 and any("label-only" in o and "MedMNIST" in o for o in options), options
        assert any("vision-language" in o and "zero-shot" in o for o in options)
        from hvl_core.hub import unavailable_offline

        if not unavailable_offline("timm/vit_base_patch16_clip_224.openai", ["open_clip_model.safetensors"]):
            pytest.skip("the CLIP weights can be had here: no offline failure to show")
        pg.locator("ul[role=listbox] li", has_text="CLIP ViT-B/16 (the paper's)").first.click()
        err = pg.locator("#decision .hvl-error-message")
        err.wait_for()
        assert "Cannot load clip-vit-b16" in err.inner_text()
        _no_error_badges(pg)
    finally:
        pg.close()
