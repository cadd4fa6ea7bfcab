"""Backbones built off the request's path on a public server. A build costs seconds of CPU and
~1 GB (minutes when its weights are downloaded); run inside a browser event it held that event's
queue slot, so every other user's upload waited behind it (1.6–2.1 s → 10.5 s). Here it runs in
a worker of its own, one build at a time, and the request that asked for it is answered at once
with a sentence; a later request finds the backbone built (or is told once why it failed)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from typing import TypeVar

from .errors import UserError

T = TypeVar("T")


def building(name: str) -> str:
    return (
        f"the backbone {name} is being built for this server (seconds, or minutes when its weights are "
        "downloaded); analyse again in a moment"
    )


class Builds:
    """At most one build per name, one at a time, in a worker thread of its own."""

    def __init__(self):
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="hvl-build")
        self._pending: dict[str, Future] = {}  # building, or failed and not yet told
        self._lock = threading.Lock()

    def get(self, name: str, cached: Callable[[], T | None], build: Callable[[], T], keep: Callable[[T], None]) -> T:
        """``cached()`` when it has it; else raise the failed build's error once, or start the
        build (``keep`` gets its result) and raise ``UserError`` saying it is being built."""
        with self._lock:
            value = cached()
            if value is not None:
                return value
            fut = self._pending.get(name)
            if fut is not None and fut.done():
                del self._pending[name]
                fut.result()  # the build failed (a success leaves no entry): its error, this once
            if fut is None or fut.done():
                self._pending[name] = self._pool.submit(self._run, name, build, keep)
        raise UserError(building(name))

    def _run(self, name: str, build: Callable[[], T], keep: Callable[[T], None]) -> T:
        value = build()
        keep(value)
        with self._lock:
            self._pending.pop(name, None)
        return value

    def wait(self) -> None:
        """Until the builds started so far have finished (tests, benches)."""
        with self._lock:
            pending = list(self._pending.values())
        for fut in pending:
            fut.exception()
