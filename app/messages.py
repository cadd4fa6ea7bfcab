"""The demo's words outside the figures: the model line, the status line, the class-box
placeholder and the one short sentence a failure becomes."""
from __future__ import annotations

import re

from hvl_core.backbones import UnknownClassError

from .service import USER_ERRORS, Session, normalise_classes

#: the custom-class example for backbones with a text tower (any words work)
TEXT_EXAMPLE = "e.g. melanoma, nevus: a benign mole, scar"
#: the example for a label-only backbone, when it has these labels
SKIN_EXAMPLE = ("melanoma", "melanocytic nevus", "dermatofibroma")


def model_markdown(model) -> str:
    bb = model.backbone
    note = f" — *{bb.note}*" if bb.note else ""
    head = (f"trained checkpoint ({model.checkpoint})" if model.checkpoint
            else "untrained (zero-shot: W, b⁰, b² are zero)")
    classes = ", ".join(model.classes.names)
    neg = model.classes.negatives
    negatives = (f"**Negative classes ({len(neg)}):** {', '.join(neg)} — in the softmax, never the answer  \n"
                 if neg else "")
    cfg = model.head.config
    similarity = "" if cfg.similarity == "cosine" else f"; {cfg.similarity} similarity, τ = {cfg.tau:g}"
    return (f"**Backbone:** `{bb.name}`{note}  \n"
            f"**Known classes ({len(model.classes.names)}):** {classes}  \n{negatives}"
            f"**Head:** {head}; n = {model.n} ({1 + model.n ** 2 + 4 * model.n ** 2} crops){similarity}; "
            f"device {model.device.type}")


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
        return "e.g. " + ", ".join(skin if len(skin) == len(SKIN_EXAMPLE) else labels[:3]) + " — only its own labels work"
    return TEXT_EXAMPLE


def duplicate_classes(text: str) -> list[str]:
    """Class names given twice (case-insensitive, descriptions ignored)."""
    seen, dup = set(), []
    for part in normalise_classes(text):
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
    return (f"Something went wrong while analysing ({type(e).__name__}). The server is still running: "
            "try again, or another image.")
