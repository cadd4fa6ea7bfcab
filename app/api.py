"""The public API, ``/predict`` and ``/batch`` — also the app's MCP tools ``hvl_predict`` and
``hvl_batch`` — without UI: where the image comes from, the model, the decision, and the answer
as JSON text with the fixed fields of ``PREDICT_FIELDS``.

An image is an ``https://`` URL (fetched through gradio's SSRF-protected client: public hosts
only), a ``data:`` URI (``data:image/png;base64,...``), or a file a ``gradio_client`` uploaded
(``handle_file(path)``: gradio checks it lies in its upload folder). A server path never is.
Every decision uses the model's own head options (n, K, entropy filter), the ones its calibrated
or measured threshold holds for; the caller picks the score and may give a threshold.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import json
import logging
import math
import os

from hvl_core import ImageError, load_image, verdicts
from hvl_core.backbones import public_name
from hvl_core.presets import split_class_list
from hvl_core.scores import SCORES

from . import batch as bt
from . import gpu
from .decision import decision_text
from .messages import duplicate_classes, friendly_error
from .service import DEFAULT_N, DEFAULT_PRESET, PRESETS, ModelService, UserError

#: the keys of every ``/predict`` answer and every ``/batch`` row, in order (README: "The API")
PREDICT_FIELDS = (
    "file",
    "verdict",
    "known",
    "label",
    "decision",
    "meaning",
    "decided_by",
    "score",
    "score_name",
    "score_range",
    "threshold",
    "threshold_source",
    "p_value",
    "p_value_words",
    "n_calibration",
    "scope",
    "precision",
    "msp",
    "top",
    "classes",
    "backbone",
    "checkpoint",
    "n",
    "k",
    "notes",
    "error",
)
#: ``score`` value meaning the model's own score
AUTO = "auto"
MAX_IMAGE_BYTES = 32 * 2**20
TOP = 5
IMAGE_FORMS = "an https:// URL or a data: URI (data:image/png;base64,...)"

log = logging.getLogger(__name__)


def _fetch(url: str) -> bytes:
    """GET ``url`` through gradio's SSRF-protected client (public hosts only, redirects checked)."""
    from gradio.processing_utils import async_ssrf_protected_get

    try:
        r = asyncio.run(async_ssrf_protected_get(url))
    except Exception as e:  # noqa: BLE001 — refused host, DNS, timeout: one sentence
        raise UserError(f"could not fetch {url[:80]} ({type(e).__name__}): give a public URL or a data: URI") from None
    if r.status_code != 200:
        raise UserError(f"fetching {url[:80]} gave HTTP {r.status_code}")
    if len(r.content) > MAX_IMAGE_BYTES:
        raise UserError(f"{url[:80]} is over {MAX_IMAGE_BYTES // 2**20} MB")
    return r.content


def image_source(ref, what: str = "image") -> tuple[str, bytes | str]:
    """``(name, source)`` for ``load_image``: the bytes of a URL or ``data:`` URI, or the path of a
    file gradio took in as an upload (a ``FileData`` dict). ``UserError`` for anything else."""
    if isinstance(ref, dict):
        # only what gradio took in as a file: it checked that the path lies in its upload folder
        meta, path = ref.get("meta"), ref.get("path")
        if not (isinstance(meta, dict) and meta.get("_type") == "gradio.FileData" and isinstance(path, str)):
            raise UserError(f"give the {what} as {IMAGE_FORMS}")
        if path.lower().startswith(("http://", "https://")):
            return image_source(path, what)
        return os.path.basename(str(ref.get("orig_name") or path)), path
    if not isinstance(ref, str) or not ref.strip():
        raise UserError(f"give the {what} as {IMAGE_FORMS}")
    ref = ref.strip()
    if ref.startswith("data:"):
        head, comma, payload = ref.partition(",")
        if not comma or not head.endswith(";base64"):
            raise UserError(f"the {what} is a data: URI without base64 data; write data:image/png;base64,...")
        try:
            data = base64.b64decode(payload, validate=True)
        except (binascii.Error, ValueError):
            raise UserError(f"the {what}'s data: URI is not valid base64") from None
        if len(data) > MAX_IMAGE_BYTES:
            raise UserError(f"the {what} is over {MAX_IMAGE_BYTES // 2**20} MB")
        return what, data
    if ref.lower().startswith(("https://", "http://")):
        name = ref.split("?")[0].rstrip("/").rsplit("/", 1)[-1] or what
        return name, _fetch(ref)
    raise UserError(f"the {what} must be {IMAGE_FORMS}, not {ref[:40]!r}; server paths are not read")


def parse_threshold(value) -> float | None:
    """A threshold as sent (number, numeric text, None or "" for the model's own) → float or None."""
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    if isinstance(value, bool):
        raise UserError(f"the threshold must be a number, not {value!r}")
    try:
        t = float(value)
    except (TypeError, ValueError):
        raise UserError(f"the threshold must be a number (or omitted for the model's own), not {value!r}") from None
    if not math.isfinite(t):
        raise UserError(f"the threshold must be a finite number, not {value!r}")
    return t


def parse_score(value) -> str | None:
    """``"auto"``/None/"" → None (the model's own score); else a score name."""
    if value is None or (isinstance(value, str) and value.strip().lower() in ("", AUTO)):
        return None
    if not isinstance(value, str) or value.strip().lower() not in SCORES:
        raise UserError(f"unknown score {value!r}; use {AUTO}, " + ", ".join(SCORES))
    return value.strip().lower()


def resolve(service: ModelService, preset, classes):
    """The model for ``preset`` or, when given, the comma-separated ``classes``."""
    if classes is not None and not isinstance(classes, str):
        raise UserError("classes must be text: class names separated by commas")
    if preset is not None and not isinstance(preset, str):
        raise UserError(f"preset must be one of {', '.join(p for p in PRESETS if p != 'custom')}")
    classes = (classes or "").strip()
    preset = (preset or DEFAULT_PRESET).strip() or DEFAULT_PRESET
    if classes or preset == "custom":
        dup = duplicate_classes(classes)
        if dup:
            raise UserError(f"each class may appear only once (“{dup[0]}” is given twice)")
        if not split_class_list(classes):
            raise UserError("give the custom classes, comma-separated, or a preset")
        preset = "custom"
    spec, ck = service.spec(preset, classes, None, DEFAULT_N)
    return service.model(spec, ck)


def result(name: str, pred, model) -> dict:
    """One image's answer: the ``PREDICT_FIELDS`` (JSON-ready)."""
    lo, hi = pred.score_range
    return {
        "file": name,
        "verdict": pred.outcome,
        "known": bool(pred.known),
        "label": pred.label,
        "decision": decision_text(pred),
        "meaning": verdicts.meaning(pred),
        "decided_by": verdicts.summary(pred)["decided_by"],
        "score": float(pred.score),
        "score_name": pred.score_name,
        "score_range": [lo, hi],
        "threshold": float(pred.threshold),
        "threshold_source": pred.threshold_source,
        "p_value": pred.deciding_p_value,
        "p_value_words": verdicts.p_value_words(pred),
        "n_calibration": int(pred.n_calibration),
        "scope": pred.scope,
        "precision": pred.precision,
        "msp": float(pred.msp),
        "top": [{"class": c, "p": p} for c, p in pred.top(TOP)],
        "classes": list(pred.classes),
        "backbone": public_name(model.backbone.name),
        "checkpoint": model.checkpoint,
        "n": int(pred.n),
        "k": int(pred.k),
        "notes": list(pred.notes),
        "error": None,
    }


def unreadable(name: str, reason: str) -> dict:
    """A batch row for an image that could not be read: every field None but ``file`` and ``error``."""
    return {**dict.fromkeys(PREDICT_FIELDS), "file": name, "error": reason}


def predict(service: ModelService, image, preset=None, classes=None, score=None, threshold=None) -> dict:
    """One image decided; raises ``UserError`` (or another error ``friendly_error`` words) when it cannot."""
    model = resolve(service, preset, classes)
    thr, sc = parse_threshold(threshold), parse_score(score) or model.score_name
    model.resolve_threshold(thr, sc)  # a threshold or score that does not fit: said before any decoding
    name, source = image_source(image)
    enc = gpu.encode_images(model, [load_image(source)])[0]
    return result(name, model.decide(enc, threshold=thr, score=sc), model)


def batch(service: ModelService, images, preset=None, classes=None, score=None, threshold=None) -> list[dict]:
    """Several images decided with one model, in one encoder call: one row each, in order (an
    unreadable image gets its reason in ``error``)."""
    if isinstance(images, (str, dict)):
        images = [images]
    if not isinstance(images, list) or not images:
        raise UserError(f"give the images as a list, each {IMAGE_FORMS}")
    if len(images) > bt.MAX_BATCH_IMAGES:
        raise UserError(f"a batch holds at most {bt.MAX_BATCH_IMAGES} images; split it")
    model = resolve(service, preset, classes)
    thr, sc = parse_threshold(threshold), parse_score(score) or model.score_name
    model.resolve_threshold(thr, sc)  # a threshold or score that does not fit: say so before encoding
    rows: list[dict | None] = [None] * len(images)
    items, total = [], 0
    for i, ref in enumerate(images):
        try:
            name, source = image_source(ref, f"image {i + 1}")
        except UserError as e:
            rows[i] = unreadable(f"image {i + 1}", str(e))
            continue
        total += len(source) if isinstance(source, bytes) else os.path.getsize(source)
        if total > bt.MAX_BATCH_BYTES:
            raise UserError(f"a batch holds at most {bt.MAX_BATCH_BYTES // 2**20} MB of images; split it")
        items.append((i, name, source))
    enc = bt.encode(model, [(name, source) for _, name, source in items])
    readable = [j for j in range(len(items)) if j not in enc.errors]
    preds = model.decide_batch([enc.encoded[j] for j in readable], threshold=thr, score=sc) if readable else []
    for j, p in zip(readable, preds):
        rows[items[j][0]] = result(items[j][1], p, model)
    for j, reason in enc.errors.items():
        rows[items[j][0]] = unreadable(items[j][1], reason)
    return rows


def answer(fn, *args) -> str:
    """``fn(*args)`` as JSON text; a failure as ``gradio.Error`` with one sentence (the tool's or
    the endpoint's error), never a traceback or a null message."""
    import gradio as gr

    try:
        return json.dumps(fn(*args), ensure_ascii=False)
    except Exception as e:  # noqa: BLE001 — every failure becomes a sentence
        if not isinstance(e, (UserError, ImageError, ValueError)):
            log.exception("API call failed")
        raise gr.Error(friendly_error(e), print_exception=False) from None
