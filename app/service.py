"""The demo's model side, without any UI: cached backbones and models, one session's image and
its encoding, and the two operations the UI needs —

- ``analyse``: (load the image,) build or fetch the model, encode if the encoding is not
  already cached for this backbone and ``n``, then decide;
- ``decide``: the head only, on the cached ``Encoded`` (threshold, K, entropy filter,
  renormalize) — never the encoder.

Backbones and models are kept in small LRU caches (``MAX_BACKBONES``, ``MAX_MODELS``); a model's
key holds everything that changes a decision (backbone, classes, n, and for a checkpoint the
sha256 of both its files: weights, threshold, classes and options). Switching presets or going
back to an earlier ``n`` is cheap, and the class set only enters the head, so a preset switch
re-uses the image's encoding too.

Public-server rules (``allow_local_checkpoints=False``, any address but loopback): no text field
or uploaded file may make the server open a path of its own — a checkpoint is an upload or a hub
id, and a checkpoint may only name a registered backbone (no ``MODEL:/path``, no arbitrary hub
model), and a checkpoint's fields are decided from their text before anything is built (its
embedding width against the catalog's); a backbone other than the server's is built in a worker
of its own (``builds``), the request answered at once. Nothing slow runs under the caches' lock:
a backbone or model is built under a lock of its own name, so a build stalls only the requests
that need it, and the encoder runs under its own lock.

Each session's image and encoding live in the bounded ``sessions.STORE``; the upload folder is
``uploads``'s (private to the process, removed at exit).
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, replace
from functools import partial

import hvl_core
from hvl_core import Encoded, HVLModel, Prediction, load_image
from hvl_core.backbones import (
    MEASURED_BACKBONE,
    Backbone,
    create_backbone,
)
from hvl_core.checkpoint import Checkpoint, shipped_checkpoint
from hvl_core.head import HVLConfig
from hvl_core.images import LoadedImage
from hvl_core.presets import split_class_list

from . import gpu
from .builds import Builds
from .checkpoints import CHOOSABLE_BACKBONES, MAX_UPLOADED_CHECKPOINTS, CheckpointSources, checkpoint_ref  # noqa: F401
from .deciding import decide_on, has_threshold, own_threshold  # noqa: F401
from .errors import USER_ERRORS, UserError  # noqa: F401
from .queueing import API_GROUP, BROWSER_GROUP, QUEUE_MAX_SIZE, configure_queue  # noqa: F401
from .sessions import NO_IMAGE, STORE, Session, dropped_message
from .uploads import EMPTY_AGE_S, SWEEP_AGE_S, SWEEP_EVERY_S, start_sweeper, sweep_uploads, upload_dir  # noqa: F401

ENV_BACKBONE = "HVL_BACKBONE"
ENV_DEVICE = "HVL_DEVICE"
PRESETS = {
    "dermatology-isic4": "Dermatology — ISIC-4 (4 lesion types)",
    "histology-nct-crc": "Histology — NCT-CRC (9 tissue types)",
    "custom": "Custom class list",
}
DEFAULT_PRESET = "dermatology-isic4"
DEFAULT_N = HVLConfig.n
MAX_N = 4
#: backbones kept built (a ViT-B/16 is ~600 MB); the least recently used one is dropped
MAX_BACKBONES = 2
#: models (head + class embeddings, sharing the backbones) kept built
MAX_MODELS = 6


@dataclass(frozen=True)
class Spec:
    """Which model: classes (a preset, or a custom list), an optional checkpoint, and n."""

    preset: str = DEFAULT_PRESET
    custom: str = ""
    checkpoint: tuple | None = None  # ("path", text) or ("upload", sha256)
    n: int = DEFAULT_N
    backbone: str = ""  # one of CHOOSABLE_BACKBONES; "": the server's own (a checkpoint names its own)

    def identity(self) -> tuple:
        """The model without n: when it changes, the threshold goes back to the model's own."""
        if self.checkpoint is not None:
            return ("checkpoint", self.checkpoint)
        ident = ("custom", split_class_list(self.custom)) if self.preset == "custom" else ("preset", self.preset)
        return (*ident, self.backbone) if self.backbone else ident


def encode_on_gpu(model: HVLModel, loaded: LoadedImage) -> Encoded:
    """The encoder run, the one step that wants a GPU: through ``app.gpu`` (on a ZeroGPU Space a
    GPU is attached for the call, the model reached by key); elsewhere a plain call."""
    return gpu.encode_images(model, [loaded])[0]


class ModelService(CheckpointSources):
    """Backbones and models, built once and shared by all sessions (bounded LRU caches)."""

    def __init__(
        self,
        backbone: str | None = None,
        device: str | None = None,
        max_models: int = MAX_MODELS,
        allow_local_checkpoints: bool = True,
        max_backbones: int = MAX_BACKBONES,
    ):
        self.backbone_name = backbone or os.environ.get(ENV_BACKBONE) or MEASURED_BACKBONE
        self.device = device or os.environ.get(ENV_DEVICE) or "auto"
        self.max_models = max_models
        self.max_backbones = max_backbones
        self.allow_local_checkpoints = allow_local_checkpoints
        self._backbones: OrderedDict[str, Backbone] = OrderedDict()
        self._models: OrderedDict[tuple, HVLModel] = OrderedDict()
        self._uploaded: OrderedDict[str, Checkpoint] = OrderedDict()
        self._lock = threading.RLock()  # the caches only: held for lookups, never for a build
        self._gates: dict[object, threading.Lock] = {}  # one per backbone or model being built
        self._encode_lock = threading.Lock()  # one encoder run at a time
        self.encode_calls = 0  # how many times the encoder ran (tests check decide never does)
        # a public server builds other backbones in a worker of its own (app/builds.py)
        self._builds = None if allow_local_checkpoints else Builds()

    # ----------------------------------------------------------------- building
    def _cached_backbone(self, name: str) -> Backbone | None:
        for key, bb in self._backbones.items():
            if name in (key, bb.name):
                self._backbones.move_to_end(key)
                return bb
        return None

    def _gate(self, key) -> threading.Lock:
        with self._lock:
            return self._gates.setdefault(key, threading.Lock())

    def _ungate(self, key) -> None:
        with self._lock:
            self._gates.pop(key, None)

    def backbone(self, name: str | None = None) -> Backbone:
        """The backbone ``name`` (default: the server's), built at most once while it stays among
        the ``max_backbones`` most recently used; built outside the caches' lock."""
        name = name or self.backbone_name
        bb = self._cached(name)
        if bb is not None:
            return bb
        if self._builds is not None and name != self.backbone_name:  # a public server: off the request's path
            return self._builds.get(
                name, lambda: self._cached(name), lambda: create_backbone(name), partial(self._remember_backbone, name)
            )
        gate = ("backbone", name)
        try:
            with self._gate(gate):
                bb = self._cached(name)
                if bb is None:
                    bb = create_backbone(name)
                    self._remember_backbone(name, bb)
                return bb
        finally:
            self._ungate(gate)

    def _cached(self, name: str) -> Backbone | None:
        with self._lock:
            return self._cached_backbone(name)

    def _remember_backbone(self, name: str, bb: Backbone) -> None:
        with self._lock:
            self._backbones[name] = bb
            while len(self._backbones) > self.max_backbones:
                # the least recently used, never the server's own (every default page uses it)
                victim = next((k for k in self._backbones if k not in (name, self.backbone_name)), None)
                if victim is None:
                    break
                dropped = self._backbones.pop(victim)
                # models built on it go too, or they would keep it alive
                for key in [k for k, m in self._models.items() if m.backbone is dropped]:
                    del self._models[key]

    def spec(
        self, preset: str, custom: str, checkpoint: tuple | None, n: int, backbone: str = ""
    ) -> tuple[Spec, Checkpoint | None]:
        if backbone and backbone not in CHOOSABLE_BACKBONES and backbone != self.backbone_name:
            raise UserError(f"unknown backbone {backbone!r}; choose one of {', '.join(CHOOSABLE_BACKBONES)}")
        if preset not in PRESETS:
            raise UserError(f"unknown class set {preset!r}; choose one of {', '.join(PRESETS)}")
        n = int(n)
        if not 1 <= n <= MAX_N:
            raise UserError(f"n must be between 1 and {MAX_N}, got {n}")
        key, ck = self.resolve_checkpoint(checkpoint)
        if key is None and preset == "custom" and not split_class_list(custom):
            raise UserError(
                "type the custom classes first, comma-separated "
                '("name: description" gives the prompt a longer description)'
            )
        return Spec(
            preset=preset, custom=custom if preset == "custom" else "", checkpoint=key, n=n, backbone=backbone or ""
        ), ck

    def _cached_model(self, key) -> HVLModel | None:
        with self._lock:
            if key in self._models:
                self._models.move_to_end(key)
                return self._models[key]
        return None

    def model(self, spec: Spec, ck: Checkpoint | None = None) -> HVLModel:
        """The model for ``spec``: from the cache, or built once (outside the caches' lock; two
        requests for the same model wait for one build)."""
        key = (spec.backbone or self.backbone_name, spec.identity(), spec.n)
        model = self._cached_model(key)
        if model is not None:
            return model
        gate = ("model", key)
        try:
            with self._gate(gate):
                model = self._cached_model(key) or self._build(spec, ck)
                with self._lock:
                    self._models[key] = model
                    self._models.move_to_end(key)
                    while len(self._models) > self.max_models:
                        self._models.popitem(last=False)
                return model
        finally:
            self._ungate(gate)

    def _build(self, spec: Spec, ck: Checkpoint | None) -> HVLModel:
        if spec.checkpoint is not None:
            if ck is None:
                _, ck = self.resolve_checkpoint(spec.checkpoint)
            # a checkpoint fixes the backbone it was trained on; its width was checked against the
            # catalog's on load, and against a built one here, before anything is built for it; a
            # backbone built for it is kept only when the checkpoint fits it
            name = self.check_backbone_name(ck.backbone)
            bb = self._cached(name)
            if bb is not None and bb.embed_dim != ck.meta["embed_dim"]:
                raise UserError(
                    f"the checkpoint holds {ck.meta['embed_dim']}-d embeddings, but {name} gives "
                    f"{bb.embed_dim}-d ones: it was trained on another backbone"
                )
            return hvl_core.load_model(bb or self.backbone(name), checkpoint=ck, device=self.device, n=spec.n)
        if spec.preset == "custom":
            return hvl_core.load_model(
                self.backbone(spec.backbone or None),
                classes=list(split_class_list(spec.custom)),
                device=self.device,
                n=spec.n,
            )
        bb = self.backbone(spec.backbone or None)
        shipped = shipped_checkpoint(bb.name, spec.preset)  # the calibrated head, if one ships
        return hvl_core.load_model(bb, preset=spec.preset, checkpoint=shipped, device=self.device, n=spec.n)

    def preload(self, spec: Spec | None = None) -> HVLModel:
        """Build the default model now so the first click only runs the encoder."""
        return self.model(spec or Spec())

    # ----------------------------------------------------------------- running
    def load(
        self, source, previous: Session | None = None, name: str = "", tile: tuple[int, int] | None = None
    ) -> Session:
        """A session holding this image (``ImageError`` for a bad file). The model choice of the
        ``previous`` session is kept, so a new image does not reset a threshold the user set.
        A whole-slide image gives the tile at level-0 ``tile`` = (x, y), or a tissue tile; its
        thumbnail is ``session.loaded.slide.thumbnail``."""
        if source is None:
            raise UserError(
                "upload an image first (PNG, JPEG, TIFF, BMP, WebP, DICOM or a whole-slide image), or click an example"
            )
        loaded = load_image(source, tile=tile)
        if not name:
            name = os.path.basename(os.fspath(source)) if isinstance(source, (str, os.PathLike)) else "image"
        slide_path = os.fspath(source) if loaded.slide is not None and isinstance(source, (str, os.PathLike)) else None
        if previous is not None and previous.key:
            STORE.drop(previous.key)  # the page shows this image now: the one before is let go
        return Session(
            key=STORE.put(loaded),
            name=name,
            model_identity=previous.model_identity if previous else None,
            slide_path=slide_path,
        )

    def pick_tile(self, session: Session, u: float, v: float) -> Session:
        """A click at (u, v) on the slide's thumbnail (its pixels): the same slide, the tile
        centred there. The encoding is dropped (another tile); the model choice is kept."""
        info = session.loaded.slide if session.loaded is not None else None
        if info is None or not session.slide_path:
            raise UserError("this image is not a whole-slide image; there is no tile to pick")
        if not os.path.isfile(session.slide_path):
            raise UserError(
                "the slide is no longer on the server (uploads are deleted after ten minutes); upload it again"
            )
        x, y = info.thumbnail_to_level0(u, v)
        new = self.load(session.slide_path, previous=session, name=session.name, tile=(x, y))
        return new

    def analyse(
        self,
        session: Session,
        spec: Spec,
        ck: Checkpoint | None,
        threshold: float | None,
        k: int,
        entropy_filter: bool,
        renormalize: bool,
        progress: Callable[[float, str], None] | None = None,
        score: str | None = None,
    ) -> tuple[Session, Prediction, HVLModel, bool]:
        """Model + (cached) encoding + decision. Returns the updated session, the prediction, the
        model and whether the threshold (and the score) went back to the model's own (a different
        model). ``threshold`` is in the units of ``score`` (default: the model's score)."""
        if not session.has_image():
            raise UserError(dropped_message() if session.dropped() else NO_IMAGE)
        say = progress or (lambda f, d: None)
        say(0.05, "Loading the model")
        model = self.model(spec, ck)
        enc_for = (model.backbone.name, model.n, model.detail)
        encoded = session.encoded
        if encoded is None or session.encoded_for != enc_for:
            m = 1 + model.n**2 + 4 * model.n**2
            say(0.2, f"Encoding {m} crops with {model.backbone.name}")
            with self._encode_lock:
                encoded = encode_on_gpu(model, session.loaded)
                self.encode_calls += 1
            STORE.set_encoded(session.key, encoded, enc_for)
        reset = session.model_identity != spec.identity()
        thr = None if (reset or threshold is None) else float(threshold)
        say(0.85, "Deciding")
        session = replace(session, encoded_for=enc_for, spec=spec, model_identity=spec.identity())
        pred = decide_on(model, encoded, thr, k, entropy_filter, renormalize, None if reset else score)
        session.prediction = pred
        return session, pred, model, reset

    def decide(
        self,
        session: Session,
        threshold: float | None,
        k: int,
        entropy_filter: bool,
        renormalize: bool,
        score: str | None = None,
    ) -> tuple[Session, Prediction, HVLModel]:
        """Re-decide from the cached encoding: the head only. ``threshold`` None: the model's own
        for ``score``."""
        encoded = session.encoded
        if encoded is None or session.spec is None:
            raise UserError(dropped_message() if session.dropped() else "analyse an image first")
        model = self.model(session.spec)
        pred = decide_on(model, encoded, threshold, k, entropy_filter, renormalize, score)
        session = replace(session, prediction=pred)
        return session, pred, model
