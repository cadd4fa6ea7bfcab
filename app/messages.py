"""The demo's words outside the figures: the model line, the status line, the class-box
placeholder and the one short sentence a failure becomes."""

from __future__ import annotations

import functools
import html
import json
import re
from pathlib import Path

from hvl_core import scores
from hvl_core.backbones import UnknownClassError, public_name
from hvl_core.checkpoint import CONFIG_NAME, shipped_checkpoint
from hvl_core.presets import list_presets, split_class_list

from .service import USER_ERRORS, Session

#: the custom-class example for backbones with a text tower (any words work)
TEXT_EXAMPLE = "e.g. melanoma, nevus: a benign mole, scar"
#: the example for a label-only backbone, when it has these labels
SKIN_EXAMPLE = ("melanoma", "melanocytic nevus", "dermatofibroma")


def backbone_facts(bb) -> dict:
    """What the page says about a backbone: kind, training data, what it has never seen (the
    backbone catalog's facts, through the backbone)."""
    return {"kind": bb.kind or "vision-language", "trained_on": bb.trained_on, "never_seen": bb.never_seen}


def backbone_label(name: str, server_default: bool = False) -> str:
    """A backbone chooser's entry: what it is (vision-language or label-only), what it was trained
    on, and its head here (untrained: zero-shot, or a classifier's own labels)."""
    from hvl_core.backbones.catalog import LABEL_ONLY, backbone_info

    info = backbone_info(name)
    mark = " · this server's default" if server_default else ""
    if info is None:
        return f"{public_name(name)}{mark}"
    trained = any(shipped_checkpoint(name, p) is not None for p in list_presets())
    own = "its own labels only" if info.kind == LABEL_ONLY else "zero-shot"
    head = (
        f"{own}; a calibrated head per class set — measured on held-out sources"
        if trained
        else "untrained head: its own labels only — unmeasured"
        if info.kind == LABEL_ONLY
        else "zero-shot (untrained head; a checkpoint brings a trained one) — unmeasured"
    )
    return f"{info.label} — {info.kind}; trained on {info.trained_on}; {head}{mark}"


def backbone_choices(server_backbone: str, names) -> list[tuple[str, str]]:
    """(label, value) pairs: the server's own backbone (value "") first, then the others."""
    return [(backbone_label(server_backbone, True), "")] + [
        (backbone_label(n), n) for n in names if n != server_backbone
    ]


@functools.lru_cache(maxsize=8)
def measured_sentence(name: str) -> str:
    """What was measured for a backbone's default verdicts on real images of held-out sources
    (from the shipped checkpoints' ``measured`` record), or that nothing was."""
    parts = []
    for preset in list_presets():
        path = shipped_checkpoint(name, preset)
        if path is None:
            continue
        try:
            m = json.loads((path / CONFIG_NAME).read_text())["measured"]
        except (OSError, ValueError, KeyError):
            continue
        far = m.get("accepted_far", [float("nan")])[0]
        near = m.get("accepted_near", [float("nan")])[0]
        scope = m.get("out_of_scope_far")
        parts.append(
            f"{preset.split('-')[0]} refers {100 * m['false_rejection'][0]:.0f}% of known, accepts "
            f"{100 * far:.0f}% far- / {100 * near:.0f}% near-OOD"
            + (f" ({100 * scope[0]:.0f}% of far-OOD out of scope)" if scope else "")
        )
    if not parts:
        return (
            "Unmeasured: this backbone's verdicts were never measured on real images here; "
            "treat its known/unknown answers as a demonstration only."
        )
    return "Measured at the default threshold on held-out sources: " + "; ".join(parts) + "."


def measured_pointer(name: str) -> str:
    """The header's short form: measured or not (the rates are in the model line)."""
    if measured_sentence(name).startswith("Unmeasured"):
        return "Unmeasured on real images: a demonstration only."
    return "Measured at the default threshold on held-out sources (rates in the model line)."


def header_markdown(bb) -> str:
    """The header: the title, then one line (not a medical device; the backbone's name and kind)
    whose "About" opens the method and the backbone in use — its training data and what it has
    never seen. Two lines in all, so the main map keeps a laptop's first screen."""
    f = backbone_facts(bb)
    label_only = f["kind"] == "label-only"
    how = (
        "label-only (a classifier: classes are its labels, no text)"
        if label_only
        else "vision-language (classes are text prompts)"
    )
    data = f"trained on {f['trained_on']}" if f["trained_on"] else "its training data is not recorded here"
    never = f"; it has never seen {f['never_seen']}" if f["never_seen"] else ""
    name = html.escape(public_name(bb.name))
    return (
        '<div class="hvl-header">\n\n# HVL — known disease, or refer to a specialist?\n\n'
        '<div class="hvl-sub"><p class="hvl-lede"><strong>Research and teaching demo — not a medical device.</strong></p>'
        f'<details class="hvl-about"><summary>About the method and the backbone <code>{name}</code> '
        f"({'label-only' if label_only else 'vision-language'})</summary>"
        "<p>Three scales of your image, fused coarse to fine; unsure patches ignored; <strong>unknown</strong> when "
        "the decision score is under a threshold (Lai et al., MICCAI 2025).</p>"
        f'<p class="hvl-backbone">Backbone <code>{name}</code>: {html.escape(f"{how}, {data}{never}.")} '
        f'<span class="hvl-measured">{html.escape(measured_pointer(bb.name))}</span></p></details></div>\n</div>'
    )


def model_markdown(model) -> str:
    bb = model.backbone
    note = f" — *{bb.note}*" if bb.note else ""
    kind = "label-only" if backbone_facts(bb)["kind"] == "label-only" else "vision-language"
    head = (
        f"checkpoint {Path(str(model.checkpoint)).name}"
        if model.checkpoint  # a name, never a server path
        else "untrained (W, b⁰, b² are zero: the classifier's own scores)"
        if kind == "label-only"
        else "untrained (zero-shot: W, b⁰, b² are zero)"
    )
    classes = ", ".join(model.classes.names)
    neg = model.classes.negatives
    negatives = (
        f"**Negative classes ({len(neg)}):** {', '.join(neg)} — in the softmax, never the answer; their "
        "share is shown as “other (not a known class)”  \n"
        if neg
        else ""
    )
    cfg = model.head.config
    similarity = "" if cfg.similarity == "cosine" else f"; {cfg.similarity} similarity, τ = {cfg.tau:g}"
    source = {
        "calibrated": "calibrated",
        "measured": "measured default",
        "default": "unmeasured default",
        "given": "given",
    }.get(model.threshold_source, model.threshold_source)
    score = f"**Decision:** {scores.label(model.score_name)} ≥ {model.threshold:g} ({source}) by default"
    return (
        f"**Backbone:** `{public_name(bb.name)}` ({kind}){note} — {measured_sentence(bb.name)}  \n"
        f"**Known classes ({len(model.classes.names)}):** {classes}  \n{negatives}"
        f"**Head:** {head}; n = {model.n} ({1 + model.n**2 + 4 * model.n**2} crops){similarity}; "
        f"device {model.device.type}  \n{score}"
    )


def status_markdown(session: Session, pred) -> str:
    """``Analysed **name**, W×H px — notes``."""
    parts = [f"Analysed **{session.name}**"]
    if session.loaded is not None:
        w, h = session.loaded.original_size
        parts.append(f"{w}×{h} px")
    text = ", ".join(parts)
    if pred.notes:
        text += " — " + "; ".join(pred.notes)
    return text


def class_placeholder(backbone) -> str:
    """An example that works with this backbone: a label-only backbone knows only its labels."""
    labels = list(getattr(backbone, "labels", None) or [])
    if labels:
        skin = [c for c in SKIN_EXAMPLE if c in labels]
        return (
            "e.g. " + ", ".join(skin if len(skin) == len(SKIN_EXAMPLE) else labels[:3]) + " — only its own labels work"
        )
    return TEXT_EXAMPLE


def duplicate_classes(text: str) -> list[str]:
    """Class names given twice (case-insensitive, descriptions ignored)."""
    seen, dup = set(), []
    for part in split_class_list(text):
        name = part.split(":", 1)[0].strip().lower()
        if name in seen and name not in dup:
            dup.append(name)
        seen.add(name)
    return dup


def friendly_error(e: BaseException) -> str:
    """One short sentence for the person using the demo; internals (paths, tracebacks) never."""
    if isinstance(e, UnknownClassError):
        m = re.search(r"backbone has no class ('[^']*'|\"[^\"]*\")", str(e))
        name = m.group(1) if m else "this class"
        return f"This backbone has no class {name}: use the names in the placeholder of the class box."
    if isinstance(e, USER_ERRORS):
        return str(e)
    if isinstance(e, ValueError) and "duplicate class names" in str(e):
        return "Each class may appear only once."
    if isinstance(e, ValueError):  # e.g. a custom class list the class set refuses
        return str(e).split("\n")[0]
    return (
        f"Something went wrong while analysing ({type(e).__name__}). The server is still running: "
        "try again, or another image."
    )


def _typed(value: float) -> str:
    return f"{float(value):g}"


def threshold_not_applied(value: float, window: tuple[float, float], unit: str, current: float) -> str:
    """The sentence beside the threshold slider when a typed value lies outside its range."""
    from .decision import fmt_score

    lo, hi = window
    return (
        f"{_typed(value)} is outside this slider ({fmt_score(lo)} to {fmt_score(hi)}, {unit}): not applied, "
        f"the verdict keeps the threshold {fmt_score(current)}."
    )


def k_not_applied(value: float, n: int, current: int) -> str:
    """The sentence beside K when a typed value is not a whole number from 1 to 4n²."""
    return (
        f"K is a whole number from 1 to {4 * n * n} (the 4n² high-scale cells, n = {n}): {_typed(value)} is not "
        f"applied, K stays {current}."
    )


def n_not_applied(value: float, max_n: int, current: int | None) -> str:
    """The sentence beside n when a typed value is not a whole number from 1 to ``max_n``."""
    stays = f", n stays {current}" if current else ""
    return f"n is a whole number from 1 to {max_n}: {_typed(value)} is not applied{stays}."


def never_seen_items(bb) -> list[str]:
    """The backbone's "never seen" list as items (commas inside parentheses stay in their item)."""
    text, items, depth, cur = backbone_facts(bb)["never_seen"] or "", [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            items.append(cur.strip())
            cur = ""
        else:
            cur += ch
    return [i for i in [*items, cur.strip()] if i]


def unseen_examples(examples: list[dict], bb) -> dict[str, str]:
    """``{file name: imaging}`` of the examples whose kind of picture (their manifest's
    ``imaging``) is on the backbone's "never seen" list — the list the header shows, so the page
    never calls such an example in-distribution while the header says the backbone never saw it."""
    never = set(never_seen_items(bb))
    return {Path(e["path"]).name: e["imaging"] for e in examples if e.get("imaging") in never}
