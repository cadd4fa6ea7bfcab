"""The demo's model side, without any UI: cached backbones and models, one session's image and
its encoding, and the two operations the UI needs —

- ``analyse``: (load the image,) build or fetch the model, encode if the encoding is not
  already cached for this backbone and ``n``, then decide;
- ``decide``: the head only, on the cached ``Encoded`` (threshold, K, entropy filter,
  renormalize) — never the encoder.

Backbones are cached per name and models per (backbone, classes, checkpoint, n), so switching
presets or going back to an earlier ``n`` is cheap. The class set only enters the head, so a
preset switch re-uses the image's encoding too.
"""
from __future__ import annotations

import os
import tempfile
import threading
from collections import OrderedDict
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Callable

import hvl_core
from hvl_core import CheckpointError, Encoded, HVLModel, ImageError, Prediction, load_checkpoint, load_image
from hvl_core.backbones import Backbone, BackboneUnavailable, UnknownClassError, create_backbone
from hvl_core.checkpoint import CONFIG_NAME, WEIGHTS_NAME, Checkpoint
from hvl_core.images import LoadedImage

ENV_BACKBONE = "HVL_BACKBONE"
ENV_DEVICE = "HVL_DEVICE"
PRESETS = {"dermatology-isic4": "Dermatology — ISIC-4 (4 lesion types)",
           "histology-nct-crc": "Histology — NCT-CRC (9 tissue types)",
           "custom": "Custom class list"}
DEFAULT_PRESET = "dermatology-isic4"
DEFAULT_N = 2
MAX_N = 4


class UserError(Exception):
    """Something the person using the demo can fix; the message is shown as is."""


#: errors whose message is written for the person using the demo
USER_ERRORS = (UserError, ImageError, CheckpointError, BackboneUnavailable, UnknownClassError)


@dataclass(frozen=True)
class Spec:
    """Which model: classes (a preset, or a custom list), an optional checkpoint, and n."""

    preset: str = DEFAULT_PRESET
    custom: str = ""
    checkpoint: tuple | None = None  # ("path", text) or ("upload", sha256)
    n: int = DEFAULT_N

    def identity(self) -> tuple:
        """The model without n: when it changes, the threshold goes back to the model's own."""
        if self.checkpoint is not None:
            return ("checkpoint", self.checkpoint)
        if self.preset == "custom":
            return ("custom", normalise_classes(self.custom))
        return ("preset", self.preset)


@dataclass
class Session:
    """One browser session's image and its cached encoding (kept in memory only, in gr.State)."""

    loaded: LoadedImage | None = None
    name: str = ""
    encoded: Encoded | None = None
    encoded_for: tuple | None = None  # (backbone name, n, detail) the encoding was made with
    spec: Spec | None = None
    model_identity: tuple | None = None
    prediction: Prediction | None = None

    def has_image(self) -> bool:
        return self.loaded is not None


def normalise_classes(text: str) -> tuple[str, ...]:
    parts = [p.strip() for p in (text or "").replace("\n", ",").split(",")]
    return tuple(p for p in parts if p)


def checkpoint_ref(text: str | None, files) -> tuple | None:
    """What the checkpoint inputs ask for, before loading anything."""
    files = [f for f in (files or []) if f]
    if files:
        return ("upload-files", tuple(str(f) for f in files))
    text = (text or "").strip()
    return ("path", text) if text else None


class ModelService:
    """Backbones and models, built once and shared by all sessions."""

    def __init__(self, backbone: str | None = None, device: str | None = None, max_models: int = 8,
                 allow_local_checkpoints: bool = True):
        self.backbone_name = backbone or os.environ.get(ENV_BACKBONE) or "auto"
        self.device = device or os.environ.get(ENV_DEVICE) or "auto"
        self.max_models = max_models
        self.allow_local_checkpoints = allow_local_checkpoints
        self._backbones: dict[str, Backbone] = {}
        self._models: OrderedDict[tuple, HVLModel] = OrderedDict()
        self._uploaded: OrderedDict[str, Checkpoint] = OrderedDict()
        self._lock = threading.RLock()
        self.encode_calls = 0  # how many times the encoder ran (tests check decide never does)

    # ----------------------------------------------------------------- building
    def backbone(self, name: str | None = None) -> Backbone:
        name = name or self.backbone_name
        with self._lock:
            if name not in self._backbones:
                bb = create_backbone(name)
                self._backbones[name] = bb
                self._backbones.setdefault(bb.name, bb)  # "auto" also answers to what it resolved to
            return self._backbones[name]

    def resolve_checkpoint(self, ref: tuple | None) -> tuple[tuple | None, Checkpoint | None]:
        """``checkpoint_ref`` → (the key a ``Spec`` keeps, the loaded checkpoint)."""
        if ref is None:
            return None, None
        kind, value = ref
        if kind == "upload-files":
            ck = self._load_uploaded(value)
            key = ("upload", ck.meta.get("weights_sha256") or ck.source)
            with self._lock:
                self._uploaded[key[1]] = ck
                while len(self._uploaded) > 4:
                    self._uploaded.popitem(last=False)
            return key, ck
        if kind == "upload":
            with self._lock:
                if value not in self._uploaded:
                    raise UserError("the uploaded checkpoint is no longer in memory; upload its files again")
                return ref, self._uploaded[value]
        text = value
        local = text.startswith(("/", ".", "~")) or os.path.exists(text) or text.count("/") != 1
        if local and not self.allow_local_checkpoints:
            raise UserError("checkpoint folders on the server are disabled here; upload the checkpoint's "
                            "head.safetensors and hvl.json, or give a Hugging Face id (org/name)")
        return ("path", text), load_checkpoint(os.path.expanduser(text))

    @staticmethod
    def _load_uploaded(paths) -> Checkpoint:
        weights = [p for p in paths if str(p).endswith(".safetensors")]
        configs = [p for p in paths if str(p).endswith(".json")]
        if len(weights) != 1 or len(configs) != 1 or len(paths) != 2:
            raise UserError(f"upload exactly the two files of a checkpoint folder: {WEIGHTS_NAME} and {CONFIG_NAME}")
        # load_checkpoint reads a folder; the uploads sit in separate cache folders, so link them
        # side by side in a temporary folder that is removed at once (everything is read into memory)
        with tempfile.TemporaryDirectory(prefix="hvl-ckpt-") as d:
            os.symlink(os.path.abspath(weights[0]), Path(d) / WEIGHTS_NAME)
            os.symlink(os.path.abspath(configs[0]), Path(d) / CONFIG_NAME)
            ck = load_checkpoint(d)
        ck.source = f"uploaded {Path(configs[0]).name} + {Path(weights[0]).name}"
        return ck

    def spec(self, preset: str, custom: str, checkpoint: tuple | None, n: int) -> tuple[Spec, Checkpoint | None]:
        if preset not in PRESETS:
            raise UserError(f"unknown class set {preset!r}; choose one of {', '.join(PRESETS)}")
        n = int(n)
        if not 1 <= n <= MAX_N:
            raise UserError(f"n must be between 1 and {MAX_N}, got {n}")
        key, ck = self.resolve_checkpoint(checkpoint)
        if key is None and preset == "custom" and not normalise_classes(custom):
            raise UserError("type the custom classes first, comma-separated "
                            "(\"name: description\" gives the prompt a longer description)")
        return Spec(preset=preset, custom=custom if preset == "custom" else "", checkpoint=key, n=n), ck

    def model(self, spec: Spec, ck: Checkpoint | None = None) -> HVLModel:
        key = (self.backbone_name, spec.identity(), spec.n)
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
            if spec.checkpoint is not None:
                if ck is None:
                    _, ck = self.resolve_checkpoint(spec.checkpoint)
                # a checkpoint fixes the backbone it was trained on
                bb = self.backbone(ck.backbone)
                model = hvl_core.load_model(bb, checkpoint=ck, device=self.device, n=spec.n)
            elif spec.preset == "custom":
                model = hvl_core.load_model(self.backbone(), classes=list(normalise_classes(spec.custom)),
                                            device=self.device, n=spec.n)
            else:
                model = hvl_core.load_model(self.backbone(), preset=spec.preset, device=self.device, n=spec.n)
            self._models[key] = model
            while len(self._models) > self.max_models:
                self._models.popitem(last=False)
            return model

    def preload(self, spec: Spec | None = None) -> HVLModel:
        """Build the default model now so the first click only runs the encoder."""
        return self.model(spec or Spec())

    # ----------------------------------------------------------------- running
    def load(self, source, previous: Session | None = None, name: str = "") -> Session:
        """A session holding this image (``ImageError`` for a bad file). The model choice of the
        ``previous`` session is kept, so a new image does not reset a threshold the user set."""
        if source is None:
            raise UserError("upload an image first (PNG, JPEG, TIFF, BMP or WebP), or click an example")
        loaded = load_image(source)
        if not name:
            name = os.path.basename(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "image"
        return Session(loaded=loaded, name=name, model_identity=previous.model_identity if previous else None)

    def analyse(self, session: Session, spec: Spec, ck: Checkpoint | None, threshold: float | None, k: int,
                entropy_filter: bool, renormalize: bool,
                progress: Callable[[float, str], None] | None = None) -> tuple[Session, Prediction, HVLModel, bool]:
        """Model + (cached) encoding + decision. Returns the updated session, the prediction, the
        model and whether the threshold was reset to the model's own (a different model)."""
        if not session.has_image():
            raise UserError("upload an image first (PNG, JPEG, TIFF, BMP or WebP), or click an example")
        say = progress or (lambda f, d: None)
        say(0.05, "Loading the model")
        model = self.model(spec, ck)
        enc_for = (model.backbone.name, model.n, model.detail)
        encoded = session.encoded
        if encoded is None or session.encoded_for != enc_for:
            m = 1 + model.n ** 2 + 4 * model.n ** 2
            say(0.2, f"Encoding {m} crops with {model.backbone.name}")
            with self._lock:
                encoded = model.encode(session.loaded)
                self.encode_calls += 1
        reset = session.model_identity != spec.identity()
        thr = model.threshold if (reset or threshold is None) else float(threshold)
        say(0.85, "Deciding")
        session = replace(session, encoded=encoded, encoded_for=enc_for, spec=spec, model_identity=spec.identity())
        pred = self._decide(model, session, thr, k, entropy_filter, renormalize)
        session.prediction = pred
        return session, pred, model, reset

    def decide(self, session: Session, threshold: float, k: int, entropy_filter: bool,
               renormalize: bool) -> tuple[Session, Prediction, HVLModel]:
        """Re-decide from the cached encoding: the head only."""
        if session.encoded is None or session.spec is None:
            raise UserError("analyse an image first")
        model = self.model(session.spec)
        pred = self._decide(model, session, float(threshold), k, entropy_filter, renormalize)
        session = replace(session, prediction=pred)
        return session, pred, model

    @staticmethod
    def _decide(model: HVLModel, session: Session, threshold: float, k: int, entropy_filter: bool,
                renormalize: bool) -> Prediction:
        k = max(1, min(int(k), 4 * model.n ** 2))
        return model.decide(session.encoded, threshold=threshold, k=k, entropy_filter=bool(entropy_filter),
                            renormalize=bool(renormalize))


def threshold_note(model: HVLModel) -> str:
    if model.calibrated:
        return "Threshold: calibrated on the checkpoint's validation data (95% of known images pass)."
    return (f"Threshold: the default {hvl_core.DEFAULT_THRESHOLD:g} — this head has no calibrated threshold "
            "(no checkpoint, or one without calibration).")
