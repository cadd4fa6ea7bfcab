"""open_clip backbones: the named vision-language models, their random twins, any open_clip model,
hf-hub ids and local weights files.

A random twin is built offline from a config and tokenizer that open_clip or this package ships
(``configs/``), so every path up to the download is exercised without the network. The same
offline architecture takes a local weights file: ``biomedclip:/path/open_clip_pytorch_model.bin``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from importlib import resources

import torch

from ..hub import offline_unless_reachable, unavailable_offline
from ..presets import fill_template
from .base import Backbone, BackboneUnavailable
from .catalog import BY_NAME, BackboneInfo, offline_failure, offline_hint

TINY_CONFIG = "hvl-tiny-clip"
#: the seed of every random twin (same weights on every machine)
RANDOM_SEED = 0
WEIGHT_SUFFIXES = (".bin", ".pt", ".pth", ".safetensors")


def _installed(package: str) -> bool:
    try:
        __import__(package)
    except ImportError:
        return False
    return True


def _config_dir(rel: str):
    return resources.files("hvl_core.backbones") / rel


def _register_tiny_config() -> None:
    import open_clip

    if TINY_CONFIG not in open_clip.list_models():
        with resources.as_file(_config_dir(f"configs/{TINY_CONFIG}.json")) as p:
            open_clip.add_model_config(p)


def _architecture(info: BackboneInfo) -> tuple[str, dict]:
    """(open_clip model name, create_model kwargs) that build ``info``'s architecture offline."""
    arch = info.architecture
    if arch.endswith(".json"):  # a config file of ours, registered under its stem
        _register_tiny_config()
        return TINY_CONFIG, {}
    if not arch.startswith("configs/"):
        return arch, {}  # an open_clip built-in config
    # a shipped hub snapshot (open_clip_config.json + HF text config + tokenizer files): open_clip's
    # local-dir schema, with the HF text tower pointed at the same folder instead of the hub
    folder = str(_config_dir(arch))
    text_cfg = json.loads((_config_dir(arch) / "open_clip_config.json").read_text())["model_cfg"]["text_cfg"]
    if "hf_model_name" in text_cfg:
        text_cfg = {**text_cfg, "hf_model_name": folder, "hf_tokenizer_name": folder, "hf_model_pretrained": False}
        return f"local-dir:{folder}", {"pretrained_text": False, "text_cfg": text_cfg}
    return f"local-dir:{folder}", {}


class OpenCLIPBackbone(Backbone):
    """An open_clip model: image tower for crops, text tower for class prompts."""

    def __init__(
        self,
        name: str,
        model_name: str,
        pretrained: str | None = None,
        seed: int | None = None,
        cache_dir: str | None = None,
        weights_file: str | None = None,
        **create_kwargs,
    ):
        """``pretrained``: an open_clip tag or file (ignored by hf-hub / local-dir names, whose
        weights come with them); ``seed``: random weights, seeded; ``weights_file``: a local file
        loaded into the architecture (strict, never unpickled)."""
        super().__init__()
        import open_clip

        self.name = name
        self.model_name = model_name
        self.pretrained = pretrained
        hub_weights = model_name.startswith("hf-hub:") and seed is None
        offline = False
        try:
            with offline_unless_reachable() as offline:
                if seed is not None or weights_file is not None:
                    with torch.random.fork_rng(devices=[]):
                        torch.manual_seed(RANDOM_SEED if seed is None else seed)
                        model = open_clip.create_model(
                            model_name, pretrained=pretrained, cache_dir=cache_dir, **create_kwargs
                        )
                    if weights_file is not None:
                        open_clip.load_checkpoint(model, weights_file, strict=True, weights_only=True)
                else:
                    # hf-hub models load their weights with the config: demand them, or open_clip
                    # would quietly hand back random weights when the download fails
                    model = open_clip.create_model(
                        model_name,
                        pretrained=pretrained,
                        cache_dir=cache_dir,
                        require_pretrained=pretrained is not None or hub_weights,
                        **create_kwargs,
                    )
                self.tokenizer = open_clip.get_tokenizer(model_name, cache_dir=cache_dir)
        except (ImportError, RuntimeError, OSError, ValueError, KeyError) as e:
            if not _installed("transformers") and "transformers" in f"{e} {getattr(e, 'name', '')}":
                # open_clip's own message asks for a pip install: not something a user of a server can do
                raise BackboneUnavailable(
                    f"Cannot load {name}: its text tower needs the transformers package, "
                    "which this installation lacks; use another backbone."
                ) from e
            if weights_file is not None:
                where = f"{weights_file} does not fit its architecture or is not a weights file ({type(e).__name__})"
            elif offline:
                where = "the Hugging Face hub is unreachable and the weights are not cached"
            else:
                where = str(e).strip().split("\n")[0]
            raise BackboneUnavailable(f"Cannot load {name}: {where}; {offline_hint(name)}.") from e
        model.eval().requires_grad_(False)
        self.model = model
        pp = getattr(model.visual, "preprocess_cfg", {}) or {}
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
        tokens = self.tokenizer([fill_template(template, d) for d in descriptions]).to(self.device)
        return self.model.encode_text(tokens).float()


def _check_weights_file(backbone: str, path: str) -> None:
    """A local weights file must be named like one (``WEIGHT_SUFFIXES``: nothing else is opened,
    so a backbone name cannot make the disk be read) and look like one — a PyTorch zip archive,
    a pickle (read weights-only) or safetensors — before torch is asked to read it. Missing,
    unreadable and not weights get the same sentence: it never tells whether a file exists."""
    refused = BackboneUnavailable(
        f"Cannot load {backbone}: {path} is not a readable weights file (a PyTorch checkpoint or safetensors "
        f"named *{', *'.join(WEIGHT_SUFFIXES)}); {offline_hint(backbone.partition(':')[0])}."
    )
    if not path.lower().endswith(WEIGHT_SUFFIXES):
        raise refused
    try:
        with open(path, "rb") as f:
            head = f.read(9)
    except OSError:
        raise refused from None
    zip_or_pickle = head[:4] == b"PK\x03\x04" or head[:1] == b"\x80"
    safetensors = len(head) == 9 and head[8:9] == b"{"
    if not (zip_or_pickle or safetensors):
        raise refused


def parse_openclip_id(backbone: str) -> tuple[str, str | None]:
    """'hf-hub:org/name' → (that, None); 'Model:pretrained' or 'Model:/path/file' → (Model, tag/path);
    'openclip:Model:pretrained' likewise."""
    if backbone.startswith("openclip:"):
        backbone = backbone[len("openclip:") :]
    if backbone.startswith("hf-hub:"):
        return backbone, None
    model, sep, pretrained = backbone.partition(":")
    if not sep or not pretrained:
        raise ValueError(f"open_clip backbones are written MODEL:PRETRAINED (e.g. ViT-B-16:openai), got {backbone!r}")
    if pretrained.lower() in ("none", "random"):
        return model, None
    if (
        "/" in pretrained
        or "\\" in pretrained
        or pretrained.endswith(WEIGHT_SUFFIXES)
        or not _known_tag(model, pretrained)
    ):
        _check_weights_file(backbone, pretrained)  # open_clip would load any existing file a tag names
    return model, pretrained


def _known_tag(model: str, tag: str) -> bool:
    """Whether open_clip knows ``tag`` as pretrained weights of ``model`` (else it is a file)."""
    import open_clip

    return bool(open_clip.get_pretrained_cfg(model, tag))


def _quick_gelu(model: str, pretrained: str | None) -> dict:
    """Weights trained with QuickGELU (OpenAI's) need it in the architecture; open_clip only warns."""
    import open_clip

    if pretrained and not os.path.exists(pretrained):
        cfg = open_clip.get_pretrained_cfg(model, pretrained) or {}
        if cfg.get("quick_gelu"):
            return {"force_quick_gelu": True}
    return {}


def _fail_fast_offline(name: str, repo_id: str, filenames, cache_dir: str | None = None) -> None:
    """Offline and not cached: one sentence now, before open_clip (and transformers) are even imported."""
    if unavailable_offline(repo_id, filenames, cache_dir):
        raise BackboneUnavailable(
            f"Cannot load {name}: the Hugging Face hub is unreachable and the weights are "
            f"not cached; {offline_hint(name)}."
        )


def create_openclip(backbone: str, **kwargs) -> OpenCLIPBackbone:
    model, pretrained = parse_openclip_id(backbone)
    if model.startswith("hf-hub:"):
        _fail_fast_offline(backbone, model[len("hf-hub:") :], ["open_clip_config.json"], kwargs.get("cache_dir"))
    seed = RANDOM_SEED if pretrained is None and not model.startswith("hf-hub:") else None
    return OpenCLIPBackbone(backbone, model, pretrained, seed=seed, **_quick_gelu(model, pretrained), **kwargs)


def create_named(name: str, weights_file: str | None = None, **kwargs) -> OpenCLIPBackbone:
    """A catalog backbone: real weights (``info.openclip``), its ``-random`` twin, or the twin's
    architecture with a local ``weights_file``."""
    info = BY_NAME[name]
    if info.twin_of is None and weights_file is None and info.openclip:
        model, pretrained = parse_openclip_id(info.openclip)
        why = offline_failure(name, kwargs.get("cache_dir"))
        if why:
            raise BackboneUnavailable(why)
        return OpenCLIPBackbone(name, model, pretrained, **_quick_gelu(model, pretrained), **kwargs)
    model, create_kwargs = _architecture(info)
    label = name if weights_file is None else f"{name}:{weights_file}"
    if weights_file is not None:
        _check_weights_file(label, weights_file)
    return OpenCLIPBackbone(
        label,
        model,
        None,
        seed=RANDOM_SEED if weights_file is None else None,
        weights_file=weights_file,
        **create_kwargs,
        **kwargs,
    )
