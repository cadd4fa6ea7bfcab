"""The front door: ``load_model(...)`` → ``HVLModel`` with ``predict`` / ``predict_batch``.

A prediction is split in two steps so a UI can re-decide without re-running the encoder:
``encode(image)`` (the expensive part, all crops in one encoder call) and
``decide(encoded, threshold=..., k=..., ...)`` (the head only, milliseconds).
"""
from __future__ import annotations

import contextlib
import dataclasses
from dataclasses import dataclass, field
from typing import Iterable, Sequence

import numpy as np
import torch

from .backbones import Backbone, create_backbone, same_backbone
from .checkpoint import Checkpoint, CheckpointError, head_from_checkpoint, load_checkpoint
from .geometry import hierarchical_crops, split_scales
from .head import HVLHead, HVLOutput
from .images import LoadedImage, load_image
from .presets import ClassSet, class_set_from_names, load_preset

#: MSP threshold used when a checkpoint has no calibrated one. With the spec's sub-normalised
#: p1/p2 an untrained head rarely reaches high MSPs; 0.5 is a neutral middle for teaching.
DEFAULT_THRESHOLD = 0.5
#: crops per encoder call (bounds peak memory for big batches)
MAX_CROPS_PER_CALL = 256


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    if str(device) == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@dataclass
class Encoded:
    """Encoder output for one image: raw embeddings of every crop, plus the view the grid covers."""

    v0: torch.Tensor  # (d,)
    v1: torch.Tensor  # (n², d)
    v2: torch.Tensor  # (4n², d)
    n: int
    view: np.ndarray  # (S, S, 3) uint8: the square region of the image that scale 0 sees
    notes: list[str] = field(default_factory=list)


@dataclass
class Prediction:
    """Everything a UI needs to draw, as numpy / python values. Grids are row-major (row, col)."""

    label: str
    class_index: int
    msp: float
    known: bool
    threshold: float
    classes: list[str]
    p_id: np.ndarray  # (C,)
    p0: np.ndarray
    p1: np.ndarray
    p2: np.ndarray
    p1_patches: np.ndarray  # (n, n, C)
    p2_patches: np.ndarray  # (2n, 2n, C)
    entropy1: np.ndarray  # (n, n)
    entropy2: np.ndarray  # (2n, 2n)
    keep1: np.ndarray  # (n, n) bool
    keep2: np.ndarray  # (2n, 2n) bool
    entropy_gain: np.ndarray  # (2n, 2n)
    pseudo_ood: list[tuple[int, int]]  # top-K high-scale cells (row, col), by the selection rule
    n: int
    k: int
    tau: float
    backbone: str
    backbone_note: str
    image: np.ndarray = field(repr=False, default=None)  # the view the grids cover (S, S, 3) uint8
    notes: list[str] = field(default_factory=list)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.p_id, kind="stable")[:k]
        return [(self.classes[i], float(self.p_id[i])) for i in order]

    def to_dict(self) -> dict:
        """JSON-ready (no image)."""
        out = {}
        for k, v in self.__dict__.items():
            if k == "image":
                continue
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        out["pseudo_ood"] = [list(rc) for rc in self.pseudo_ood]
        return out


def class_embeddings(backbone: Backbone, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class embeddings (C + negatives, d) and the optional logit bias, computed once per backbone
    and class set."""
    cache = backbone.__dict__.setdefault("_class_cache", {})
    key = classes.key()
    if key not in cache:
        names = list(classes.names) + list(classes.negatives)
        prompts = list(classes.prompts) + list(classes.negatives)
        with torch.inference_mode():
            t = backbone.encode_classes(names, prompts, classes.template).float()
            bias = backbone.class_logit_bias(names)
        cache[key] = (t.clone(), None if bias is None else bias.float().clone())
    return cache[key]


class HVLModel:
    """A frozen backbone, an HVL head and a class set."""

    def __init__(self, backbone: Backbone, head: HVLHead, classes: ClassSet, detail: str = "upsample",
                 threshold: float | None = None, device: str | torch.device = "auto", checkpoint: str | None = None):
        if head.num_classes != len(classes.names):
            raise ValueError(f"the head has {head.num_classes} classes, the class set {len(classes.names)}")
        if head.config.num_negatives != len(classes.negatives):
            raise ValueError(f"the head expects {head.config.num_negatives} negative classes, the class set has "
                             f"{len(classes.negatives)}")
        if head.dim != backbone.embed_dim:
            raise ValueError(f"the head expects {head.dim}-d embeddings, {backbone.name} gives {backbone.embed_dim}")
        self.device = resolve_device(device)
        self.backbone = backbone.to(self.device)
        self.head = head.to(self.device).eval()
        self.classes = classes
        self.detail = detail
        self.threshold = DEFAULT_THRESHOLD if threshold is None else float(threshold)
        self.calibrated = threshold is not None
        self.checkpoint = checkpoint
        #: upsample and cut the crops where the encoder runs (GPU: only the S² view crosses the bus)
        self.crops_on_device = self.device.type == "cuda"
        self.text, self.logit_bias = (x if x is None else x.to(self.device) for x in class_embeddings(backbone, classes))

    @property
    def n(self) -> int:
        return self.head.config.n

    def _autocast(self):
        if self.device.type == "cuda":
            dtype = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
            return torch.autocast("cuda", dtype=dtype)
        return contextlib.nullcontext()

    @torch.inference_mode()
    def encode_crops(self, crops01: torch.Tensor) -> torch.Tensor:
        """(N, 3, S, S) [0,1] pixels → (N, d) float32 embeddings, in chunks of MAX_CROPS_PER_CALL."""
        outs = []
        for chunk in crops01.split(MAX_CROPS_PER_CALL):
            if self.device.type == "cuda" and chunk.device.type == "cpu":
                chunk = chunk.pin_memory().to(self.device, non_blocking=True)
            x = self.backbone.normalize(chunk.to(self.device))
            with self._autocast():
                outs.append(self.backbone.encode_image(x).float())
        return torch.cat(outs)

    def _load(self, image) -> LoadedImage:
        return image if isinstance(image, LoadedImage) else load_image(image)

    def encode_batch(self, images: Sequence) -> list[Encoded]:
        """Encode several images: all their crops go through the encoder together."""
        loaded = [self._load(im) for im in images]
        S, n = self.backbone.image_size, self.n
        where = self.device if self.crops_on_device else None
        crops = torch.stack([hierarchical_crops(li.image, n, S, self.detail, device=where) for li in loaded])  # (B, M, 3, S, S)
        B, M = crops.shape[:2]
        v = self.encode_crops(crops.flatten(0, 1)).view(B, M, -1).cpu()
        v0, v1, v2 = split_scales(v, n)
        views = (crops[:, 0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return [Encoded(v0=v0[i], v1=v1[i], v2=v2[i], n=n, view=views[i],
                        notes=list(li.notes)) for i, li in enumerate(loaded)]

    def encode(self, image) -> Encoded:
        return self.encode_batch([image])[0]

    @torch.inference_mode()
    def run_head(self, encoded: Sequence[Encoded], **overrides) -> HVLOutput:
        v0 = torch.stack([e.v0 for e in encoded]).to(self.device)
        v1 = torch.stack([e.v1 for e in encoded]).to(self.device)
        v2 = torch.stack([e.v2 for e in encoded]).to(self.device)
        return self.head(v0, v1, v2, self.text, self.logit_bias, **overrides)

    def decide_batch(self, encoded: Sequence[Encoded], threshold: float | None = None, **overrides) -> list[Prediction]:
        """Run the head (cheap) on cached encodings; ``overrides`` are head options for this call
        (``k``, ``tau``, ``renormalize``, ``entropy_filter``, ...)."""
        if not encoded:
            return []
        out = self.run_head(encoded, **overrides)
        thr = self.threshold if threshold is None else float(threshold)
        n, g, C = self.n, 2 * self.n, len(self.classes.names)
        cfg = self.head.config
        k = overrides.get("k", cfg.k)
        o = {f: getattr(out, f).float().cpu().numpy() if getattr(out, f).is_floating_point() else getattr(out, f).cpu().numpy()
             for f in ("p0", "p1", "p2", "p_id", "msp", "p1_patches", "p2_patches", "entropy1", "entropy2",
                       "keep1", "keep2", "entropy_gain", "pseudo_ood")}
        preds = []
        for i, e in enumerate(encoded):
            idx = int(np.argmax(o["p_id"][i]))
            score = float(o["msp"][i])
            preds.append(Prediction(
                label=self.classes.names[idx], class_index=idx, msp=score, known=score >= thr, threshold=thr,
                classes=list(self.classes.names), p_id=o["p_id"][i], p0=o["p0"][i], p1=o["p1"][i], p2=o["p2"][i],
                p1_patches=o["p1_patches"][i].reshape(n, n, C), p2_patches=o["p2_patches"][i].reshape(g, g, C),
                entropy1=o["entropy1"][i].reshape(n, n), entropy2=o["entropy2"][i].reshape(g, g),
                keep1=o["keep1"][i].reshape(n, n), keep2=o["keep2"][i].reshape(g, g),
                entropy_gain=o["entropy_gain"][i].reshape(g, g),
                pseudo_ood=[(int(j) // g, int(j) % g) for j in o["pseudo_ood"][i]],
                n=n, k=int(k), tau=float(overrides.get("tau", cfg.tau)), backbone=self.backbone.name,
                backbone_note=self.backbone.note, image=e.view, notes=list(e.notes)))
        return preds

    def decide(self, encoded: Encoded, threshold: float | None = None, **overrides) -> Prediction:
        return self.decide_batch([encoded], threshold, **overrides)[0]

    def predict(self, image, threshold: float | None = None, **overrides) -> Prediction:
        """Predict one image (path, bytes, PIL image, numpy array). Raises ``ImageError`` for bad input."""
        return self.decide(self.encode(image), threshold, **overrides)

    def predict_batch(self, images: Iterable, batch_size: int = 8, threshold: float | None = None,
                      **overrides) -> list[Prediction]:
        images = list(images)
        preds: list[Prediction] = []
        for s in range(0, len(images), batch_size):
            preds += self.decide_batch(self.encode_batch(images[s:s + batch_size]), threshold, **overrides)
        return preds


def resolve_classes(classes=None, preset: str | None = None, template: str | None = None) -> ClassSet:
    if classes is not None and preset is not None:
        raise ValueError("give either classes or a preset, not both")
    if isinstance(classes, ClassSet):
        return classes
    if classes is not None:
        return class_set_from_names(classes, template)
    if preset is not None:
        return load_preset(preset, template)
    raise ValueError("give a preset (e.g. dermatology-isic4) or a list of class names")


def load_model(backbone: str | Backbone = "auto", classes=None, preset: str | None = None,
               checkpoint: str | Checkpoint | None = None, device: str | torch.device = "auto",
               template: str | None = None, detail: str = "upsample", threshold: float | None = None,
               **head_options) -> HVLModel:
    """Build an HVL model.

    - ``backbone``: a registry name (see ``hvl_core.backbones``) or a ``Backbone`` instance.
    - ``classes`` (names, "name: prompt description" strings or a ``ClassSet``) or ``preset``.
    - ``checkpoint``: a folder, file or hub repo id; it fixes the classes, options and backbone.
    - ``head_options``: ``HVLConfig`` fields (``n``, ``k``, ``tau``, ``renormalize``, ...).
    """
    if checkpoint is not None:
        ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        want = ck.backbone
        name = backbone if isinstance(backbone, str) else backbone.name
        if name != "auto" and not same_backbone(name, want):  # want:/path/to/weights is want
            raise CheckpointError(f"checkpoint {ck.source} was trained on backbone {want}, not {name}")
        bb = backbone if isinstance(backbone, Backbone) else create_backbone(want if name == "auto" else name)
        if ck.meta["embed_dim"] != bb.embed_dim:
            raise CheckpointError(f"checkpoint {ck.source} has {ck.meta['embed_dim']}-d weights; {bb.name} gives "
                                  f"{bb.embed_dim}-d embeddings")
        if classes is not None or preset is not None:
            asked = resolve_classes(classes, preset, template)
            if asked.names != ck.classes.names:
                raise CheckpointError(f"checkpoint {ck.source} knows {list(ck.classes.names)}, not {list(asked.names)}")
        head = head_from_checkpoint(ck, **head_options)
        return HVLModel(bb, head, ck.classes, ck.meta.get("detail", detail),
                        ck.threshold if threshold is None else threshold, device, checkpoint=ck.source)
    bb = backbone if isinstance(backbone, Backbone) else create_backbone(backbone)
    cs = resolve_classes(classes, preset, template)
    options = {**bb.head_defaults, **head_options}
    if "num_negatives" in head_options:  # explicit: 0 turns negatives off, N keeps the first N
        cs = dataclasses.replace(cs, negatives=tuple(bb.negative_classes(cs.names))[:head_options["num_negatives"]])
    elif bb.negatives_by_default:  # all the backbone's other labels (a preset's negatives among them)
        cs = dataclasses.replace(cs, negatives=tuple(bb.negative_classes(cs.names)))
    options["num_negatives"] = len(cs.negatives)
    head = HVLHead(bb.embed_dim, len(cs.names), **options)
    return HVLModel(bb, head, cs, detail, threshold, device)
