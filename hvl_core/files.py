"""File helpers used across the project: atomic writes, content hashes, and output folders checked
before any work (a folder that cannot be written is one sentence at the start, not an OSError
traceback after minutes of encoding)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path


def atomic_write(path: str | os.PathLike, data: bytes | str) -> Path:
    """Write ``data`` to ``path`` through a temporary file in the same folder and ``os.replace``,
    so a reader (or a crash) never sees a half-written file. Returns the path."""
    path = Path(path)
    if isinstance(data, str):
        data = data.encode("utf-8")
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def sha256_bytes(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file, read in chunks (model weights can be large)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(chunk), b""):
            h.update(block)
    return h.hexdigest()


class OutputError(OSError):
    """A folder the run must write to cannot be written; the message says which and why."""


def writable_dir(path: str | os.PathLike, what: str = "output folder") -> Path:
    """Create ``path`` if needed and prove a file can be written in it (and removed again).

    Permission bits alone do not tell (root ignores them; a read-only mount does not show in
    them), so a real temporary file is written. Raises ``OutputError`` with one sentence.
    """
    p = Path(path).expanduser()
    try:
        p.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=p, prefix=".hvl-write-check-"):
            pass
    except OSError as e:
        reason = e.strerror or type(e).__name__
        raise OutputError(f"the {what} {p} cannot be written ({reason}); choose a folder you can write to") from None
    return p
