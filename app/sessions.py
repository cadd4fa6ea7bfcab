"""Where each browser session's image and encoding live: on the server, in one bounded store.

``gr.State`` holds a small ``Session`` (the file's name, the model choice, the last prediction)
and the key of its entry in ``STORE``; the decoded image and its encoding (with the square view
the encoder saw) are kept there, at most ``MAX_SESSIONS`` entries and ``MAX_SESSION_BYTES``
together, each for ``SESSION_TTL_S`` after its last use. The least recently used go first, so
however many sessions are open, the images held stay within the budget; a session whose image
went is told to upload it again.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hvl_core import Encoded, Prediction
from hvl_core.images import LoadedImage

#: images (with their encodings) kept at once, and their bytes together (the newest is always
#: kept, even alone over the budget)
MAX_SESSIONS = 64
MAX_SESSION_BYTES = 128 * 2**20
#: an image not used for this long is dropped
SESSION_TTL_S = 15 * 60


def image_bytes(img) -> int:
    """Bytes of a PIL image's raster (0 for None)."""
    return 0 if img is None else img.width * img.height * len(img.getbands())


def held_bytes(loaded: LoadedImage | None, encoded: Encoded | None) -> int:
    """What an entry holds: the image, a slide's thumbnail, the encoding and its view."""
    n = 0
    if loaded is not None:
        n += image_bytes(loaded.image) + image_bytes(getattr(loaded.slide, "thumbnail", None))
    if encoded is not None:
        n += sum(t.numel() * t.element_size() for t in (encoded.v0, encoded.v1, encoded.v2))
        n += encoded.view.nbytes if isinstance(encoded.view, np.ndarray) else 0
    return n


@dataclass
class Held:
    """One entry: the image, its last encoding and what it was made with."""

    loaded: LoadedImage
    encoded: Encoded | None = None
    encoded_for: tuple | None = None
    nbytes: int = 0
    used: float = 0.0


class SessionStore:
    """Images and encodings by key, bounded in number, bytes and age (least recently used out)."""

    def __init__(
        self,
        max_items: int = MAX_SESSIONS,
        max_bytes: int = MAX_SESSION_BYTES,
        ttl_s: float = SESSION_TTL_S,
        clock: Callable[[], float] = time.monotonic,
    ):
        self.max_items, self.max_bytes, self.ttl_s, self.clock = max_items, max_bytes, ttl_s, clock
        self._items: OrderedDict[str, Held] = OrderedDict()
        self._lock = threading.Lock()

    def __len__(self) -> int:
        return len(self._items)

    @property
    def nbytes(self) -> int:
        return sum(h.nbytes for h in self._items.values())

    def put(self, loaded: LoadedImage) -> str:
        """Keep ``loaded``; returns its new key."""
        key = secrets.token_urlsafe(16)
        with self._lock:
            self._items[key] = Held(loaded, nbytes=held_bytes(loaded, None), used=self.clock())
            self._evict()
        return key

    def get(self, key: str) -> Held | None:
        """The entry (now the most recently used), or None when it was dropped or never was."""
        with self._lock:
            self._expire()
            held = self._items.get(key) if key else None
            if held is not None:
                held.used = self.clock()
                self._items.move_to_end(key)
            return held

    def set_encoded(self, key: str, encoded: Encoded, encoded_for: tuple) -> None:
        """Keep ``encoded`` (made with ``encoded_for``) with the entry's image, replacing the last."""
        with self._lock:
            held = self._items.get(key)
            if held is None:
                return
            held.encoded, held.encoded_for = encoded, encoded_for
            held.nbytes = held_bytes(held.loaded, encoded)
            self._evict()

    def drop(self, key: str) -> None:
        with self._lock:
            self._items.pop(key, None)

    def clear(self) -> None:
        with self._lock:
            self._items.clear()

    def _expire(self) -> None:
        now = self.clock()
        for k in [k for k, h in self._items.items() if now - h.used > self.ttl_s]:
            del self._items[k]

    def _evict(self) -> None:
        self._expire()
        total = sum(h.nbytes for h in self._items.values())
        while len(self._items) > 1 and (len(self._items) > self.max_items or total > self.max_bytes):
            _, gone = self._items.popitem(last=False)
            total -= gone.nbytes


NO_IMAGE = "upload an image first (PNG, JPEG, TIFF, BMP or WebP), or click an example"


def dropped_message() -> str:
    """What a session whose image the store let go is told."""
    return (
        f"your image is no longer held (images unused for {SESSION_TTL_S // 60} minutes, or pushed out "
        "by newer ones while many are open, are let go); upload it again"
    )


#: the process's one store: every session of every page
STORE = SessionStore()


@dataclass
class Session:
    """One browser session, as ``gr.State`` keeps it: its image and encoding are in ``STORE``
    under ``key`` (``loaded`` and ``encoded`` read them; None once dropped)."""

    name: str = ""
    key: str = ""
    encoded_for: tuple | None = None  # (backbone name, n, detail) the encoding was made with
    spec: object | None = None  # the service's Spec
    model_identity: tuple | None = None
    prediction: Prediction | None = None
    slide_path: str | None = None  # a whole-slide upload: its file, to read other tiles from

    @property
    def loaded(self) -> LoadedImage | None:
        held = STORE.get(self.key)
        return held.loaded if held is not None else None

    @property
    def encoded(self) -> Encoded | None:
        held = STORE.get(self.key)
        if held is None or held.encoded is None or held.encoded_for != self.encoded_for:
            return None
        return held.encoded

    def has_image(self) -> bool:
        return self.loaded is not None

    def dropped(self) -> bool:
        """Whether it had an image the store no longer holds (too old, or pushed out by others)."""
        return bool(self.key) and STORE.get(self.key) is None
