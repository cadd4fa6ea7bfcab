"""The front door: ``load_model(...)`` → ``HVLModel`` with ``predict`` / ``predict_batch``.

A prediction is split in two steps so a UI can re-decide without re-running the encoder:
``encode(image)`` (the expensive part, all crops in one encoder call) and
``decide(encoded, threshold=..., k=..., ...)`` (the head only, milliseconds).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch

from .backbones import Backbone, create_backbone, same_backbone
from .checkpoint import Checkpoint, CheckpointError, head_from_checkpoint, load_checkpoint
from .conformal import conformal_pvalue
from .geometry import hierarchical_crops, split_scales
from .head import SCORES, HVLHead, HVLOutput, ScoreError, check_threshold, scale_scores, score_range
from .images import LoadedImage, load_image
from .presets import ClassSet, class_set_from_names, load_preset

#: MSP threshold used when neither a checkpoint nor the backbone (``Backbone.decision_defaults``)
#: gives one. With the spec's sub-normalised p1/p2 an untrained head rarely reaches high MSPs;
#: 0.5 is a neutral middle for teaching. Energy and max-logit have no neutral value.
DEFAULT_THRESHOLD = 0.5
#: how the page names the probability mass of the negative classes, and the mass of the patches
#: the entropy filter dropped (the remainder of the sub-normalised p¹, p²)
OTHER_LABEL = "other (not a known class)"
DROPPED_LABEL = "dropped by the entropy filter"
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
    """Everything a UI needs to draw, as numpy / python values. Grids are row-major (row, col).

    Decision: ``known = score >= threshold``; ``score`` is the ``score_name`` score ("msp", the
    paper's; "energy" or "maxlogit", HVL_SPEC §9), ``threshold`` is in its units and
    ``score_range`` is the interval it can take (``None`` ends: unbounded). ``msp`` = max p_ID
    is always given. ``threshold_source``: "calibrated" (a checkpoint's 95%-TPR threshold),
    "measured" (the backbone's default for this preset, chosen on real images:
    bench/results/decision_defaults.md), "default" (0.5 for MSP, not measured) or "given" (the
    caller's).
    ``scale_scores`` = the per-scale terms (S⁰, S¹, S²) of a logit score, whose mean is
    ``score`` (None for MSP, which is not a mean over scales).

    Where the probability goes. ``p0, p1, p2, p_id`` cover the C known classes only. Each scale's
    softmax also runs over the Q negative classes (``negatives``, possibly none), and the
    entropy filter drops patches from p¹ and p² without renormalising (the paper's
    sub-normalised p¹, p²). So for each distribution ``s`` in ("p0", "p1", "p2", "p_id"):
    ``sum(s) + p_other[s] + p_dropped[s] == 1``, where ``p_other[s]`` is the mass that went to
    the negative classes ("other (not a known class)") and ``p_dropped[s]`` the share of the
    patches the filter dropped (0 for p0, and with ``renormalize``). ``p_negatives`` (Q,) splits
    ``p_other["p_id"]`` by negative class. ``shares(s)`` lists all of it, summing to 1.

    Entropies (``entropy1``, ``entropy2``, ``entropy_gain``) are over the full softmax of
    ``entropy_classes`` = C + Q classes, so their maximum (an even split) is
    ``entropy_max`` = ln(C + Q).
    """

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
    score: float = math.nan
    score_name: str = "msp"
    score_range: tuple[float | None, float | None] = (0.0, 1.0)
    scale_scores: tuple[float, float, float] | None = None
    score0: float | None = None  # the decision score of scale 0 alone (the single-scale, MCM-style verdict)
    threshold_source: str = "default"
    #: conformal p-value (``hvl_core.conformal``) against the checkpoint's known calibration
    #: images, when it ships their scores in this score's units; None otherwise
    p_value: float | None = None
    n_calibration: int = 0
    negatives: list[str] = field(default_factory=list)
    p_negatives: np.ndarray = None  # (Q,) fused, by negative class
    p_other: dict = field(default_factory=dict)  # {"p0", "p1", "p2", "p_id"} -> mass of the negatives
    p_dropped: dict = field(default_factory=dict)  # {"p0", "p1", "p2", "p_id"} -> mass the filter dropped
    entropy_classes: int = 0
    entropy_max: float = 0.0
    image: np.ndarray = field(repr=False, default=None)  # the view the grids cover (S, S, 3) uint8
    notes: list[str] = field(default_factory=list)

    def top(self, k: int = 3) -> list[tuple[str, float]]:
        order = np.argsort(-self.p_id, kind="stable")[:k]
        return [(self.classes[i], float(self.p_id[i])) for i in order]

    def shares(self, which: str = "p_id") -> list[tuple[str, float]]:
        """Distribution ``which`` ("p0", "p1", "p2" or "p_id") as (label, mass) pairs that sum
        to 1: the known classes, then "other (not a known class)" when there are negative
        classes, then "dropped by the entropy filter" when the filter dropped any mass."""
        out = [(c, float(v)) for c, v in zip(self.classes, getattr(self, which))]
        if self.negatives:
            out.append((OTHER_LABEL, self.p_other[which]))
        if self.p_dropped[which] > 0:
            out.append((DROPPED_LABEL, self.p_dropped[which]))
        return out

    def to_dict(self) -> dict:
        """JSON-ready (no image; an unbounded end of ``score_range`` is ``None``)."""
        out = {}
        for k, v in self.__dict__.items():
            if k == "image":
                continue
            out[k] = v.tolist() if isinstance(v, np.ndarray) else v
        out["pseudo_ood"] = [list(rc) for rc in self.pseudo_ood]
        out["score_range"] = list(self.score_range)
        out["scale_scores"] = None if self.scale_scores is None else list(self.scale_scores)
        return out


def decision_default(backbone: Backbone, preset: str | None) -> dict:
    """The default decision for a backbone and class set: ``{"score", "thresholds", "measured"}``.
    The backbone's measured entry for the preset (``Backbone.decision_defaults``), else MSP with
    ``DEFAULT_THRESHOLD`` (not measured)."""
    entry = getattr(backbone, "decision_defaults", {}).get(preset) if preset else None
    if entry is None:
        return {"score": "msp", "thresholds": {"msp": DEFAULT_THRESHOLD}, "measured": False}
    return {"score": entry["score"], "thresholds": dict(entry["thresholds"]), "measured": True}


def default_threshold(backbone: Backbone, score: str, preset: str | None = None) -> tuple[float, str]:
    """(threshold, source) for ``score`` without a calibrated one: the backbone's measured
    threshold for the preset (source "measured"), else 0.5 for MSP ("default"). Energy and
    max-logit have no neutral value: without a measured one, ``ScoreError`` says what to give."""
    d = decision_default(backbone, preset)
    if score in d["thresholds"]:
        return float(d["thresholds"][score]), "measured" if d["measured"] else "default"
    what = f"the {preset} classes" if preset else "a custom class set"
    raise ScoreError(
        f"the {score} score has no measured default threshold for backbone {backbone.name} with "
        f"{what}: give a threshold in {score} units, or calibrate a checkpoint with this score"
    )


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
        crops = torch.stack(
            [hierarchical_crops(li.image, n, S, self.detail, device=where) for li in loaded]
        )  # (B, M, 3, S, S)
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
        out = self.run_head(encoded, **overrides)
        n, g, C = self.n, 2 * self.n, len(self.classes.names)
        negatives = list(self.classes.negatives)
        lo, hi = score_range(cfg, C)
        rng = (lo if math.isfinite(lo) else None, hi if math.isfinite(hi) else None)
        logit_terms = None
        if cfg.score != "msp":
            logit_terms = (
                torch.stack(
                    scale_scores(cfg.score, out.logits0, out.logits1, out.logits2, out.keep1, out.keep2, cfg.energy_t),
                    -1,
                )
                .float()
                .cpu()
                .numpy()
            )
        o = {
            f: getattr(out, f).float().cpu().numpy()
            if getattr(out, f).is_floating_point()
            else getattr(out, f).cpu().numpy()
            for f in (
                "p0",
                "p1",
                "p2",
                "p_id",
                "msp",
                "score",
                "score0",
                "p1_patches",
                "p2_patches",
                "entropy1",
                "entropy2",
                "keep1",
                "keep2",
                "entropy_gain",
                "pseudo_ood",
                "neg0",
                "neg1",
                "neg2",
            )
        }
        rows = C + len(negatives)
        p_values = [None] * len(encoded)
        cal = self.calibration.get(cfg.score)
        if cal is not None:
            p_values = [float(p) for p in conformal_pvalue(o["score"], cal)]
        preds = []
        for i, e in enumerate(encoded):
            idx = int(np.argmax(o["p_id"][i]))
            score = float(o["score"][i])
            other = {s: float(o[f"neg{j}"][i].sum()) for j, s in enumerate(("p0", "p1", "p2"))}
            other["p_id"] = (other["p0"] + other["p1"] + other["p2"]) / 3
            # what neither a known nor a negative class holds: the share of the patches the filter
            # dropped, since §4 divides the kept patches' sum by all patches
            dropped = {"p0": 0.0} | {
                s: 0.0 if cfg.renormalize else 1.0 - float(o[f"keep{j}"][i].mean()) for j, s in ((1, "p1"), (2, "p2"))
            }
            dropped["p_id"] = (dropped["p1"] + dropped["p2"]) / 3
            preds.append(
                Prediction(
                    label=self.classes.names[idx],
                    class_index=idx,
                    msp=float(o["msp"][i]),
                    known=score >= thr,
                    threshold=thr,
                    classes=list(self.classes.names),
                    p_id=o["p_id"][i],
                    p0=o["p0"][i],
                    p1=o["p1"][i],
                    p2=o["p2"][i],
                    p1_patches=o["p1_patches"][i].reshape(n, n, C),
                    p2_patches=o["p2_patches"][i].reshape(g, g, C),
                    entropy1=o["entropy1"][i].reshape(n, n),
                    entropy2=o["entropy2"][i].reshape(g, g),
                    keep1=o["keep1"][i].reshape(n, n),
                    keep2=o["keep2"][i].reshape(g, g),
                    entropy_gain=o["entropy_gain"][i].reshape(g, g),
                    pseudo_ood=[(int(j) // g, int(j) % g) for j in o["pseudo_ood"][i]],
                    n=n,
                    k=int(cfg.k),
                    tau=float(cfg.tau),
                    backbone=self.backbone.name,
                    backbone_note=self.backbone.note,
                    score=score,
                    score0=float(o["score0"][i]),
                    score_name=cfg.score,
                    score_range=rng,
                    scale_scores=None if logit_terms is None else tuple(float(x) for x in logit_terms[i]),
                    threshold_source=source,
                    negatives=negatives,
                    p_value=p_values[i],
                    n_calibration=0 if cal is None else len(cal),
                    p_negatives=(o["neg0"][i] + o["neg1"][i] + o["neg2"][i]) / 3,
                    p_other=other,
                    p_dropped=dropped,
                    entropy_classes=rows,
                    entropy_max=math.log(rows),
                    image=e.view,
                    notes=list(e.notes),
                )
            )
        return preds

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
        return HVLModel(
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
