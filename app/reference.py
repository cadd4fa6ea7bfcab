"""The reference set: the shipped example images (``assets/manifest.json``) scored by the model
in use, so an image's score can be drawn among known (ID) and unknown (OOD) images.

The encodings depend only on the backbone, n and the crop detail, so they are computed once per
such key (off the request path: ``warm`` starts a thread) and kept in a small LRU cache; the
class set, a checkpoint and the head options only re-decide them (the head alone, milliseconds).
Which kind is ID follows the class set: skin images for the dermatology preset, histology for
the histology one; everything else is OOD. A custom class set or a checkpoint without a preset
has no known ID kind: the images are then shown by kind.
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass

from hvl_core import load_image

from . import gpu

log = logging.getLogger(__name__)

#: the example kind that is in-distribution for each preset
PRESET_ID_KIND = {"dermatology-isic4": "skin", "histology-nct-crc": "histology"}
KIND_NAMES = {"skin": "skin photos", "histology": "H&E histology", "ood": "other modalities"}
#: encodings of the reference set kept for this many (backbone, n, detail) keys
MAX_REFERENCE_SETS = 2


@dataclass(frozen=True)
class ReferenceScores:
    """Scores of the reference images under one model and head options."""

    names: tuple[str, ...]
    kinds: tuple[str, ...]
    scores: tuple[float, ...]
    id_kind: str | None  # the kind that is ID for this class set (None: unknown)

    def groups(self) -> list[tuple[str, list[float]]]:
        """``(group name, scores)``: ID and OOD when the ID kind is known, else one group per kind."""
        if self.id_kind:
            ids = [s for s, k in zip(self.scores, self.kinds) if k == self.id_kind]
            ood = [s for s, k in zip(self.scores, self.kinds) if k != self.id_kind]
            return [
                (f"known (ID): {KIND_NAMES.get(self.id_kind, self.id_kind)}", ids),
                ("unknown (OOD): the rest", ood),
            ]
        out = []
        for kind in dict.fromkeys(self.kinds):
            out.append(
                (KIND_NAMES.get(kind, kind or "other"), [s for s, k in zip(self.scores, self.kinds) if k == kind])
            )
        return out


def encoding_key(model) -> tuple:
    return (model.backbone.name, model.n, model.detail)


class ReferenceSet:
    """The reference images' encodings per ``encoding_key``, computed at most once each."""

    def __init__(self, examples: list[dict], max_sets: int = MAX_REFERENCE_SETS):
        self.examples = [e for e in examples if e.get("kind")]
        self.max_sets = max_sets
        self._encoded: OrderedDict[tuple, list] = OrderedDict()
        self._locks: dict[tuple, threading.Lock] = {}
        self._lock = threading.Lock()
        self.encode_calls = 0

    def encodings(self, model) -> list:
        """The reference images encoded by ``model``'s backbone (computed now if not cached;
        concurrent callers for the same key wait for one computation)."""
        key = encoding_key(model)
        with self._lock:
            if key in self._encoded:
                self._encoded.move_to_end(key)
                return self._encoded[key]
            lock = self._locks.setdefault(key, threading.Lock())
        with lock:
            with self._lock:
                if key in self._encoded:
                    return self._encoded[key]
            encoded = gpu.encode_images(model, [load_image(e["path"]) for e in self.examples])
            with self._lock:
                self.encode_calls += 1
                self._encoded[key] = encoded
                while len(self._encoded) > self.max_sets:
                    old, _ = self._encoded.popitem(last=False)
                    self._locks.pop(old, None)
            return encoded

    def ready(self, model) -> bool:
        with self._lock:
            return encoding_key(model) in self._encoded

    def warm(self, model) -> threading.Thread:
        """Encode the reference set for ``model`` in the background (the page does not wait)."""

        def run():
            try:
                self.encodings(model)
            except Exception:  # noqa: BLE001 — the view says so when asked; the app keeps serving
                log.exception("could not encode the reference set")

        # not a daemon: a process that exits meanwhile waits for it (torch aborts if killed mid-call)
        t = threading.Thread(target=run, name="hvl-reference")
        t.start()
        return t

    def scores(self, model, pred, id_kind: str | None, **options) -> ReferenceScores:
        """The reference images decided like ``pred`` (its score, threshold and head options)."""
        encoded = self.encodings(model)
        preds = (
            model.decide_batch(encoded, threshold=pred.threshold, score=pred.score_name, **options) if encoded else []
        )
        return ReferenceScores(
            names=tuple(e["path"].rsplit("/", 1)[-1] for e in self.examples),
            kinds=tuple(e["kind"] for e in self.examples),
            scores=tuple(float(p.score) for p in preds),
            id_kind=id_kind,
        )


def id_kind_for(spec, model) -> str | None:
    """The example kind that is ID for this class set: the preset's, or a checkpoint's preset."""
    if spec is not None and spec.checkpoint is None and spec.preset in PRESET_ID_KIND:
        return PRESET_ID_KIND[spec.preset]
    return PRESET_ID_KIND.get(getattr(model.classes, "preset", None) or "")
