"""HVL: hierarchical vision-language OOD detection for medical images (Lai et al., MICCAI 2025).

>>> import hvl_core
>>> model = hvl_core.load_model(backbone="auto", preset="dermatology-isic4")
>>> pred = model.predict("lesion.jpg")
>>> pred.label, pred.score, pred.score_name, pred.known
"""
__version__ = "0.1.0"

from .backbones import BackboneUnavailable, create_backbone, list_backbones  # noqa: E402
from .checkpoint import CheckpointError, load_checkpoint, save_checkpoint  # noqa: E402
from .head import SCORES, HVLConfig, HVLHead, HVLOutput, ScoreError  # noqa: E402
from .images import ImageError, load_image  # noqa: E402
from .model import DEFAULT_THRESHOLD, Encoded, HVLModel, Prediction, load_model  # noqa: E402
from .presets import ClassSet, class_set_from_names, list_presets, load_preset  # noqa: E402

__all__ = ["load_model", "HVLModel", "Prediction", "Encoded", "HVLHead", "HVLConfig", "HVLOutput",
           "create_backbone", "list_backbones", "BackboneUnavailable", "load_checkpoint", "save_checkpoint",
           "CheckpointError", "load_image", "ImageError", "ClassSet", "load_preset", "list_presets",
           "class_set_from_names", "DEFAULT_THRESHOLD", "SCORES", "ScoreError"]
