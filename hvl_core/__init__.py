"""HVL: hierarchical vision-language OOD detection for medical images (Lai et al., MICCAI 2025).

>>> import hvl_core
>>> model = hvl_core.load_model(backbone="auto", preset="dermatology-isic4")
>>> pred = model.predict("lesion.jpg")
>>> pred.label, pred.score, pred.score_name, pred.known

The public names below are imported on first use, so ``import hvl_core`` (and ``hvl --help``)
does not load torch.
"""

from __future__ import annotations

import importlib

__version__ = "0.2.0"

#: public name -> the module that defines it
_EXPORTS = {
    "load_model": "model",
    "HVLModel": "model",
    "Prediction": "prediction",
    "Encoded": "model",
    "DEFAULT_THRESHOLD": "model",
    "HVLHead": "head",
    "HVLConfig": "head",
    "HVLOutput": "head",
    "SCORES": "head",
    "ScoreError": "head",
    "create_backbone": "backbones",
    "list_backbones": "backbones",
    "BackboneUnavailable": "backbones",
    "load_checkpoint": "checkpoint",
    "save_checkpoint": "checkpoint",
    "CheckpointError": "checkpoint",
    "shipped_checkpoint": "checkpoint",
    "load_image": "images",
    "ImageError": "images",
    "ClassSet": "presets",
    "load_preset": "presets",
    "list_presets": "presets",
    "class_set_from_names": "presets",
}
__all__ = list(_EXPORTS)


def __getattr__(name: str):
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__():
    return sorted(list(globals()) + __all__)
