"""glibc's malloc for a process that encodes image after image — the demo's server (``app.py``)
and the command line (``hvl``) — set before the process's threads start.

- **One arena.** glibc gives each thread that allocates an arena of its own (up to 8 per core)
  and keeps what was freed in each: a server whose events ran in many worker threads grew with
  every session (200 browser sessions of 12 MP JPEGs: +208 MB over the last 100 with glibc's
  default arenas; two arenas +1 to +11 MB, one with the thresholds below +32 MB,
  bench/results/inputs.md). One arena also serves the model's thread from the main heap, which
  can grow past the 64 MB that caps any other arena's heaps.
- **The encoder's activations stay in the heap.** Blocks above the mmap threshold (at most 32 MB
  by glibc's own adjustment) get fresh pages from the kernel on every call, each page zeroed as
  it is first touched: a DenseNet-121 pass over 21 crops allocates dozens of such blocks (64 MB
  each). With the threshold at ``MMAP_THRESHOLD`` and the heap's free top kept up to
  ``TRIM_THRESHOLD`` (twice it, glibc's own ratio), the pass re-uses its pages: ~25% faster on two
  cores (``hvl score``: 0.83 → 1.12 images/s), the process holding ~300 MB more between calls
  (its peak ~100 MB more).

``tune_malloc`` sets each with ``mallopt``; it does nothing where the C library is not glibc, and
leaves every setting the operator chose in the environment (``MALLOC_ARENA_MAX``,
``MALLOC_MMAP_THRESHOLD_``, ``MALLOC_TRIM_THRESHOLD_`` or their ``GLIBC_TUNABLES``)."""

from __future__ import annotations

import ctypes
import ctypes.util
import os

#: glibc's mallopt parameters
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD, M_ARENA_MAX = -1, -3, -8
ARENAS = 1
MMAP_THRESHOLD = 256 * 2**20
TRIM_THRESHOLD = 2 * MMAP_THRESHOLD
#: (mallopt parameter, value, the environment variable and the tunable that would set it)
SETTINGS = (
    (M_ARENA_MAX, ARENAS, "MALLOC_ARENA_MAX", "glibc.malloc.arena_max"),
    (M_MMAP_THRESHOLD, MMAP_THRESHOLD, "MALLOC_MMAP_THRESHOLD_", "glibc.malloc.mmap_threshold"),
    (M_TRIM_THRESHOLD, TRIM_THRESHOLD, "MALLOC_TRIM_THRESHOLD_", "glibc.malloc.trim_threshold"),
)


def operator_set(variable: str, tunable: str) -> bool:
    """Whether the environment already sets this malloc parameter."""
    return bool(os.environ.get(variable)) or tunable in os.environ.get("GLIBC_TUNABLES", "")


def tune_malloc() -> dict[str, bool]:
    """The settings above, each unless the operator chose it; which were set, by variable name."""
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        mallopt = libc.mallopt
    except (OSError, AttributeError):  # not glibc (musl, macOS): nothing to set
        return {variable: False for _, _, variable, _ in SETTINGS}
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    return {
        variable: not operator_set(variable, tunable) and bool(mallopt(param, value))
        for param, value, variable, tunable in SETTINGS
    }
