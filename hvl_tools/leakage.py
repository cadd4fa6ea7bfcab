"""Leaks between a benchmark and a backbone: a split's OOD classes must be unknown to the model.

Two ways a backbone can already know a split's "unknown" classes:

- **negative classes**: they join every softmax (``medmnist-densenet121`` adds all its other
  labels by default), so an OOD class among them is learned as "not known" for free;
- **training classes**: the backbone's own classifier was trained on them
  (``medmnist-densenet121``: its 24 MedMNIST labels; PathMNIST comes from NCT-CRC-HE-100K and
  DermaMNIST from HAM10000, the very datasets of the NCT-CRC and ISIC benchmarks).

Benchmarks refuse such a run unless asked explicitly (``allow=True``, ``--allow-overlap``), and
then every table says so. ``--negatives none|auto|LIST`` picks the negative classes.
"""

from __future__ import annotations

import dataclasses
import sys
from collections.abc import Sequence

from .data import DatasetError, norm_name

NEGATIVES_HELP = (
    "negative classes (join every softmax, never the answer): 'auto' (the backbone's default, "
    "e.g. medmnist-densenet121's other labels), 'none', or a comma-separated list of class names"
)


def training_classes(backbone) -> tuple[str, ...]:
    """The classes the backbone's own classifier was trained on (a CLIP model has none: ``()``)."""
    return tuple(getattr(backbone, "labels", ()) or ())


def parse_negatives(value: str | None) -> str | list[str]:
    """``--negatives`` → ``"auto"``, ``"none"`` or a list of names."""
    if value is None or value.strip().lower() == "auto":
        return "auto"
    if value.strip().lower() == "none":
        return "none"
    names = [v.strip() for v in value.split(",") if v.strip()]
    if not names:
        raise DatasetError("--negatives needs 'auto', 'none' or a comma-separated list of class names")
    return names


def _key(backbone, name: str):
    """What a class name means to the backbone: its label index when it resolves names (aliases
    included), else the normalised name."""
    resolve = getattr(backbone, "indices", None)
    if resolve is not None:
        try:
            return ("label", resolve([name])[0])
        except ValueError:  # UnknownClassError: not one of its labels
            pass
    return ("name", norm_name(name))


def find_overlap(backbone, ood_classes: Sequence[str], negatives: Sequence[str]) -> dict[str, list[str]]:
    """The split's OOD classes that are among the negative classes, and among the backbone's
    training classes: ``{"negatives": [...], "training": [...]}`` (empty lists: no leak)."""
    neg = {_key(backbone, n) for n in negatives}
    trained = {_key(backbone, n) for n in training_classes(backbone)}
    keys = {c: _key(backbone, c) for c in ood_classes}
    return {
        "negatives": [c for c, k in keys.items() if k in neg],
        "training": [c for c, k in keys.items() if k in trained],
    }


def overlap_message(backbone_name: str, overlap: dict[str, list[str]]) -> str:
    parts = []
    if overlap["negatives"]:
        parts.append(f"OOD classes {overlap['negatives']} are negative classes of the model (they join every softmax)")
    if overlap["training"]:
        parts.append(f"OOD classes {overlap['training']} are classes {backbone_name} was trained on")
    return "; ".join(parts)


def check_overlap(
    backbone, ood_classes: Sequence[str], negatives: Sequence[str], allow: bool = False, log=None
) -> dict | None:
    """Refuse (``DatasetError``) when the backbone already knows an OOD class of the split; with
    ``allow=True`` warn loudly instead. Returns the overlap record for the output (None: clean)."""
    ov = find_overlap(backbone, ood_classes, negatives)
    if not (ov["negatives"] or ov["training"]):
        return None
    msg = overlap_message(backbone.name, ov)
    if not allow:
        hint = " Use --negatives none" if ov["negatives"] else ""
        raise DatasetError(
            f"refusing to benchmark: {msg}, so its OOD scores are not a fair test.{hint}"
            + (" or" if hint else " Use")
            + " another backbone, or pass --allow-overlap to run "
            "anyway (every table is then marked)."
        )
    (log or (lambda m: print(m, file=sys.stderr, flush=True)))(f"WARNING — NOT A FAIR BENCHMARK: {msg}.")
    return {**ov, "message": f"NOT A FAIR BENCHMARK: {msg}"}


def with_negatives(classes, backbone, negatives: str | list[str]):
    """``(class set, head options)`` for ``--negatives``: ``auto`` leaves both to ``load_model``;
    ``none`` sets ``num_negatives=0``; a list puts exactly those classes in the class set (the
    model is then built with ``build_model``)."""
    if negatives == "auto":
        return classes, {}
    if negatives == "none":
        return dataclasses.replace(classes, negatives=()), {"num_negatives": 0}
    known = {norm_name(n) for n in classes.names}
    clash = [n for n in negatives if norm_name(n) in known]
    if clash:
        raise DatasetError(f"negative classes {clash} are known classes of this run")
    return dataclasses.replace(classes, negatives=tuple(negatives)), {"num_negatives": len(negatives)}


def build_model(
    backbone,
    classes,
    negatives: str | list[str] = "auto",
    device="auto",
    detail: str = "upsample",
    threshold: float | None = None,
    **head_options,
):
    """``load_model`` with ``--negatives`` applied (an explicit list needs the class set as given,
    which ``load_model`` would replace by the backbone's own negatives)."""
    from hvl_core.head import HVLHead
    from hvl_core.model import HVLModel, load_model

    cs, extra = with_negatives(classes, backbone, negatives)
    if negatives in ("auto", "none"):
        return load_model(
            backbone, classes=cs, device=device, detail=detail, threshold=threshold, **{**head_options, **extra}
        )
    options = {**backbone.head_defaults, **head_options, **extra}
    head = HVLHead(backbone.embed_dim, len(cs.names), **options)
    return HVLModel(backbone, head, cs, detail, threshold, device)


def add_overlap_args(p) -> None:
    """``--negatives`` and ``--allow-overlap`` for the benchmark commands."""
    g = p.add_argument_group("negative classes and leaks")
    g.add_argument("--negatives", default="auto", help=NEGATIVES_HELP)
    g.add_argument(
        "--allow-overlap",
        action="store_true",
        help="run even when the backbone knows an OOD class of the split (as a negative or a training "
        "class); the output is then marked NOT A FAIR BENCHMARK (default: refuse)",
    )
