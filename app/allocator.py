"""The C allocator of a long-running server. glibc gives each thread that allocates its own arena
(up to 8 per core) and keeps what was freed in each: a server whose events run in many worker
threads grew with every session without levelling off (200 browser sessions, each a different
12 MP JPEG: +208 MB over the last 100; with two arenas +30 MB, bench/results/inputs.md).
``limit_malloc_arenas`` sets the number of arenas as ``MALLOC_ARENA_MAX`` would, before the
server's threads start; it does nothing where the C library is not glibc, or when the operator
set ``MALLOC_ARENA_MAX``."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's mallopt parameter for the most arenas, and how many the server uses
M_ARENA_MAX = -8
ARENAS = 2


def limit_malloc_arenas(arenas: int = ARENAS) -> bool:
    """At most ``arenas`` malloc arenas from now on; whether it was set."""
    if os.environ.get("MALLOC_ARENA_MAX"):
        return False  # the operator's choice stands
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(M_ARENA_MAX, arenas))
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return False
