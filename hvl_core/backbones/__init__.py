"""Backbone registry: ``create_backbone(name)`` is the front door (like open_clip's factory).

Names (``describe_backbones()`` labels each; ``catalog.py`` holds the facts): ``clip-vit-b16``
(paper), ``biomedclip``, ``quiltnet-b32``, ``dermlip-b16`` (non-commercial), each with a
``NAME-random`` twin (same architecture, tokenizer and preprocessing, seeded random weights, built
offline) and ``NAME:/path/to/weights`` (the same architecture with a local weights file);
``medmnist-densenet121`` (offline, real medical weights, label-only); ``tiny-clip-random`` (tests);
``auto`` (CLIP when its weights can be had, else the offline backbone); or any open_clip
``MODEL:PRETRAINED``, ``MODEL:/path/to/weights`` or ``hf-hub:org/name``.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from .base import Backbone, BackboneUnavailable, UnknownClassError, names_local_file, public_name
from .catalog import BY_NAME, BackboneInfo, backbone_info, describe_backbones, recommended_backbones

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "clip-vit-b16"
OFFLINE_BACKBONE = "medmnist-densenet121"
#: the backbone whose verdicts were measured on real images of held-out sources (calibrated
#: checkpoints ship for it in weights/): the default of the app and the command line.
#: The others are opt-in and labelled unmeasured.
MEASURED_BACKBONE = OFFLINE_BACKBONE


def _medmnist(**kw) -> Backbone:
    from .medmnist import create_medmnist_densenet121

    return create_medmnist_densenet121(**kw)


def _named(name: str) -> Callable[..., Backbone]:
    def make(**kw) -> Backbone:
        from .openclip import create_named

        return create_named(name, **kw)

    return make


_REGISTRY: dict[str, Callable[..., Backbone]] = {
    **{n: _named(n) for n, info in BY_NAME.items() if info.kind != "label-only"},
    OFFLINE_BACKBONE: _medmnist,
}


def register_backbone(name: str, factory: Callable[..., Backbone]) -> None:
    _REGISTRY[name] = factory


def list_backbones() -> list[str]:
    return ["auto", *_REGISTRY]


def same_backbone(name: str, want: str) -> bool:
    """Whether backbone ``name`` gives the embeddings of ``want`` (a checkpoint's backbone):
    the same name, or ``want`` with a local copy of its weights (``want:/path/to/weights``)."""
    return name == want or (want in BY_NAME and name.partition(":")[0] == want and names_local_file(name))


def create_backbone(name: str = "auto") -> Backbone:
    """Build a backbone by name. ``auto`` tries the paper's CLIP and falls back to the offline
    backbone, recording why in ``backbone.note``. Raises ``BackboneUnavailable`` with one
    actionable sentence when weights cannot be had."""
    if name == "auto":
        try:
            return _REGISTRY[DEFAULT_BACKBONE]()
        except BackboneUnavailable as e:
            log.warning("%s", e)
            bb = _REGISTRY[OFFLINE_BACKBONE]()
            bb.note = "fallback: the CLIP ViT-B/16 weights could not be loaded (no hub access, not cached)"
            return bb
    if name in _REGISTRY:
        return _REGISTRY[name]()
    base, sep, weights = name.partition(":")
    if sep and base in BY_NAME and BY_NAME[base].openclip and base not in ("hf-hub", "openclip"):
        from .openclip import create_named

        return create_named(base, weights_file=weights)  # NAME:/path/to/weights
    if sep:
        from .openclip import create_openclip

        return create_openclip(name)
    raise ValueError(
        f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}, "
        "or an open_clip MODEL:PRETRAINED / hf-hub:ID"
    )


__all__ = [
    "Backbone",
    "BackboneInfo",
    "BackboneUnavailable",
    "UnknownClassError",
    "create_backbone",
    "list_backbones",
    "register_backbone",
    "names_local_file",
    "public_name",
    "same_backbone",
    "describe_backbones",
    "recommended_backbones",
    "backbone_info",
    "DEFAULT_BACKBONE",
    "OFFLINE_BACKBONE",
]
