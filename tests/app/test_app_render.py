"""The demo's pure parts: pixel-exact overlays (grid, cells, hatching, outlines, class chips,
the analysed square), the HTML figures (pictures, alt text, rules, colour bars), number
formatting, the decision text and its threshold flip, teaching-mode text."""

import base64
import io
import math
import re
from types import SimpleNamespace

import numpy as np
import pytest

from app import decision as dec
from app import figures, render, thumbnails
from app.teaching import Context, teaching_markdown, why_sentence

WHITE = np.array([255, 255, 255], np.uint8)
BLACK = np.zeros(3, np.uint8)


def black(size):
    return np.zeros((size, size, 3), np.uint8)


# --------------------------------------------------------------------------- grid geometry


@pytest.mark.parametrize("size,g", [(448, 4), (100, 3), (97, 7), (224, 2), (10, 10), (450, 8)])
def test_cell_edges_cover_the_whole_side(size, g):
    e = render.cell_edges(size, g)
    assert len(e) == g + 1 and e[0] == 0 and e[-1] == size
    assert np.all(np.diff(e) >= size // g) and np.all(np.diff(e) <= -(-size // g))


@pytest.mark.parametrize("size,g,t", [(448, 4, 2), (100, 3, 1), (97, 7, 2), (60, 4, 3), (224, 8, 1)])
def test_grid_lines_include_last_row_col_and_outer_border(size, g, t):
    out = render.draw_grid(black(size), g, color=(255, 255, 255), thickness=t)
    # outer border: first and last rows/columns are fully line-coloured
    for line in (out[0], out[-1], out[:, 0], out[:, -1]):
        assert np.all(line == WHITE)
    # every interior boundary, including the one before the last row / column
    for e in render.cell_edges(size, g)[1:-1]:
        a, b = render.line_span(int(e), size, t)
        assert a <= e < b or (a <= e - 1 < b)
        assert np.all(out[a:b, :] == WHITE), f"row line at {e} missing"
        assert np.all(out[:, a:b] == WHITE), f"column line at {e} missing"
    last = render.cell_edges(size, g)[-2]  # the boundary above the last row / left of the last column
    assert np.all(out[last, :] == WHITE) or np.all(out[last - 1, :] == WHITE)
    # the interior of every cell (away from the lines) is untouched — count the cells
    e = render.cell_edges(size, g)
    untouched = 0
    for r in range(g):
        for c in range(g):
            cy, cx = (e[r] + e[r + 1]) // 2, (e[c] + e[c + 1]) // 2
            untouched += int(np.all(out[cy, cx] == BLACK))
    assert untouched == g * g
    # and nothing but the grid was drawn: lit rows are exactly the line spans
    lit_rows = set(np.nonzero(np.all(out[:, :, 0] == 255, axis=1))[0])
    expected = set()
    for edge in e:
        a, b = render.line_span(int(edge), size, t)
        expected |= set(range(a, b))
    assert lit_rows == expected


def test_grid_of_one_cell_is_just_the_border():
    out = render.draw_grid(black(20), 1, thickness=1)
    assert np.all(out[0] == WHITE) and np.all(out[-1] == WHITE)
    assert np.all(out[1:-1, 1:-1] == BLACK)


def test_grid_rejects_bad_input():
    with pytest.raises(ValueError):
        render.draw_grid(np.zeros((10, 12, 3), np.uint8), 2)
    with pytest.raises(ValueError):
        render.draw_grid(np.zeros((10, 10), np.uint8), 2)
    with pytest.raises(ValueError):
        render.cell_edges(3, 4)


# --------------------------------------------------------------------------- heatmaps


def test_value_colors_span_the_colour_scale():
    vals = np.array([[0.0, 0.5], [1.0, 2.0]])
    cols = render.value_colors(vals, "viridis", 0.0, 1.0)
    assert cols.shape == (2, 2, 3) and cols.dtype == np.uint8
    cmap = render.colormaps["viridis"]
    lo = np.round(np.array(cmap(0.0)[:3]) * 255)
    hi = np.round(np.array(cmap(1.0)[:3]) * 255)
    assert np.array_equal(cols[0, 0], lo)
    assert np.array_equal(cols[1, 0], hi)
    assert np.array_equal(cols[1, 1], hi)  # clipped above vmax
    assert not np.array_equal(cols[0, 1], lo) and not np.array_equal(cols[0, 1], hi)


def test_paint_cells_puts_each_colour_in_its_own_cell():
    size, g = 90, 3
    colors = np.arange(g * g * 3, dtype=np.uint8).reshape(g, g, 3) * 9
    out = render.paint_cells(black(size), colors, alpha=1.0)
    assert out.shape == (size, size, 3)
    for r in range(g):
        for c in range(g):
            y0, y1, x0, x1 = render.cell_box(r, c, size, g)
            assert np.all(out[y0:y1, x0:x1] == colors[r, c])
    # half blend on a grey image: (1 - a)·128 + a·colour
    grey = np.full((size, size, 3), 128, np.uint8)
    half = render.paint_cells(grey, colors, alpha=0.5)
    assert np.array_equal(half[5, 5], np.round(0.5 * 128 + 0.5 * colors[0, 0].astype(float)).astype(np.uint8))


def test_entropy_overlay_colour_scale_and_hatching():
    size, g = 120, 2
    image = np.full((224, 224, 3), 128, np.uint8)
    h = np.array([[0.0, math.log(4)], [0.3, 0.9]])
    keep = np.array([[True, False], [True, True]])
    out = render.entropy_overlay(image, h, keep, vmax=math.log(4), size=size)
    assert out.shape == (size, size, 3)
    e = render.cell_edges(size, g)
    lo = render.value_colors(np.array([[0.0]]), render.ENTROPY_CMAP, 0, 1)[0, 0].astype(float)
    expected = np.round((1 - render.HEAT_ALPHA) * 128 + render.HEAT_ALPHA * lo)
    # the certain cell (0, 0) is the low end of the colour scale, blended with the image
    assert np.allclose(out[e[0] + 10, e[0] + 10], expected, atol=1)
    # the dropped cell (0, 1) is hatched: it has hatch-coloured pixels, the kept cells none
    y0, y1, x0, x1 = render.cell_box(0, 1, size, g)
    inner = out[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
    assert np.any(np.all(inner == render.HATCH_COLOR, axis=-1))
    for r, c in [(0, 0), (1, 0), (1, 1)]:
        y0, y1, x0, x1 = render.cell_box(r, c, size, g)
        inner = out[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3]
        assert not np.any(np.all(inner == render.HATCH_COLOR, axis=-1)), (r, c)
    # and greyed: the non-hatch pixels of the dropped cell are (almost) grey
    y0, y1, x0, x1 = render.cell_box(0, 1, size, g)
    inner = out[y0 + 3 : y1 - 3, x0 + 3 : x1 - 3].reshape(-1, 3).astype(int)
    inner = inner[~np.all(inner == render.HATCH_COLOR, axis=-1)]
    assert np.max(inner.max(1) - inner.min(1)) < 40
    # grid drawn, last column boundary included
    assert np.all(out[:, -1] == render.GRID_COLOR)


def test_hatch_pattern_is_diagonal_stripes():
    out = render.hatch_cells(black(40), np.ones((1, 1), bool), spacing=10, width=2)
    yy, xx = np.mgrid[0:40, 0:40]
    stripes = ((xx + yy) % 10) < 2
    assert np.all(out[stripes] == render.HATCH_COLOR)
    assert np.all(out[~stripes] == 0)


# --------------------------------------------------------------------------- pseudo-OOD outlines


def test_outline_cells_draws_at_the_expected_cell_borders():
    size, g, t = 200, 4, 3
    color = (0, 230, 0)
    cells = [(0, 3), (3, 3), (2, 1)]  # includes the last row and the last column
    out = render.outline_cells(black(size), cells, g, color=color, thickness=t)
    is_c = np.all(out == color, axis=-1)
    for r, c in cells:
        y0, y1, x0, x1 = render.cell_box(r, c, size, g)
        # all four sides, thickness t, just inside the cell
        assert is_c[y0 : y0 + t, x0:x1].all() and is_c[y1 - t : y1, x0:x1].all()
        assert is_c[y0:y1, x0 : x0 + t].all() and is_c[y0:y1, x1 - t : x1].all()
        # the interior is untouched
        assert not is_c[y0 + t : y1 - t, x0 + t : x1 - t].any()
    # a cell that is not selected and touches none of them has no outline
    y0, y1, x0, x1 = render.cell_box(0, 0, size, g)
    assert not is_c[y0:y1, x0:x1].any()
    # the outlined pixels are exactly the union of the three rings
    ring = np.zeros((size, size), bool)
    for r, c in cells:
        y0, y1, x0, x1 = render.cell_box(r, c, size, g)
        ring[y0:y1, x0:x1] = True
        ring[y0 + t : y1 - t, x0 + t : x1 - t] = False
    assert np.array_equal(is_c, ring)


def test_gain_overlay_outlines_the_listed_cells_only():
    image = np.full((64, 64, 3), 200, np.uint8)
    gain = np.array([[0.1, -0.1, 0, 0], [0, 0.2, 0, 0], [0, 0, 0, 0], [0, 0, 0, 0.3]])
    cells = [(3, 3), (1, 1)]
    out = render.gain_overlay(image, gain, cells, limit=0.3, size=160)
    is_c = np.all(out == render.OUTLINE_COLOR, axis=-1)
    for r in range(4):
        for c in range(4):
            y0, y1, x0, x1 = render.cell_box(r, c, 160, 4)
            mid_top = is_c[y0 + 1, (x0 + x1) // 2]  # top side, away from the grid corners
            assert mid_top == ((r, c) in cells), (r, c)
    with pytest.raises(ValueError):
        render.outline_cells(black(40), [(4, 0)], 4)


def test_class_overlay_tints_cells_and_writes_numbered_chips():
    pal = render.class_palette(3)
    assert len({tuple(p) for p in pal}) == 3
    assert [tuple(p) for p in pal] == [render.hex_rgb(c) for c in render.OKABE_ITO[:3]]  # Okabe–Ito
    cls = np.array([[0, 1], [2, 0]])
    size = 200
    out = render.class_overlay(np.zeros((32, 32, 3), np.uint8), cls, pal, size=size)
    y0, y1, x0, x1 = render.cell_box(1, 0, size, 2)
    # near the cell's corner: the tint, blended with the (black) image
    assert np.array_equal(out[y0 + 8, x0 + 8], np.round(render.HEAT_ALPHA * pal[2].astype(float)).astype(np.uint8))
    # in the centre: an opaque chip of the class colour, with its number (1-based) written on it
    cy, cx = (y0 + y1) // 2, (x0 + x1) // 2
    chip = out[cy - 15 : cy + 15, cx - 15 : cx + 15].reshape(-1, 3)
    is_colour = np.all(chip == pal[2], axis=-1)
    assert is_colour.mean() > 0.5  # mostly the class colour, not a blend
    ink = np.all(chip == render.text_colour(pal[2]), axis=-1)
    assert ink.sum() > 10  # the digit
    assert len({tuple(p) for p in render.class_palette(25)}) == 25


def test_text_colour_picks_the_readable_one():
    assert render.text_colour((0, 0, 0)) == (255, 255, 255)
    assert render.text_colour((240, 228, 66)) == (0, 0, 0)  # Okabe–Ito yellow
    assert render.text_colour((0, 114, 178)) == (255, 255, 255)  # Okabe–Ito blue


@pytest.mark.parametrize("w,h", [(300, 200), (200, 300), (250, 250), (301, 200)])
def test_center_square_box_matches_the_backbone_view(w, h):
    from PIL import Image as PILImage

    from hvl_core.geometry import center_square

    x0, y0, x1, y1 = thumbnails.center_square_box(w, h)
    assert x1 - x0 == y1 - y0 == min(w, h)
    img = PILImage.fromarray(np.arange(w * h * 3, dtype=np.uint32).reshape(h, w, 3).astype(np.uint8))
    assert np.array_equal(np.asarray(center_square(img)), np.asarray(img)[y0:y1, x0:x1])


def test_thumbnail_marks_the_analysed_square_and_dims_the_rest():
    from PIL import Image as PILImage

    img = PILImage.new("RGB", (300, 100), (200, 200, 200))
    out = thumbnails.thumbnail(img, max_side=300, dim=0.5)
    assert out.shape == (100, 300, 3)
    x0, y0, x1, y1 = thumbnails.center_square_box(300, 100)  # (100, 0, 200, 100)
    assert np.array_equal(out[50, 20], [100, 100, 100])  # outside: dimmed by half
    assert np.array_equal(out[50, 150], [200, 200, 200])  # inside: untouched
    assert np.array_equal(out[50, x0], thumbnails.SQUARE_COLORS[0])  # the dark ring on the square's edge
    assert np.array_equal(out[50, x1 - 1], thumbnails.SQUARE_COLORS[0])
    t = max(2, round(100 / 120))
    assert np.array_equal(out[50, x0 + t], thumbnails.SQUARE_COLORS[1])  # the light ring inside it
    small = thumbnails.thumbnail(PILImage.new("RGB", (1200, 600)), max_side=360)
    assert small.shape == (180, 360, 3)


def test_data_uri_round_trips_close_to_the_pixels():
    from PIL import Image as PILImage

    img = np.zeros((40, 60, 3), np.uint8)
    img[:, 30:] = render.OUTLINE_COLOR
    img[10:20, 5:15] = (255, 255, 255)
    uri = render.data_uri(img)
    assert uri.startswith("data:image/jpeg;base64,")
    back = np.asarray(PILImage.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))).convert("RGB"))
    assert back.shape == img.shape
    assert np.abs(back.astype(int) - img).max() <= 12  # full-resolution colour: flat areas and edges hold


# --------------------------------------------------------------------------- number formatting


def test_numbers_never_show_minus_zero():
    assert dec.fmt_num(-0.0001) == "0.00" and dec.fmt_num(-0.004, 2) == "0.00" and dec.fmt_num(-0.006) == "-0.01"
    assert dec.fmt_num(0.123, 3) == "0.123"
    assert dec.fmt_signed(-0.0001) == "0.00" and dec.fmt_signed(0.004) == "0.00"
    assert dec.fmt_signed(0.05) == "+0.05" and dec.fmt_signed(-0.05) == "−0.05"


def test_separating_digits_keeps_dropped_cells_visibly_above_the_mean():
    # mean 0.0025: at 2 decimals every value and the mean read "0.00", and the dropped ones would
    # look equal to it; at 3 decimals 0.004 > 0.003 (mean rounds up) and 0.001 < 0.003
    vals = np.array([0.001, 0.004])
    assert dec.separating_digits(vals, vals.mean()) == 3
    assert dec.separating_digits(np.array([0.1, 0.9]), 0.5) == 2
    assert dec.separating_digits(np.array([0.500001, 0.5]), 0.5, hi=4) == 4  # gives up at hi


# --------------------------------------------------------------------------- figures on a real Prediction


@pytest.fixture(scope="module")
def prediction(tiny_model):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)
    return tiny_model.predict(img, threshold=0.5)


@pytest.fixture(scope="module")
def neg_model(tiny_backbone):
    """The tiny model with two negative classes: some of every softmax goes to "other"."""
    import dataclasses

    from hvl_core import load_model
    from hvl_core.presets import class_set_from_names

    cs = dataclasses.replace(class_set_from_names(["melanoma", "nevus", "scar"]), negatives=("ruler", "hair"))
    return load_model(tiny_backbone, classes=cs, device="cpu", tau=1.0)


@pytest.fixture(scope="module")
def neg_encoded(neg_model):
    return neg_model.encode(np.random.default_rng(5).integers(0, 255, (96, 96, 3), dtype=np.uint8))


@pytest.fixture(scope="module")
def neg_prediction(neg_model, neg_encoded):
    return neg_model.decide(neg_encoded)


def _images(fig_html):
    """The (picture, alt text) pairs of a figure's HTML."""
    from PIL import Image as PILImage

    out = []
    for uri, alt in re.findall(
        r"<img (?:class='[^']*' )?src='data:image/jpeg;base64,([^']+)' alt='([^']*)'>", fig_html
    ):
        out.append((np.asarray(PILImage.open(io.BytesIO(base64.b64decode(uri))).convert("RGB")), alt))
    return out


def test_figures_hold_real_pictures_with_alt_text(prediction):
    from hvl_core.images import load_image

    loaded = load_image(np.zeros((120, 200, 3), np.uint8) + 90)
    for html, count in (
        (figures.entropy_html(prediction, 1), 1),
        (figures.entropy_html(prediction, 2), 1),
        (figures.gain_html(prediction), 1),
        (figures.classes_html(prediction), 2),
        (figures.thumbnail_html(loaded, "scan.png", 224), 1),
    ):
        imgs = _images(html)
        assert len(imgs) == count, html[:300]
        for arr, alt in imgs:
            assert arr.ndim == 3 and min(arr.shape[:2]) >= 100 and arr.std() > 10
            assert len(alt) > 40
    with pytest.raises(ValueError):
        figures.entropy_html(prediction, 3)


def test_entropy_figure_says_what_it_shows_for_this_image(prediction):
    html = figures.entropy_html(prediction, 2)
    ((arr, alt),) = _images(html)
    assert arr.shape == (render.DISPLAY_SIZE, render.DISPLAY_SIZE, 3)
    dropped = int((~prediction.keep2).sum())
    assert f"{dropped} hatched patches" in alt and "4×4" in alt
    r, c = np.unravel_index(int(np.argmin(prediction.entropy2)), prediction.entropy2.shape)
    assert f"row {r}, column {c}" in alt
    assert f"({dropped} of 16)" in html
    # the colour bar spans viridis from its first to its last colour, 0 to ln C
    lo = render.value_colors(np.array([[0.0]]), render.ENTROPY_CMAP, 0, 1)[0, 0]
    hi = render.value_colors(np.array([[1.0]]), render.ENTROPY_CMAP, 0, 1)[0, 0]
    grad = re.search(r"linear-gradient\(to right, (.*?)\)'", html).group(1)
    first, last = grad.split(", rgb")[0], grad.split(", rgb")[-1]
    assert np.abs(np.array(re.findall(r"\d+", first)[:3], int) - lo.astype(int)).max() <= 1
    assert np.abs(np.array(re.findall(r"\d+", last)[:3], int) - hi.astype(int)).max() <= 1
    assert f"{math.log(4):.2f} = ln 4: evenly split over the 4 classes" in html
    off = figures.entropy_html(prediction, 2, entropy_filter=False)
    assert "Entropy filter off" in off


def test_cell_labels_never_run_into_their_neighbours():
    """Long labels on a 6×6 grid: the font shrinks until each fits inside its cell, so no white
    text pixel reaches a cell border."""
    size, g = render.DISPLAY_SIZE, 6
    labels = [["0.00003"] * g for _ in range(g)]
    out = render.label_cells(black(size), labels)
    edges = render.cell_edges(size, g)
    for x in edges[1:-1]:
        assert not (out[:, x - 1 : x + 2] > 200).all(axis=-1).any(), x
    assert (out > 200).all(axis=-1).sum() > 100  # the labels are drawn
    cell = int(np.diff(edges).min())
    px = render.fit_px(labels, cell, 26)
    assert px < 26 and render.font(px).getlength("0.00003") < 0.9 * cell
    assert render.fit_px([["1.2"]], cell, 20) == 20  # a short label keeps its size


def test_tiny_entropies_get_a_per_map_unit(prediction):
    """Entropies that need four or more decimals are written in units of 10⁻ᵉ: short labels, and
    the figure says the unit; ordinary ones keep plain decimals."""
    import dataclasses

    from app.figures.base import CellUnits

    h = prediction.entropy2 * 1e-4 + 1e-5
    u = CellUnits.for_values(h, float(h.mean()))
    assert u.power >= 4 and all(len(s) <= 4 for row in u.labels(h) for s in row), u
    # a patch above the mean still reads above it
    above = h > h.mean()
    assert all(
        (float(s) > float(u.fmt(h.mean()))) == a for row, arow in zip(u.labels(h), above) for s, a in zip(row, arow)
    )
    assert u.text(h.mean()) == u.fmt(h.mean()) + " × 10⁻" + "⁰¹²³⁴⁵⁶⁷⁸⁹"[u.power]
    html = figures.entropy_html(dataclasses.replace(prediction, entropy2=h), 2)
    assert "in units of 10⁻" in html and "nats" in html
    plain = CellUnits.for_values(prediction.entropy2, float(prediction.entropy2.mean()))
    assert plain.power == 0 and "in units of" not in figures.entropy_html(prediction, 2)


def test_gain_figure_outlines_only_positive_candidates():
    g = 4
    gain = np.zeros((g, g))
    gain[0, 0], gain[1, 1], gain[2, 2], gain[3, 3] = 0.3, 0.1, -0.05, -0.2
    image = np.full((224, 224, 3), 128, np.uint8)
    pred = SimpleNamespace(entropy_gain=gain, pseudo_ood=[(0, 0), (1, 1), (2, 2), (0, 1)], image=image, k=4)
    assert figures.candidates(pred) == [(0, 0), (1, 1)]  # ΔH = 0 and ΔH < 0 are no candidates
    html = figures.gain_html(pred)
    ((arr, alt),) = _images(html)
    is_c = np.abs(arr.astype(int) - render.OUTLINE_COLOR).max(-1) <= 16  # the picture is a JPEG
    for (r, c), outlined in (((0, 0), True), ((1, 1), True), ((2, 2), False), ((0, 1), False)):
        y0, y1, x0, x1 = render.cell_box(r, c, render.DISPLAY_SIZE, g)
        assert bool(is_c[y0 + 1, (x0 + x1) // 2 - 30]) == outlined, (r, c)
    assert "ΔH &gt; 0" in html and "2 of the top 4 have ΔH ≤ 0" in html
    assert "row 0, column 0 (ΔH +0.30)" in alt and "row 2, column 2" not in alt
    assert "−0.00" not in html and "-0.00" not in html


def test_scales_chart_draws_the_threshold_and_keeps_the_legend_off_the_bars(prediction):
    html = figures.scales_html(prediction, max_classes=len(prediction.classes))
    thr = re.findall(r"class='hvl-thr' style='left:([0-9.]+)%'", html)
    assert len(thr) == len(prediction.classes) and all(float(t) == pytest.approx(50.0) for t in thr)
    assert html.index("hvl-legend") < html.index("hvl-chart")  # legend above the bars, not on them
    widths = [float(w) for w in re.findall(r"class='hvl-fill' style='width:([0-9.]+)%", html)]
    # a row per known class, and one for the share the entropy filter dropped (no negatives here)
    assert len(widths) == 4 * (len(prediction.classes) + 1) and "dropped by the entropy filter" in html
    assert max(widths) == pytest.approx(
        100
        * max(
            prediction.p0.max(),
            prediction.p1.max(),
            prediction.p2.max(),
            prediction.p_id.max(),
            prediction.p_dropped["p2"],
        ),
        abs=0.01,
    )


def test_scales_chart_is_compact_by_default(prediction):
    """A projector's chart: the three likeliest classes, the rest in one row, then dropped."""
    html = figures.scales_html(prediction)
    names = re.findall(r"<div class='hvl-class-name'>([^<]+)</div>", html)
    assert len(names) == 5 and names[3] == "the 1 less likely known classes" and "dropped" in names[4]
    assert _column_sums(html) == pytest.approx([1, 1, 1, 1], abs=0.003)


def _column_sums(html):
    """The chart's values, per series (p⁰, p¹, p², p_ID), summed over its rows."""
    vals = [float(v) for v in re.findall(r"<span class='hvl-val'>([0-9.]+)</span>", html)]
    return [sum(vals[i::4]) for i in range(4)]


def test_scales_chart_sums_to_one_with_other_and_dropped(neg_prediction):
    """With negative classes the chart has an "other" row, and every series sums to 1 on screen."""
    pred = neg_prediction
    html = figures.scales_html(pred)
    assert "other (not a known class)" in html and "dropped by the entropy filter" in html
    assert _column_sums(html) == pytest.approx([1, 1, 1, 1], abs=0.003)  # rounding of the shown values
    # more known classes than rows: the rest are one row, and the sums still hold
    few = figures.scales_html(pred, max_classes=1)
    assert "the 2 less likely known classes" in few and _column_sums(few) == pytest.approx([1, 1, 1, 1], abs=0.003)


def test_scales_chart_with_a_logit_score_draws_no_probability_threshold(neg_model, neg_encoded):
    pred = neg_model.decide(neg_encoded, score="maxlogit", threshold=0.0)
    html = figures.scales_html(pred)
    assert "hvl-thr" not in html and "max-logit score, not these probabilities" in html


def test_figure_keys_change_only_with_what_they_draw(tiny_model):
    enc = tiny_model.encode(np.random.default_rng(3).integers(0, 255, (64, 64, 3), dtype=np.uint8))
    a, b = tiny_model.decide(enc, k=4), tiny_model.decide(enc, k=2)
    assert figures.entropy_key(a, 2, True) == figures.entropy_key(b, 2, True)
    assert figures.scales_key(a) == figures.scales_key(b) and figures.classes_key(a) == figures.classes_key(b)
    assert figures.gain_key(a) != figures.gain_key(b)
    c = tiny_model.decide(enc, k=4, entropy_filter=False)
    assert figures.entropy_key(a, 2, True) != figures.entropy_key(c, 2, False)
    t = tiny_model.decide(enc, threshold=0.9)
    assert figures.scales_key(a) != figures.scales_key(t) and figures.gain_key(a) == figures.gain_key(t)


# --------------------------------------------------------------------------- decision text


def fake_pred(
    msp, threshold, label="melanoma", known=None, score=None, score_name="msp", score_range=(0.0, 1.0), source="default"
):
    score = msp if score is None else score
    known = score >= threshold if known is None else known
    p = np.array([msp, 1 - msp])
    return SimpleNamespace(
        msp=msp,
        score=score,
        score_name=score_name,
        score_range=score_range,
        threshold=threshold,
        threshold_source=source,
        known=known,
        label=label,
        classes=[label, "other"],
        p_id=p,
        p0=p,
        p1=p,
        p2=p,
        top=lambda k=3: [(label, msp), ("other", 1 - msp)][:k],
        outcome="known" if known else "unknown",
        scope=None,
        precision=None,
        p_value=None,
        deciding_p_value=None,
        n_calibration=0,
    )


def test_decision_text_known_and_unknown():
    assert dec.decision_text(fake_pred(0.731, 0.5)) == "Known: melanoma (0.731)"
    assert dec.decision_text(fake_pred(0.42, 0.5)) == "Unknown — refer to a specialist"
    # the verdict follows hvl_core's `known`, not a recomputation
    assert dec.decision_text(fake_pred(0.9, 0.5, known=False)) == dec.UNKNOWN_TEXT
    # another score is named, and its value is the decision score, not MSP
    energy = fake_pred(0.99, -5.796, score=-2.25, score_name="energy", score_range=(None, None))
    assert dec.decision_text(energy) == "Known: melanoma (energy -2.250)"
    assert dec.comparison_text(energy) == "energy -2.250 ≥ threshold -5.796"


def test_scores_that_round_equal_get_more_digits():
    assert dec.fmt_score(0.5004, 0.5) == "0.5004"
    assert dec.fmt_score(0.5, 0.5004) == "0.5000"
    assert dec.fmt_score(0.61, 0.5) == "0.610"
    assert dec.comparison_text(fake_pred(0.4996, 0.5)) == "MSP 0.4996 < threshold 0.5000"
    assert dec.fmt_score(-0.0002) == "0.000"  # never "-0.000"


def test_decision_html_marks_score_and_threshold_on_the_bar():
    html = dec.decision_html(fake_pred(0.731, 0.25))
    assert 'data-known="1"' in html and "width:73.1%" in html and "left:calc(25.0% - 2px)" in html
    assert ">Known: melanoma<" in html and "MSP 0.731 ≥ threshold 0.250" in html  # the score on its own line
    html = dec.decision_html(fake_pred(0.2, 0.6, label="<b>x</b>"))
    assert 'data-known="0"' in html and "width:20.0%" in html and "Unknown" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html  # class names are escaped
    assert dec.bar_position(1.7) == 100.0 and dec.bar_position(-1) == 0.0


def test_decision_bar_of_an_unbounded_score_spans_its_window():
    """Energy −2 against threshold −6 on the window [−10, 0]: the fill ends at 80%, the line at 40%."""
    pred = fake_pred(0.99, -6.0, score=-2.0, score_name="energy", score_range=(None, None))
    html = dec.decision_html(pred, window=(-10.0, 0.0))
    assert "width:80.0%" in html and "left:calc(40.0% - 2px)" in html
    assert 'data-score="-2.000000"' in html and 'data-score-name="energy"' in html
    assert ">-10</span>" in html and ">0</span>" in html  # the ends of the window are written
    assert dec.bar_position(-12, (-10, 0)) == 0.0 and dec.bar_position(3, (-10, 0)) == 100.0


def test_score_window():
    # MSP: its whole range
    assert dec.score_window((0.0, 1.0), (0.3, 0.9)) == (0.0, 1.0)
    # unbounded: WINDOW_MARGIN (5) past the threshold and the score, rounded out to whole units
    assert dec.score_window((None, None), (-5.796, -2.25)) == (-11.0, 3.0)
    # the current window stays while it holds both values (the slider does not move under the hand)
    assert dec.score_window((None, None), (-7.0, -2.25), current=(-11.0, 3.0)) == (-11.0, 3.0)
    # a new image far outside it: a new window
    assert dec.score_window((None, None), (-5.796, -35.5), current=(-11.0, 3.0)) == (-41.0, 0.0)
    # a bounded but wide range (cosine energy, ±1/τ): the window, kept inside the range
    assert dec.score_window((-98.6, 101.4), (-97.0, -96.0)) == (-98.6, -91.0)


def test_threshold_note_names_units_and_source():
    msp = fake_pred(0.7, 0.408, source="measured")
    assert dec.threshold_note(msp) == (
        "Threshold 0.408 (MSP, 0 to 1): this backbone's default for these classes, measured on real images."
    )
    assert dec.threshold_note(msp, where=True).endswith("real images (bench/results/decision_defaults.md).")
    energy = fake_pred(0.7, -5.796, score=-2.0, score_name="energy", source="calibrated")
    assert dec.threshold_note(energy).startswith("Threshold -5.796 (energy units): calibrated")
    assert "neutral default, not measured" in dec.threshold_note(fake_pred(0.7, 0.5))
    given = fake_pred(0.7, 1.5, score=1.5, score_name="maxlogit", source="given")
    assert dec.threshold_note(given) == "Threshold 1.500 (max-logit units): set by you."
    assert "no max-logit threshold was measured or calibrated" in dec.threshold_note(given, measured_elsewhere=False)


def test_threshold_flip_on_a_real_model(tiny_model):
    """Moving the threshold across the score flips the decision, from the cached encoding."""
    enc = tiny_model.encode(np.full((64, 64, 3), 90, np.uint8))
    msp = tiny_model.decide(enc).msp
    below, above = tiny_model.decide(enc, threshold=msp - 1e-3), tiny_model.decide(enc, threshold=msp + 1e-3)
    at = tiny_model.decide(enc, threshold=msp)
    assert below.known and at.known and not above.known  # known iff MSP >= threshold
    assert dec.decision_text(below).startswith("Known: ") and dec.decision_text(above) == dec.UNKNOWN_TEXT
    assert below.msp == above.msp


def test_top_classes_for_the_label_component(prediction):
    top = dec.top_classes(prediction, 3)
    # three known classes, the fourth on its own line, and the dropped share: nothing hidden
    assert list(top)[:3] == [c for c, _ in prediction.top(3)] and "the 1 less likely known classes" in top
    assert top["dropped by the entropy filter"] == pytest.approx(prediction.p_dropped["p_id"], abs=1e-6)
    assert top[prediction.label] == pytest.approx(prediction.msp, abs=1e-6)
    assert sum(top.values()) == pytest.approx(1.0, abs=1e-5)


def test_top_classes_show_the_other_share(neg_prediction):
    top = dec.top_classes(neg_prediction)
    assert top["other (not a known class)"] == pytest.approx(neg_prediction.p_other["p_id"], abs=1e-6)
    assert top["other (not a known class)"] > 0.01 and sum(top.values()) == pytest.approx(1.0, abs=1e-5)


# --------------------------------------------------------------------------- teaching text


def test_teaching_text_uses_this_images_numbers(prediction):
    ctx = Context(original_size=(260, 300), image_size=224, entropy_filter=True)
    md = teaching_markdown(prediction, ctx)
    n = prediction.n
    assert f"{1 + n * n + 4 * n * n} crops" in md
    assert "260×300 px" in md
    d1 = dec.separating_digits(prediction.entropy1, float(prediction.entropy1.mean()), lo=3, hi=6)
    assert f"H̄¹ = {prediction.entropy1.mean():.{d1}f}" in md
    assert "p_ID = (p⁰ + p¹ + p²) ÷ 3" in md
    c = prediction.class_index
    assert f"= **{prediction.p_id[c]:.3f}**" in md
    for r, col in prediction.pseudo_ood:
        assert f"({r}, {col}) ΔH = {dec.fmt_signed(prediction.entropy_gain[r, col], 3)}" in md
    positive = sum(prediction.entropy_gain[r, c] > 0 for r, c in prediction.pseudo_ood)
    assert f"the {positive} with ΔH > 0 are outlined" in md
    dropped = list(zip(*np.nonzero(~prediction.keep2)))
    r, col = dropped[0]
    assert f"({r}, {col})" in md
    assert "random weights" in md  # tiny-clip-random is flagged


def test_teaching_table_separates_dropped_cells_from_the_mean():
    from app.teaching import scale_paragraph

    h = np.array([[0.0001, 0.0004], [0.0002, 0.0001]])  # mean 0.0002: at 3 decimals all read 0.000
    keep = h <= h.mean()
    text = scale_paragraph("Mid", "¹", h, keep, np.array([0.5, 0.2]), Context())
    assert "H̄¹ = 0.0002" in text and "0.0004 ✗" in text and "0.000 ✗" not in text


def test_why_sentence_accepts_and_rejects(tiny_model):
    enc = tiny_model.encode(np.full((64, 64, 3), 30, np.uint8))
    msp = tiny_model.decide(enc).msp
    yes = why_sentence(tiny_model.decide(enc, threshold=msp - 0.05))
    no = why_sentence(tiny_model.decide(enc, threshold=min(msp + 0.05, 1.0)))
    assert yes.startswith("**Accepted**") and "+0.050" in yes
    assert no.startswith("**Rejected") and "0.050 below" in no
    off = teaching_markdown(tiny_model.decide(enc, entropy_filter=False), Context(entropy_filter=False))
    assert "filter is **off**" in off


def test_teaching_words_follow_the_backbone(neg_prediction):
    """Vision-language: "the text of each class"; label-only: the classifier's rows, no text. The
    entropy's top is ln(C + negatives), over all of them."""
    vl = teaching_markdown(neg_prediction, Context(kind="vision-language"))
    lo = teaching_markdown(neg_prediction, Context(kind="label-only", similarity="linear", class_bias=True))
    assert "compared with the text of each of the C = 3 known classes" in vl
    assert "text of each" not in lo and "label-only" in lo and "output row of each of the C = 3" in lo
    assert f"ln 5 = {math.log(5):.3f} = evenly split over all 5" in vl and "ln C" not in vl
    assert "3 known and 2 negative classes" in vl
    assert "untrained (zero-shot)" in vl and "zero-shot" not in lo and "the classifier's own" in lo
    assert "trained (checkpoint ck-1)" in teaching_markdown(neg_prediction, Context(checkpoint="ck-1"))


def test_teaching_table_holds_other_and_dropped_and_sums_to_one(neg_prediction):
    md = teaching_markdown(neg_prediction, Context())
    other = next(line for line in md.splitlines() if line.startswith("| *other (not a known class)*"))
    assert f"{neg_prediction.p_other['p_id']:.3f} |" in other
    total = next(line for line in md.splitlines() if line.startswith("| **total**"))
    assert total == "| **total** | 1.000 | 1.000 | 1.000 | 1.000 |"  # the sum of the rows above it, as shown


def test_rejection_blames_the_negatives_and_the_filter_by_their_own_shares(neg_model, neg_encoded):
    pred = neg_model.decide(neg_encoded, threshold=1.0)
    text = why_sentence(pred)
    assert text.startswith("**Rejected")
    assert f"{pred.p_other['p_id']:.2f} went to “other (not a known class)”" in text
    assert f"{pred.p_dropped['p_id']:.2f} is the share of patches the entropy filter dropped" in text


def test_teaching_decision_step_in_the_units_of_a_logit_score(neg_model, neg_encoded):
    pred = neg_model.decide(neg_encoded, score="energy", threshold=1.0)
    md = teaching_markdown(pred, Context(threshold_measured=False))
    s0, s1, s2 = pred.scale_scores
    assert f"({dec.fmt_num(s0, 3)} + {dec.fmt_num(s1, 3)} + {dec.fmt_num(s2, 3)}) ÷ 3 = " in md
    assert "The energy score is T·log Σ exp" in md and "energy units" in md
    assert "started just under the image's own score" in md


def test_class_map_shows_other_where_the_negatives_win(neg_prediction):
    pred = neg_prediction
    for patches in (pred.p1_patches, pred.p2_patches):
        cls = figures.patch_classes(pred, patches)
        other = 1 - patches.sum(-1)
        assert np.array_equal(cls == len(pred.classes), other > patches.max(-1))
    html = figures.classes_html(pred)
    assert "4</span>other (not a known class)</li>" in html  # the grey chip is number C + 1


def test_tile_box_and_slide_thumbnail():
    from PIL import Image as PILImage

    # a 448-px tile centred at (1000, 600) of a 4000×2000 slide, on a 400×200 thumbnail: ÷ 10
    assert thumbnails.tile_box((4000, 2000), (400, 200), (1000, 600), 448) == (78, 38, 122, 82)
    thumb = PILImage.new("RGB", (400, 200), (200, 100, 150))
    out = thumbnails.slide_thumbnail(thumb, (78, 38, 122, 82))
    assert out.shape == (200, 400, 3)
    assert np.all(out[38, 90] == thumbnails.SQUARE_COLORS[0]) and np.all(out[60, 100] == (200, 100, 150))
    assert np.all(out[150, 300] == (200, 100, 150))  # nothing else is touched
    # a tile of a few thumbnail pixels still gets a ring of MIN_TILE_RING px
    tiny = thumbnails.slide_thumbnail(thumb, (200, 100, 202, 102))
    dark = np.all(tiny == thumbnails.SQUARE_COLORS[0], axis=-1)
    ys, xs = np.nonzero(dark)
    assert xs.max() - xs.min() + 1 == thumbnails.MIN_TILE_RING and ys.max() - ys.min() + 1 == thumbnails.MIN_TILE_RING


def test_slide_figure_is_clickable_and_names_no_metadata():
    from PIL import Image as PILImage

    from hvl_core.images import LoadedImage
    from hvl_core.slides import SlideInfo

    info = SlideInfo(
        size=(4000, 2000),
        mpp=0.25,
        thumbnail=PILImage.new("RGB", (400, 200), (230, 230, 230)),
        tile_center=(1000, 600),
        tile_side=448,
        picked=True,
        tissue=0.4,
    )
    loaded = LoadedImage(image=PILImage.new("RGB", (224, 224)), original_size=(224, 224), slide=info)
    html = figures.thumbnail_html(loaded, "slide.svs", 224)
    assert "<img class='hvl-slide'" in html and "Click the thumbnail" in html
    assert "4000×2000 px, 0.25 µm/px" in html and "centred at (1000, 600)" in html
    ((arr, alt),) = _images(html)
    assert arr.shape == (200, 400, 3) and "ringed at (1000, 600)" in alt
    moved = LoadedImage(
        image=loaded.image,
        original_size=(224, 224),
        slide=SlideInfo(**{**info.__dict__, "tile_center": (3000, 1500), "picked": False}),
    )
    assert figures.thumbnail_key(loaded, "slide.svs") != figures.thumbnail_key(moved, "slide.svs")


def test_gradio_s_backend_check_imports_no_pyplot():
    """Gradio asks matplotlib for its backend around every event; with the app's explicit Agg the
    first request does not import pyplot (~0.4 s on the server's event loop)."""
    import subprocess
    import sys

    code = (
        "import sys, app.render, gradio.utils as u\n"
        "with u.MatplotlibBackendMananger():\n    pass\n"
        "assert 'matplotlib.pyplot' not in sys.modules, 'pyplot imported'\n"
    )
    run = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stderr[-2000:]
