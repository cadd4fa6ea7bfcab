"""The backbone interface: images -> embeddings, class names -> class embeddings."""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # torch is imported where it is used, so the registry loads without it
    import torch


class BackboneUnavailable(RuntimeError):
    """A backbone's weights cannot be had (offline, missing file). The message is one sentence
    that says what to do; callers show it as is."""


class UnknownClassError(ValueError):
    """A class name the backbone cannot represent (e.g. a label-only backbone)."""


def names_local_file(name: str) -> bool:
    """Whether a backbone name points at the local disk (``MODEL:/path``, ``NAME:/path``,
    ``local-dir:``): a public server must not build such a name from user input."""
    if name.startswith("local-dir:"):
        return True
    if name.startswith(("hf-hub:", "openclip:hf-hub:")):
        return False
    tail = name.removeprefix("openclip:").partition(":")[2]
    return (
        bool(tail)
        and tail.lower() not in ("none", "random")
        and (
            "/" in tail
            or "\\" in tail
            or tail.startswith((".", "~"))
            or tail.endswith((".bin", ".pt", ".pth", ".safetensors"))
        )
    )


def public_name(name: str) -> str:
    """A backbone name as answers and reports show it: a local weights file by its own name
    (``ViT-B-16:/srv/w/open_clip.bin`` → ``ViT-B-16:open_clip.bin``), never the path to it."""
    if not names_local_file(name):
        return name
    path = name.removeprefix("local-dir:") if name.startswith("local-dir:") else name.partition(":")[2]
    if name.startswith("openclip:"):
        path = path.partition(":")[2]
    head = name[: len(name) - len(path)]
    return head + os.path.basename(path.replace("\\", "/").rstrip("/"))


class Backbone(ABC):
    """A frozen image encoder plus a way to embed class names.

    Subclasses set: ``name`` (registry id), ``embed_dim``, ``image_size`` (square input side),
    ``mean``/``std`` (per-channel normalisation applied to [0, 1] pixels; ``None`` for none),
    and ``note`` (why this backbone is in use, shown by the UI/CLI; may be empty).
    """

    name: str = ""
    embed_dim: int = 0
    image_size: int = 224
    mean: tuple[float, float, float] | None = None
    std: tuple[float, float, float] | None = None
    note: str = ""
    #: head options this backbone recommends (e.g. a similarity or temperature measured for it);
    #: merged under explicit user options by ``load_model``.
    head_defaults: dict = {}
    #: whether ``load_model`` adds ``negative_classes`` to a class set by default
    negatives_by_default: bool = False
    #: decision defaults measured on real images, per preset name: {"score": name, "thresholds":
    #: {score: threshold}}; class sets not listed get MSP at 0.5 (``hvl_core.defaults.decision_default``)
    decision_defaults: dict = {}
    #: "vision-language" (image and text towers: a class is the text of its prompt) or
    #: "label-only" (a classifier: a class is one of its labels, no text is read)
    kind: str = "vision-language"

    @property
    def trained_on(self) -> str:
        """The data its weights learnt from, one phrase (the catalog's; "" when not recorded)."""
        return _info(self.name).trained_on if _info(self.name) else ""

    @property
    def never_seen(self) -> str:
        """The kinds of picture its weights never learnt from (the catalog's; "" when not recorded)."""
        return _info(self.name).never_seen if _info(self.name) else ""

    def __init__(self) -> None:
        import torch

        self.device = torch.device("cpu")

    def to(self, device: torch.device | str) -> Backbone:
        import torch

        self.device = torch.device(device)
        for m in self.modules():
            m.to(self.device)
        return self

    @abstractmethod
    def modules(self) -> Sequence[torch.nn.Module]:
        """The torch modules holding weights (moved by ``to``, set to eval)."""

    @abstractmethod
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) normalised pixels on ``self.device`` -> (B, d) raw (unnormalised) embeddings."""

    @abstractmethod
    def encode_classes(self, names: Sequence[str], descriptions: Sequence[str], template: str) -> torch.Tensor:
        """Class embeddings (C, d), raw. ``descriptions[i]`` is the text to put in the prompt for
        class ``names[i]`` (often the name itself). Raise ``UnknownClassError`` for a class the
        backbone cannot represent."""

    def class_logit_bias(self, names: Sequence[str]) -> torch.Tensor | None:
        """Per-class additive logit bias (C,) for backbones whose classifier has one; else None."""
        return None

    def negative_classes(self, names: Sequence[str]) -> list[str]:
        """Classes the backbone knows besides ``names``, usable as negative classes (none by default)."""
        return []

    def normalize(self, pixels01: torch.Tensor) -> torch.Tensor:
        """[0, 1] pixels (..., 3, H, W) -> the backbone's input normalisation."""
        if self.mean is None:
            return pixels01
        import torch

        mean = torch.tensor(self.mean, dtype=pixels01.dtype, device=pixels01.device).view(3, 1, 1)
        std = torch.tensor(self.std, dtype=pixels01.dtype, device=pixels01.device).view(3, 1, 1)
        return (pixels01 - mean) / std

    def describe(self) -> str:
        return public_name(self.name) + (f" ({self.note})" if self.note else "")


def _info(name: str):
    """The catalog entry of a backbone name (None for names it does not list)."""
    from .catalog import backbone_info

    return backbone_info(name)
