"""Backbone registry: ``create_backbone(name)`` is the front door (like open_clip's factory).

Names: ``clip-vit-b16`` (paper), ``medmnist-densenet121`` (offline, real medical weights),
``tiny-clip-random`` / ``clip-vit-b16-random`` (seeded random, tests and timing), ``auto``
(CLIP when its weights can be had, else the offline backbone), or any open_clip
``MODEL:PRETRAINED``, ``MODEL:/path/to/weights`` or ``hf-hub:org/name``.
"""
from __future__ import annotations

import logging
from typing import Callable

from .base import Backbone, BackboneUnavailable, UnknownClassError

log = logging.getLogger(__name__)

DEFAULT_BACKBONE = "clip-vit-b16"
OFFLINE_BACKBONE = "medmnist-densenet121"


def _medmnist(**kw) -> Backbone:
    from .medmnist import create_medmnist_densenet121

    return create_medmnist_densenet121(**kw)


def _openclip(fn_name: str) -> Callable[..., Backbone]:
    def make(**kw) -> Backbone:
        from . import openclip

        return getattr(openclip, fn_name)(**kw)

    return make


_REGISTRY: dict[str, Callable[..., Backbone]] = {
    "clip-vit-b16": _openclip("create_clip_vit_b16"),
    "medmnist-densenet121": _medmnist,
    "tiny-clip-random": _openclip("create_tiny_clip_random"),
    "clip-vit-b16-random": _openclip("create_clip_vit_b16_random"),
}


def register_backbone(name: str, factory: Callable[..., Backbone]) -> None:
    _REGISTRY[name] = factory


def list_backbones() -> list[str]:
    return ["auto", *_REGISTRY]


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
    if ":" in name:
        from .openclip import create_openclip

        return create_openclip(name)
    raise ValueError(f"unknown backbone {name!r}; choose one of {', '.join(list_backbones())}, "
                     "or an open_clip MODEL:PRETRAINED / hf-hub:ID")


__all__ = ["Backbone", "BackboneUnavailable", "UnknownClassError", "create_backbone", "list_backbones",
           "register_backbone", "DEFAULT_BACKBONE", "OFFLINE_BACKBONE"]
