"""The reference set: the shipped example images (``assets/manifest.json``) scored by the model
in use, so an image's score can be drawn among known (ID) and unknown (OOD) images.

The encodings depend only on the backbone, n and the crop detail, so they are computed once per
such key and kept in a small LRU cache; the class set, a checkpoint and the head options only
re-decide them (the head alone, milliseconds). For the server's default model they ship with
the app (``weights/reference/``, written by ``python -m app.reference``): ``warm`` loads them at
start-up when they fit the backbone's weights, n, detail and the example files, so nothing is
encoded before a request needs it; any other backbone encodes them when first asked.
Which kind is ID follows the class set: skin images for the dermatology preset, histology for
the histology one; everything else is OOD. A custom class set or a checkpoint without a preset
has no known ID kind: the images are then shown by kind.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from hvl_core import Encoded, load_image

from . import gpu

log = logging.getLogger(__name__)

#: the example kind that is in-distribution for each preset
PRESET_ID_KIND = {"dermatology-isic4": "skin", "histology-nct-crc": "histology"}
KIND_NAMES = {"skin": "skin photos", "histology": "H&E histology", "ood": "other modalities"}
#: encodings of the reference set kept for this many (backbone, n, detail) keys
MAX_REFERENCE_SETS = 2
#: the shipped encodings (``python -m app.reference``)
SHIPPED_DIR = Path(__file__).resolve().parent.parent / "weights" / "reference"


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

    def warm(self, model, folder: Path | None = None) -> bool:
        """Load the shipped encodings for ``model`` into the cache when they fit it (see
        ``load_shipped``); nothing is encoded. Whether they were loaded."""
        encoded = load_shipped(model, self.examples, folder or SHIPPED_DIR)
        if encoded is None:
            return False
        with self._lock:
            self._encoded[encoding_key(model)] = encoded
        return True

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


def shipped_path(model, folder: Path = SHIPPED_DIR) -> Path:
    name, n, detail = encoding_key(model)
    return folder / f"{name}-n{n}-{detail}.safetensors"


def weights_digest(backbone) -> str:
    """sha256 (16 hex) of a backbone's weights: encodings are only reused for the same weights."""
    h = hashlib.sha256()
    for module in backbone.modules():
        for k, v in sorted(module.state_dict().items()):
            h.update(k.encode())
            h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:16]


def _identity(model, examples: list[dict]) -> dict:
    """What shipped encodings must match: backbone, its weights, n, detail, every example file."""
    name, n, detail = encoding_key(model)
    files = [[Path(e["path"]).name, hashlib.sha256(Path(e["path"]).read_bytes()).hexdigest()[:16]] for e in examples]
    return {
        "backbone": name,
        "weights": weights_digest(model.backbone),
        "n": str(n),
        "detail": detail,
        "files": json.dumps(files),
    }


def save_shipped(model, examples: list[dict], encoded: list, folder: Path = SHIPPED_DIR) -> Path:
    """Write the encodings of ``examples`` by ``model`` (v0 (N,d), v1 (N,n²,d), v2 (N,4n²,d),
    float32) with what they must match as metadata."""
    from safetensors.torch import save_file

    path = shipped_path(model, folder)
    path.parent.mkdir(parents=True, exist_ok=True)
    tensors = {f: torch.stack([getattr(e, f) for e in encoded]).float().contiguous() for f in ("v0", "v1", "v2")}
    save_file(tensors, str(path), metadata=_identity(model, examples))
    return path


def load_shipped(model, examples: list[dict], folder: Path = SHIPPED_DIR) -> list | None:
    """The shipped encodings for ``model`` when the file exists and fits it exactly, else None."""
    from safetensors import safe_open

    path = shipped_path(model, folder)
    if not path.is_file() or not examples:
        return None
    try:
        with safe_open(str(path), "pt") as f:
            if f.metadata() != _identity(model, examples):
                log.info("%s does not fit the model or the examples: the reference set is encoded when asked", path)
                return None
            v0, v1, v2 = (f.get_tensor(k) for k in ("v0", "v1", "v2"))
    except (OSError, ValueError, KeyError) as e:
        log.warning("ignoring %s: %s", path, e)
        return None
    view = np.zeros((0, 0, 3), np.uint8)  # the reference images' views are never drawn
    return [Encoded(v0=v0[i], v1=v1[i], v2=v2[i], n=model.n, view=view) for i in range(len(examples))]


def main(argv=None) -> int:
    """``python -m app.reference``: encode the example images with the server's default model and
    write them under ``weights/reference/`` (re-run when the backbone, n or the examples change)."""
    import argparse

    from .examples import load_examples
    from .service import ModelService, Spec

    ap = argparse.ArgumentParser(prog="python -m app.reference", description=main.__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", default=None, help="default: the server's (HVL_BACKBONE, else the measured one)")
    ap.add_argument("--out", type=Path, default=SHIPPED_DIR)
    args = ap.parse_args(argv)
    model = ModelService(args.backbone, device="cpu").preload(Spec())
    examples = ReferenceSet(load_examples()).examples
    encoded = model.encode_batch([load_image(e["path"]) for e in examples])
    print(save_shipped(model, examples, encoded, args.out))
    return 0


def id_kind_for(spec, model) -> str | None:
    """The example kind that is ID for this class set: the preset's, or a checkpoint's preset."""
    if spec is not None and spec.checkpoint is None and spec.preset in PRESET_ID_KIND:
        return PRESET_ID_KIND[spec.preset]
    return PRESET_ID_KIND.get(getattr(model.classes, "preset", None) or "")


if __name__ == "__main__":
    raise SystemExit(main())
