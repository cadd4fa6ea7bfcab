"""Output and cache folders checked before any work: a folder that cannot be written is one
sentence at the start, not an OSError traceback after minutes of encoding."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path


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
