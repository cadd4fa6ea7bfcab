"""The demo's pure parts: pixel-exact overlays (grid, cells, hatching, outlines), figures, the
decision text and its threshold flip, teaching-mode text."""
import math
from types import SimpleNamespace

import numpy as np
import pytest

from app import decision as dec
from app import render
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
    inner = out[y0 + 3:y1 - 3, x0 + 3:x1 - 3]
    assert np.any(np.all(inner == render.HATCH_COLOR, axis=-1))
    for r, c in [(0, 0), (1, 0), (1, 1)]:
        y0, y1, x0, x1 = render.cell_box(r, c, size, g)
        inner = out[y0 + 3:y1 - 3, x0 + 3:x1 - 3]
        assert not np.any(np.all(inner == render.HATCH_COLOR, axis=-1)), (r, c)
    # and greyed: the non-hatch pixels of the dropped cell are (almost) grey
    y0, y1, x0, x1 = render.cell_box(0, 1, size, g)
    inner = out[y0 + 3:y1 - 3, x0 + 3:x1 - 3].reshape(-1, 3).astype(int)
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
        assert is_c[y0:y0 + t, x0:x1].all() and is_c[y1 - t:y1, x0:x1].all()
        assert is_c[y0:y1, x0:x0 + t].all() and is_c[y0:y1, x1 - t:x1].all()
        # the interior is untouched
        assert not is_c[y0 + t:y1 - t, x0 + t:x1 - t].any()
    # a cell that is not selected and touches none of them has no outline
    y0, y1, x0, x1 = render.cell_box(0, 0, size, g)
    assert not is_c[y0:y1, x0:x1].any()
    # the outlined pixels are exactly the union of the three rings
    ring = np.zeros((size, size), bool)
    for r, c in cells:
        y0, y1, x0, x1 = render.cell_box(r, c, size, g)
        ring[y0:y1, x0:x1] = True
        ring[y0 + t:y1 - t, x0 + t:x1 - t] = False
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


def test_class_overlay_uses_the_palette():
    pal = render.class_palette(3)
    assert len({tuple(p) for p in pal}) == 3
    cls = np.array([[0, 1], [2, 0]])
    out = render.class_overlay(np.zeros((32, 32, 3), np.uint8), cls, pal, size=100)
    y0, y1, x0, x1 = render.cell_box(1, 0, 100, 2)
    assert np.array_equal(out[(y0 + y1) // 2, (x0 + x1) // 2],
                          np.round(render.HEAT_ALPHA * pal[2].astype(float)).astype(np.uint8))
    assert len({tuple(p) for p in render.class_palette(25)}) == 25


# --------------------------------------------------------------------------- figures on a real Prediction

@pytest.fixture(scope="module")
def prediction(tiny_model):
    rng = np.random.default_rng(1)
    img = rng.integers(0, 255, (300, 260, 3), dtype=np.uint8)
    return tiny_model.predict(img, threshold=0.5)


def test_figures_are_nonempty_images(prediction):
    for fig in (render.entropy_figure(prediction, 1), render.entropy_figure(prediction, 2),
                render.gain_figure(prediction), render.scales_figure(prediction),
                render.patch_class_figure(prediction)):
        assert fig.ndim == 3 and fig.shape[2] == 3 and fig.dtype == np.uint8
        assert fig.shape[0] > 300 and fig.shape[1] > 300
        assert fig.std() > 10  # not a blank canvas
    with pytest.raises(ValueError):
        render.entropy_figure(prediction, 3)


def test_entropy_figure_shows_the_colour_bar(prediction):
    fig = render.entropy_figure(prediction, 1)
    # the colour bar holds the whole viridis range: its top (yellow) and bottom (purple) colours
    top = render.value_colors(np.array([[1.0]]), render.ENTROPY_CMAP, 0, 1)[0, 0].astype(int)
    bottom = render.value_colors(np.array([[0.0]]), render.ENTROPY_CMAP, 0, 1)[0, 0].astype(int)
    flat = fig.reshape(-1, 3).astype(int)
    assert (np.abs(flat - top).sum(1) < 12).sum() > 10
    assert (np.abs(flat - bottom).sum(1) < 12).sum() > 10


# --------------------------------------------------------------------------- decision text

def fake_pred(msp, threshold, label="melanoma", known=None):
    known = msp >= threshold if known is None else known
    p = np.array([msp, 1 - msp])
    return SimpleNamespace(msp=msp, threshold=threshold, known=known, label=label, classes=[label, "other"],
                           p_id=p, p0=p, p1=p, p2=p, top=lambda k=3: [(label, msp), ("other", 1 - msp)][:k])


def test_decision_text_known_and_unknown():
    assert dec.decision_text(fake_pred(0.731, 0.5)) == "Known: melanoma (0.731)"
    assert dec.decision_text(fake_pred(0.42, 0.5)) == "Unknown — refer to a specialist"
    # the verdict follows hvl_core's `known`, not a recomputation
    assert dec.decision_text(fake_pred(0.9, 0.5, known=False)) == dec.UNKNOWN_TEXT


def test_scores_that_round_equal_get_more_digits():
    assert dec.fmt_score(0.5004, 0.5) == "0.5004"
    assert dec.fmt_score(0.5, 0.5004) == "0.5000"
    assert dec.fmt_score(0.61, 0.5) == "0.610"
    assert dec.comparison_text(fake_pred(0.4996, 0.5)) == "MSP 0.4996 < threshold 0.5000"


def test_decision_html_marks_score_and_threshold_on_the_bar():
    html = dec.decision_html(fake_pred(0.731, 0.25))
    assert 'data-known="1"' in html and "width:73.1%" in html and "left:calc(25.0% - 2px)" in html
    assert "Known: melanoma (0.731)" in html
    html = dec.decision_html(fake_pred(0.2, 0.6, label="<b>x</b>"))
    assert 'data-known="0"' in html and "width:20.0%" in html and "Unknown" in html
    assert "<b>x</b>" not in html and "&lt;b&gt;x&lt;/b&gt;" in html  # class names are escaped
    assert dec.bar_position(1.7) == 100.0 and dec.bar_position(-1) == 0.0


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
    assert len(top) == 3
    assert list(top)[0] == prediction.label
    assert max(top.values()) == pytest.approx(prediction.msp, abs=1e-6)


# --------------------------------------------------------------------------- teaching text

def test_teaching_text_uses_this_images_numbers(prediction):
    ctx = Context(original_size=(260, 300), image_size=224, entropy_filter=True)
    md = teaching_markdown(prediction, ctx)
    n = prediction.n
    assert f"{1 + n * n + 4 * n * n} crops" in md
    assert "260×300 px" in md
    assert f"H̄¹ = {prediction.entropy1.mean():.3f}" in md
    assert "p_ID = (p⁰ + p¹ + p²) ÷ 3" in md
    c = prediction.class_index
    assert f"= **{prediction.p_id[c]:.3f}**" in md
    for r, col in prediction.pseudo_ood:
        assert f"({r}, {col}) ΔH = {prediction.entropy_gain[r, col]:+.3f}" in md
    dropped = list(zip(*np.nonzero(~prediction.keep2)))
    r, col = dropped[0]
    assert f"({r}, {col})" in md
    assert "random weights" in md  # tiny-clip-random is flagged


def test_why_sentence_accepts_and_rejects(tiny_model):
    enc = tiny_model.encode(np.full((64, 64, 3), 30, np.uint8))
    msp = tiny_model.decide(enc).msp
    yes = why_sentence(tiny_model.decide(enc, threshold=msp - 0.05))
    no = why_sentence(tiny_model.decide(enc, threshold=min(msp + 0.05, 1.0)))
    assert yes.startswith("**Accepted**") and "+0.050" in yes
    assert no.startswith("**Rejected") and "0.050 below" in no
    off = teaching_markdown(tiny_model.decide(enc, entropy_filter=False), Context(entropy_filter=False))
    assert "filter is **off**" in off
