"""The front door: ``load_model(...)`` → ``HVLModel`` with ``predict`` / ``predict_batch``.

A prediction is split in two steps so a UI can re-decide without re-running the encoder:
``encode(image)`` (the expensive part, all crops in one encoder call) and
``decide(encoded, threshold=..., k=..., ...)`` (the head only, milliseconds).
"""

from __future__ import annotations

import contextlib
import dataclasses
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .backbones import Backbone, create_backbone, public_name, same_backbone
from .checkpoint import Checkpoint, CheckpointError, head_from_checkpoint, load_checkpoint
from .defaults import decision_default, default_threshold
from .geometry import hierarchical_crops, split_scales
from .head import SCORES, HVLHead, HVLOutput, ScoreError, check_threshold
from .images import LoadedImage, load_image
from .prediction import DROPPED_LABEL, OTHER_LABEL, Prediction, predictions  # noqa: F401 — the labels: old home
from .presets import ClassSet, class_set_from_names, load_preset

#: MSP threshold used when neither a checkpoint nor the backbone (``Backbone.decision_defaults``)
#: gives one. With the spec's sub-normalised p1/p2 an untrained head rarely reaches high MSPs;
#: 0.5 is a neutral middle for teaching (the score registry's). Energy and max-logit have no neutral value.
DEFAULT_THRESHOLD = SCORES["msp"].default_threshold
#: crops per encoder call (bounds peak memory for big batches)
MAX_CROPS_PER_CALL = 256
#: class sets whose text embeddings are kept per backbone
MAX_CLASS_SETS = 32


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


def class_embeddings(backbone: Backbone, classes: ClassSet) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Class embeddings (C + negatives, d) and the optional logit bias, computed once per backbone
    and class set; the ``MAX_CLASS_SETS`` most recently used class sets are kept per backbone."""
    cache = backbone.__dict__.setdefault("_class_cache", OrderedDict())
    key = classes.key()
    if key in cache:
        cache.move_to_end(key)
        return cache[key]
    names = list(classes.names) + list(classes.negatives)
    prompts = list(classes.prompts) + list(classes.negatives)
    with torch.inference_mode():
        t = backbone.encode_classes(names, prompts, classes.template).float()
        bias = backbone.class_logit_bias(names)
    cache[key] = (t.clone(), None if bias is None else bias.float().clone())
    while len(cache) > MAX_CLASS_SETS:  # custom class lists are free text: unbounded otherwise
        cache.popitem(last=False)
    return cache[key]


class HVLModel:
    """A frozen backbone, an HVL head and a class set; with a checkpoint's stage 1 (``scope``,
    HVL_SPEC §11) and its classes' measured ``precision`` when it ships them."""

    scope = None
    precision = None

    def __init__(
        self,
        backbone: Backbone,
        head: HVLHead,
        classes: ClassSet,
        detail: str = "upsample",
        threshold: float | None = None,
        device: str | torch.device = "auto",
        checkpoint: str | None = None,
        calibrated: bool | None = None,
        calibration: dict[str, list[float]] | None = None,
        calibrated_thresholds: dict[str, float] | None = None,
    ):
        """``threshold`` is in the units of the head's score (``head.config.score``); ``None``: the
        backbone's default for that score. ``calibrated`` (default: a threshold was given) says
        whether it is a calibrated threshold rather than the caller's choice. ``calibration``:
        {score name: scores of known calibration images} for conformal p-values;
        ``calibrated_thresholds``: {score name: threshold} calibrated on them for other scores."""
        if head.num_classes != len(classes.names):
            raise ValueError(f"the head has {head.num_classes} classes, the class set {len(classes.names)}")
        if head.config.num_negatives != len(classes.negatives):
            raise ValueError(
                f"the head expects {head.config.num_negatives} negative classes, the class set has "
                f"{len(classes.negatives)}"
            )
        if head.dim != backbone.embed_dim:
            raise ValueError(f"the head expects {head.dim}-d embeddings, {backbone.name} gives {backbone.embed_dim}")
        self.device = resolve_device(device)
        self.backbone = backbone.to(self.device)
        self.head = head.to(self.device).eval()
        self.classes = classes
        self.detail = detail
        self.calibrated = threshold is not None if calibrated is None else bool(calibrated)
        if threshold is None:
            self.threshold, self.threshold_source = default_threshold(backbone, head.config.score, classes.preset)
        else:
            self.threshold = check_threshold(threshold, head.config, head.num_classes)
            self.threshold_source = "calibrated" if self.calibrated else "given"
        self.checkpoint = checkpoint
        self.calibration = {k: np.sort(np.asarray(v, dtype=np.float64)) for k, v in (calibration or {}).items()}
        self.calibrated_thresholds = dict(calibrated_thresholds or {})
        #: upsample and cut the crops where the encoder runs (GPU: only the S² view crosses the bus)
        self.crops_on_device = self.device.type == "cuda"
        self.text, self.logit_bias = (
            x if x is None else x.to(self.device) for x in class_embeddings(backbone, classes)
        )

    @property
    def n(self) -> int:
        return self.head.config.n

    @property
    def score_name(self) -> str:
        return self.head.config.score

    def resolve_threshold(self, threshold: float | None = None, score: str | None = None) -> tuple[float, str]:
        """(threshold, source) for deciding with ``score`` (default: the model's). ``None`` keeps the
        model's threshold when the score is the model's own; for another score it takes that
        score's default, unless the model's threshold was calibrated (a checkpoint): then the
        calibration is for the model's score, and ``ScoreError`` asks for a threshold."""
        cfg = self.head.config if score is None else dataclasses.replace(self.head.config, score=score)
        C = self.head.num_classes
        if threshold is not None:
            return check_threshold(threshold, cfg, C), "given"
        if cfg.score == self.score_name:
            return self.threshold, self.threshold_source
        if cfg.score in self.calibrated_thresholds:
            return check_threshold(self.calibrated_thresholds[cfg.score], cfg, C), "calibrated"
        if self.calibrated:
            where = f"checkpoint {self.checkpoint}" if self.checkpoint else "this model"
            raise ScoreError(
                f"the threshold of {where} ({self.threshold:g}) was calibrated for the {self.score_name} "
                f"score, not {cfg.score}: give a threshold in {cfg.score} units, or recalibrate with "
                f"score={cfg.score}"
            )
        thr, source = default_threshold(self.backbone, cfg.score, self.classes.preset)
        return check_threshold(thr, cfg, C), source

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
        per_image = [hierarchical_crops(li.image, n, S, self.detail, device=where) for li in loaded]
        # (B, M, 3, S, S); one image: a view, not a copy of its 21 crops
        crops = per_image[0].unsqueeze(0) if len(per_image) == 1 else torch.stack(per_image)
        B, M = crops.shape[:2]
        v = self.encode_crops(crops.flatten(0, 1)).view(B, M, -1).cpu()
        v0, v1, v2 = split_scales(v, n)
        views = (crops[:, 0].permute(0, 2, 3, 1) * 255).round().to(torch.uint8).cpu().numpy()
        return [
            Encoded(v0=v0[i], v1=v1[i], v2=v2[i], n=n, view=views[i], notes=list(li.notes))
            for i, li in enumerate(loaded)
        ]

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
        (``k``, ``tau``, ``renormalize``, ``entropy_filter``, ``score``, ...). ``threshold`` is in
        the units of the score used (see ``resolve_threshold``); a threshold or score that does not
        fit raises ``ScoreError`` (a ``ValueError``) with one sentence saying why."""
        if not encoded:
            return []
        cfg = dataclasses.replace(self.head.config, **overrides) if overrides else self.head.config
        thr, source = self.resolve_threshold(threshold, cfg.score)
        return predictions(
            self.run_head(encoded, **overrides),
            cfg,
            self.classes.names,
            self.classes.negatives,
            encoded,
            thr,
            source,
            (public_name(self.backbone.name), self.backbone.note),  # never a server path
            self.calibration.get(cfg.score),
            self.scope,
            # measured at the checkpoint's own score and threshold only
            self.precision if source == "calibrated" and cfg.score == self.head.config.score else None,
        )

    def decide(self, encoded: Encoded, threshold: float | None = None, **overrides) -> Prediction:
        return self.decide_batch([encoded], threshold, **overrides)[0]

    def predict(self, image, threshold: float | None = None, **overrides) -> Prediction:
        """Predict one image (path, bytes, PIL image, numpy array). Raises ``ImageError`` for bad input."""
        return self.decide(self.encode(image), threshold, **overrides)

    def predict_batch(
        self, images: Iterable, batch_size: int = 8, threshold: float | None = None, **overrides
    ) -> list[Prediction]:
        images = list(images)
        preds: list[Prediction] = []
        for s in range(0, len(images), batch_size):
            preds += self.decide_batch(self.encode_batch(images[s : s + batch_size]), threshold, **overrides)
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


def load_model(
    backbone: str | Backbone = "auto",
    classes=None,
    preset: str | None = None,
    checkpoint: str | Checkpoint | None = None,
    device: str | torch.device = "auto",
    template: str | None = None,
    detail: str = "upsample",
    threshold: float | None = None,
    **head_options,
) -> HVLModel:
    """Build an HVL model.

    - ``backbone``: a registry name (see ``hvl_core.backbones``) or a ``Backbone`` instance.
    - ``classes`` (names, "name: prompt description" strings or a ``ClassSet``) or ``preset``.
    - ``checkpoint``: a folder, file or hub repo id; it fixes the classes, options and backbone.
    - ``head_options``: ``HVLConfig`` fields (``n``, ``k``, ``tau``, ``renormalize``, ``score``, ...);
      the backbone's ``head_defaults`` fill the rest (e.g. its measured default score).
    - ``threshold``: in the units of the score; ``None``: the checkpoint's calibrated one, else
      the backbone's default for the score and preset (``default_threshold``).
    - the score: ``score=`` here, else the backbone's measured default for the preset
      (``decision_default``; MSP, the paper's, where nothing was measured).
    """
    if checkpoint is not None:
        ck = checkpoint if isinstance(checkpoint, Checkpoint) else load_checkpoint(checkpoint)
        want = ck.backbone
        name = backbone if isinstance(backbone, str) else backbone.name
        if name != "auto" and not same_backbone(name, want):  # want:/path/to/weights is want
            raise CheckpointError(f"checkpoint {ck.source} was trained on backbone {want}, not {name}")
        bb = backbone if isinstance(backbone, Backbone) else create_backbone(want if name == "auto" else name)
        if ck.meta["embed_dim"] != bb.embed_dim:
            raise CheckpointError(
                f"checkpoint {ck.source} has {ck.meta['embed_dim']}-d weights; {bb.name} gives "
                f"{bb.embed_dim}-d embeddings"
            )
        if classes is not None or preset is not None:
            asked = resolve_classes(classes, preset, template)
            if asked.names != ck.classes.names:
                raise CheckpointError(f"checkpoint {ck.source} knows {list(ck.classes.names)}, not {list(asked.names)}")
        head = head_from_checkpoint(ck, **head_options)
        own = ck.calibrated_threshold(head.config.score)
        if threshold is None and ck.threshold is not None and own is None:
            raise ScoreError(
                f"checkpoint {ck.source}'s threshold ({ck.threshold:g}) was calibrated for the "
                f"{ck.config.score} score, not {head.config.score}: give a threshold in "
                f"{head.config.score} units, or recalibrate with score={head.config.score}"
            )
        calibrated = threshold is None and own is not None
        thresholds = {s: t for s in SCORES if (t := ck.calibrated_threshold(s)) is not None}
        model = HVLModel(
            bb,
            head,
            ck.classes,
            ck.meta.get("detail", detail),
            own if threshold is None else threshold,
            device,
            checkpoint=ck.source,
            calibrated=calibrated,
            calibration=ck.calibration_scores,
            calibrated_thresholds=thresholds,
        )
        model.scope, model.precision = ck.scope, (ck.meta.get("measured") or {}).get("precision")
        return model
    bb = backbone if isinstance(backbone, Backbone) else create_backbone(backbone)
    cs = resolve_classes(classes, preset, template)
    options = {**bb.head_defaults, "score": decision_default(bb, cs.preset)["score"], **head_options}
    if "num_negatives" in head_options:  # explicit: 0 turns negatives off, N keeps the first N
        cs = dataclasses.replace(cs, negatives=tuple(bb.negative_classes(cs.names))[: head_options["num_negatives"]])
    elif bb.negatives_by_default:  # all the backbone's other labels (a preset's negatives among them)
        cs = dataclasses.replace(cs, negatives=tuple(bb.negative_classes(cs.names)))
    options["num_negatives"] = len(cs.negatives)
    head = HVLHead(bb.embed_dim, len(cs.names), **options)
    return HVLModel(bb, head, cs, detail, threshold, device, calibrated=False)
