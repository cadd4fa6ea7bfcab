"""open_clip backbones: CLIP ViT-B/16 (the paper's), any open_clip model, hf-hub ids, local files."""
from __future__ import annotations

import os
from importlib import resources
from typing import Sequence

import torch

from ..hub import offline_unless_reachable
from .base import Backbone, BackboneUnavailable

TINY_CONFIG = "hvl-tiny-clip"
OFFLINE_HINT = ("point --backbone at a local weights file (e.g. ViT-B-16:/path/to/open_clip_pytorch_model.bin), "
                "or use the offline backbone medmnist-densenet121")


def _register_tiny_config() -> None:
    import open_clip

    if TINY_CONFIG not in open_clip.list_models():
        with resources.as_file(resources.files("hvl_core.backbones") / "configs" / f"{TINY_CONFIG}.json") as p:
            open_clip.add_model_config(p)


class OpenCLIPBackbone(Backbone):
    """An open_clip model: image tower for crops, text tower for class prompts."""

    def __init__(self, name: str, model_name: str, pretrained: str | None, seed: int | None = None,
                 cache_dir: str | None = None):
        super().__init__()
        import open_clip

        self.name = name
        self.model_name = model_name
        self.pretrained = pretrained
        try:
            with offline_unless_reachable() as offline:
                if seed is not None:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(seed)
                        model = open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir)
                else:
                    model = open_clip.create_model(model_name, pretrained=pretrained, cache_dir=cache_dir,
                                                   require_pretrained=pretrained is not None)
                self.tokenizer = open_clip.get_tokenizer(model_name, cache_dir=cache_dir)
        except (RuntimeError, OSError, ValueError) as e:
            where = "the Hugging Face hub is unreachable and the weights are not cached" if offline else str(e).split("\n")[0]
            raise BackboneUnavailable(f"Cannot load {name} ({model_name}, weights {pretrained!r}): {where}; "
                                      f"{OFFLINE_HINT}.") from e
        model.eval().requires_grad_(False)
        self.model = model
        pp = model.visual.preprocess_cfg if hasattr(model.visual, "preprocess_cfg") else {}
        self.mean = tuple(pp.get("mean", (0.48145466, 0.4578275, 0.40821073)))
        self.std = tuple(pp.get("std", (0.26862954, 0.26130258, 0.27577711)))
        size = model.visual.image_size
        self.image_size = int(size[0] if isinstance(size, (tuple, list)) else size)
        with torch.no_grad():
            self.embed_dim = int(self.encode_classes(["x"], ["x"], "{}").shape[-1])

    def modules(self):
        return [self.model]

    @torch.inference_mode()
    def encode_image(self, pixels: torch.Tensor) -> torch.Tensor:
        return self.model.encode_image(pixels)

    @torch.inference_mode()
    def encode_classes(self, names: Sequence[str], descriptions: Sequence[str], template: str) -> torch.Tensor:
        tokens = self.tokenizer([template.format(d) for d in descriptions]).to(self.device)
        return self.model.encode_text(tokens).float()


def parse_openclip_id(backbone: str) -> tuple[str, str | None]:
    """'hf-hub:org/name' → (that, None); 'Model:pretrained' or 'Model:/path/file' → (Model, tag/path);
    'openclip:Model:pretrained' likewise."""
    if backbone.startswith("openclip:"):
        backbone = backbone[len("openclip:"):]
    if backbone.startswith("hf-hub:"):
        return backbone, None
    model, sep, pretrained = backbone.partition(":")
    if not sep or not pretrained:
        raise ValueError(f"open_clip backbones are written MODEL:PRETRAINED (e.g. ViT-B-16:openai), got {backbone!r}")
    if pretrained.lower() in ("none", "random"):
        return model, None
    if not os.path.exists(pretrained) and ("/" in pretrained or pretrained.endswith((".bin", ".pt", ".pth", ".safetensors"))):
        raise BackboneUnavailable(f"Cannot load {backbone}: weights file {pretrained} does not exist; {OFFLINE_HINT}.")
    return model, pretrained


def create_openclip(backbone: str, **kwargs) -> OpenCLIPBackbone:
    model, pretrained = parse_openclip_id(backbone)
    seed = 0 if pretrained is None and not model.startswith("hf-hub:") else None
    return OpenCLIPBackbone(backbone, model, pretrained, seed=seed, **kwargs)


def create_clip_vit_b16(**kwargs) -> OpenCLIPBackbone:
    """The paper's backbone: open_clip ViT-B-16 with OpenAI weights (from the hub, cached)."""
    return OpenCLIPBackbone("clip-vit-b16", "ViT-B-16", "openai", **kwargs)


def create_clip_vit_b16_random(**kwargs) -> OpenCLIPBackbone:
    """The real ViT-B-16 architecture with seeded random weights (tests, timing)."""
    return OpenCLIPBackbone("clip-vit-b16-random", "ViT-B-16", None, seed=0, **kwargs)


def create_tiny_clip_random(**kwargs) -> OpenCLIPBackbone:
    """A tiny open_clip config with seeded random weights, for fast tests."""
    _register_tiny_config()
    return OpenCLIPBackbone("tiny-clip-random", TINY_CONFIG, None, seed=0, **kwargs)
