"""The batch view's logic, without UI: read several uploads (images, or images inside zip files),
encode them once, and re-decide the whole table for any threshold with the head alone.

Bounded for a public server: at most ``MAX_BATCH_IMAGES`` images, ``MAX_BATCH_BYTES`` of
image bytes and ``MAX_BATCH_PIXELS`` decoded pixels per batch, each zip member read with a size
cap (a lying header cannot grow memory).
Zip members are read into memory and never extracted, so no member name can reach the file
system; only the member's base name is shown. The CSV is written only when asked for, into
gradio's temporary folder (swept like the uploads).
"""

from __future__ import annotations

import csv
import io
import math
import os
import tempfile
import zipfile
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath

from hvl_core import ImageError, load_image, verdicts

from . import gpu
from .decision import fmt_num, fmt_score
from .service import UserError, upload_dir

MAX_BATCH_IMAGES = 32
MAX_BATCH_BYTES = 64 * 1024 * 1024
#: pixels (by the files' headers) a batch may decode: files past it get an error row of their own
MAX_BATCH_PIXELS = 100_000_000
IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp", ".dcm"}
#: the false discovery rate of the Benjamini–Hochberg column (over the conformal p-values of the
#: stage that decided each image, HVL_SPEC §11)
BATCH_FDR = 0.05
COLUMNS = ["file", "class", "score", "verdict", "p-value", f"BH unknown (FDR {BATCH_FDR:.0%})"]
#: the CSV: the table's columns with the score's name and the threshold beside the score (the
#: ``/batch`` endpoint's fields), numbers unrounded
CSV_COLUMNS = [
    "file",
    "class",
    "score",
    "score_name",
    "threshold",
    "verdict",
    "p_value",
    f"bh_unknown_fdr_{BATCH_FDR:g}",
]
#: decimals of every number in the table
TABLE_DIGITS = 3


@dataclass
class Batch:
    """One batch: the file names, their cached encodings (``None``: unreadable, with the reason)
    and the last decision."""

    names: list[str] = field(default_factory=list)
    encoded: list = field(default_factory=list)
    errors: dict[int, str] = field(default_factory=dict)
    spec: object = None
    options: dict = field(default_factory=dict)  # k, entropy_filter, renormalize
    analysed_threshold: float | None = None  # the threshold when the batch was analysed
    predictions: list = field(default_factory=list)  # per readable image, in order

    def readable(self) -> list[int]:
        return [i for i in range(len(self.names)) if i not in self.errors]


def _short(name: str) -> str:
    return PurePosixPath(str(name).replace("\\", "/")).name or "file"


def read_uploads(paths) -> list[tuple[str, bytes | str]]:
    """``(name, source)`` for each image in the uploads: a path for an image file, bytes for a zip
    member. Raises ``UserError`` past the limits or with nothing to read."""
    items: list[tuple[str, bytes | str]] = []
    total = 0

    def add(name, source, size):
        nonlocal total
        if len(items) >= MAX_BATCH_IMAGES:
            raise UserError(f"a batch holds at most {MAX_BATCH_IMAGES} images; split it")
        total += size
        if total > MAX_BATCH_BYTES:
            raise UserError(f"a batch holds at most {MAX_BATCH_BYTES // 2**20} MB of images; split it")
        items.append((name, source))

    for p in [p for p in (paths or []) if p]:
        p = os.fspath(p)
        if Path(p).suffix.lower() == ".zip":
            try:
                with zipfile.ZipFile(p) as zf:
                    for info in zf.infolist():
                        if info.is_dir() or Path(info.filename).suffix.lower() not in IMAGE_SUFFIXES:
                            continue
                        if _short(info.filename).startswith("."):  # macOS metadata (__MACOSX/._x.jpg)
                            continue
                        room = MAX_BATCH_BYTES - total
                        with zf.open(info) as f:
                            data = f.read(room + 1)  # never more than the room left, whatever the header says
                        if len(data) > room:
                            raise UserError(f"a batch holds at most {MAX_BATCH_BYTES // 2**20} MB of images; split it")
                        add(_short(info.filename), data, len(data))
            except (zipfile.BadZipFile, zipfile.LargeZipFile, NotImplementedError, RuntimeError, OSError) as e:
                raise UserError(f"{_short(p)} is not a readable zip file ({type(e).__name__})") from None
        else:
            add(_short(p), p, os.path.getsize(p))
    if not items:
        raise UserError("upload images (PNG, JPEG, TIFF, BMP, WebP) or a zip of them")
    return items


def encode(model, items: list[tuple[str, bytes | str]]) -> Batch:
    """Load and encode every image (unreadable ones keep their reason): one call of the GPU
    function (``app.gpu``) for the whole batch, the encoder on all their crops together."""
    batch = Batch(names=[n for n, _ in items], encoded=[None] * len(items))
    loaded, budget = [], MAX_BATCH_PIXELS  # decoded images all stay until the encoder runs: bounded in pixels
    for i, (_, source) in enumerate(items):
        try:
            li = load_image(source, max_pixels=budget)
            w, h = li.original_size if li.slide is None else li.image.size  # a slide: the tile read
            budget -= w * h
            loaded.append((i, li))
        except ImageError as e:
            batch.errors[i] = str(e)
    for (i, _), enc in zip(loaded, gpu.encode_images(model, [li for _, li in loaded])):
        batch.encoded[i] = enc
    return batch


def decide(model, batch: Batch, threshold: float) -> Batch:
    """The whole table at ``threshold``: the head alone on the cached encodings."""
    idx = batch.readable()
    preds = model.decide_batch([batch.encoded[i] for i in idx], threshold=threshold, **batch.options) if idx else []
    return replace(batch, predictions=preds)


def bh_flags(batch: Batch) -> list[bool | None]:
    """Per prediction: flagged unknown by Benjamini–Hochberg at ``BATCH_FDR`` over the conformal
    p-values of the stage that decided each image (None without calibration scores)."""
    from hvl_core.conformal import bh_select

    p_values = [p.deciding_p_value for p in batch.predictions]
    have = [i for i, p in enumerate(p_values) if p is not None]
    flags: list[bool | None] = [None] * len(batch.predictions)
    for i, f in zip(have, bh_select([p_values[i] for i in have], BATCH_FDR)):
        flags[i] = bool(f)
    return flags


def csv_rows(batch: Batch) -> list[list]:
    """The CSV's rows (``CSV_COLUMNS``): file, class, score, score name, threshold, verdict (out of
    scope, unknown, known), the deciding stage's p-value, BH flag (an unreadable file: its reason
    in the class column)."""
    out, preds = [], iter(zip(batch.predictions, bh_flags(batch)))
    for i, name in enumerate(batch.names):
        if i in batch.errors:
            out.append([name, f"not read: {batch.errors[i]}", None, "", None, "", None, ""])
            continue
        p, flag = next(preds)
        out.append(
            [
                name,
                p.label,
                float(p.score),
                p.score_name,
                float(p.threshold),
                p.outcome,
                None if p.deciding_p_value is None else float(p.deciding_p_value),
                "" if flag is None else "yes" if flag else "no",
            ]
        )
    return out


def rows(batch: Batch) -> list[list]:
    """The table (``COLUMNS``): file, class, score, verdict, p-value, BH flag, every number with
    ``TABLE_DIGITS`` decimals (an unreadable file: its reason in the class column)."""
    fmt = lambda x: None if x is None else fmt_num(x, TABLE_DIGITS)  # noqa: E731
    return [[r[0], r[1], fmt(r[2]), r[5], fmt(r[6]), r[7]] for r in csv_rows(batch)]


def flips(batch: Batch, threshold: float) -> tuple[int, int]:
    """(to unknown, to known): how many images change verdict at ``threshold`` against the
    threshold the batch was analysed at (images out of scope stay so at any threshold)."""
    if batch.analysed_threshold is None:
        return 0, 0
    t0 = batch.analysed_threshold
    judged = [p for p in batch.predictions if p.outcome != verdicts.OUT_OF_SCOPE]
    down = sum(1 for p in judged if p.score >= t0 and p.score < threshold)
    up = sum(1 for p in judged if p.score < t0 and p.score >= threshold)
    return down, up


def flips_sentence(batch: Batch, threshold: float) -> str:
    n = len(batch.predictions)
    count = {o: sum(p.outcome == o for p in batch.predictions) for o in verdicts.OUTCOMES}
    s = (
        f"At threshold {fmt_score(threshold)}: {count['known']} of {n} known, {count['unknown']} unknown, "
        f"{count['out of scope']} out of scope."
    )
    if batch.analysed_threshold is not None and threshold != batch.analysed_threshold:
        down, up = flips(batch, threshold)
        s += (
            f" Against the model's threshold {fmt_score(batch.analysed_threshold)}: {down + up} flip "
            f"({down} known → unknown, {up} unknown → known)."
        )
    flags = [f for f in bh_flags(batch) if f is not None]
    if flags:
        s += (
            f" Benjamini–Hochberg over the deciding stage's p-values flags {sum(flags)} of {len(flags)} as not "
            f"known (among those flagged, at most {BATCH_FDR:.0%} known images expected)."
        )
        p = batch.predictions[0]
        note = verdicts.bh_note(
            verdicts.smallest_p(p.n_calibration, (p.scope or {}).get("smallest_p")), len(flags), BATCH_FDR
        )
        s += f" {note}" if note else ""
    if batch.errors:
        s += f" {len(batch.errors)} file(s) could not be read."
    return s


def csv_text(batch: Batch) -> str:
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(CSV_COLUMNS)
    for r in csv_rows(batch):
        w.writerow(["" if v is None else v for v in r])
    return buf.getvalue()


def write_csv(batch: Batch) -> str:
    """The table as a CSV file in gradio's temporary folder (swept with the uploads); its path."""
    folder = upload_dir()
    folder.mkdir(parents=True, exist_ok=True)
    d = tempfile.mkdtemp(prefix="hvl-batch-", dir=folder)
    path = Path(d) / "hvl-batch.csv"
    path.write_text(csv_text(batch), encoding="utf-8")
    return str(path)


def slider_range(lo: float, hi: float, stops: int = 200) -> tuple[float, float, float]:
    """The batch slider's ends and step: a round step (0.01 across a span up to 2, else 1, 2 or 5
    × a power of ten, about ``stops`` of them across) and ends on multiples of it, so the page prints
    "-48.8", not "-48.752989411354065"."""
    span = max(hi - lo, 1e-9)
    raw = 0.01 if span <= 2 else span / stops
    power = 10 ** math.floor(math.log10(raw))
    step = next(m * power for m in (1, 2, 5, 10) if m * power >= raw)
    digits = max(0, -math.floor(math.log10(step)))
    return round(math.floor(lo / step) * step, digits), round(math.ceil(hi / step) * step, digits), round(step, digits)
