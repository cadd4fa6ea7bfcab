"""Hugging Face hub access that fails fast and clearly when the hub cannot be reached, and the
ZeroGPU hook for Spaces."""

from __future__ import annotations

import contextlib
import os
import re
import socket
from collections.abc import Callable, Iterable
from typing import TypeVar
from urllib.parse import urlparse

F = TypeVar("F", bound=Callable)

#: a hub repo id, ``org/name``: never a path (no leading dot or slash, no ``..``)
_HUB_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,95}/[A-Za-z0-9][A-Za-z0-9_.-]{0,95}$")


def is_hub_id(text: str) -> bool:
    """Whether ``text`` is written as a hub repo id (``org/name``), judged from the text alone."""
    return bool(_HUB_ID.match(text)) and ".." not in text


def hub_reachable(timeout: float = 2.0) -> bool:
    """Whether the hub's host answers a TCP connect (no request is sent)."""
    import huggingface_hub.constants as hc

    if hc.HF_HUB_OFFLINE:
        return False
    host = urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname or "huggingface.co"
    try:
        with socket.create_connection((host, 443), timeout=timeout):
            return True
    except OSError:
        return False


@contextlib.contextmanager
def offline_unless_reachable():
    """Within this block the hub client serves from its local cache only when the hub is
    unreachable, so a missing file fails at once instead of after minutes of retries."""
    import huggingface_hub.constants as hc

    saved = hc.HF_HUB_OFFLINE
    if not saved and not hub_reachable():
        hc.HF_HUB_OFFLINE = True
    try:
        yield hc.HF_HUB_OFFLINE
    finally:
        hc.HF_HUB_OFFLINE = saved


def cached_file(repo_id: str, filenames: Iterable[str], cache_dir: str | None = None) -> str | None:
    """The local path of the first of ``filenames`` in the hub cache for ``repo_id``, else None."""
    from huggingface_hub import try_to_load_from_cache

    for name in filenames:
        path = try_to_load_from_cache(repo_id, name, cache_dir=cache_dir)
        if isinstance(path, str):
            return path
    return None


def unavailable_offline(repo_id: str, filenames: Iterable[str], cache_dir: str | None = None) -> bool:
    """True when the hub is unreachable and none of ``filenames`` of ``repo_id`` is cached: a
    load would fail, so say so before importing and building anything."""
    return cached_file(repo_id, filenames, cache_dir) is None and not hub_reachable()


def on_zero_gpu() -> bool:
    """Whether this process runs on a ZeroGPU Space (the ``spaces`` package and the Space's flag)."""
    if os.environ.get("SPACES_ZERO_GPU", "").lower() not in ("1", "true"):
        return False
    try:
        import spaces  # noqa: F401
    except ImportError:
        return False
    return True


def gpu_task(fn: F | None = None, *, duration: int | Callable[..., int] | None = None):
    """Decorator for the function that runs the model: ``spaces.GPU`` on a ZeroGPU Space (a GPU
    is attached for the call), the function itself unchanged everywhere else. ``duration``: the
    seconds to reserve, or a function of the call's arguments giving them (``spaces`` sizes each
    call with it).

        @gpu_task                     # or @gpu_task(duration=120), @gpu_task(duration=seconds_for)
        def analyse(image): ...

    ``spaces`` pickles every argument of every call into the GPU worker: pass images and keys,
    and reach the model through a module-level object (``app.gpu``), never as an argument.
    """

    def wrap(f: F) -> F:
        if not on_zero_gpu():
            return f
        import spaces

        return spaces.GPU(duration=duration)(f) if duration else spaces.GPU(f)

    return wrap(fn) if fn is not None else wrap
