"""Gradio's upload folder, private to this server process and gone when it stops.

``private_upload_dir`` makes, at start-up, a folder of this process's own (mode 0700, named
``hvl-uploads-<pid>-<random>`` under the system's temporary folder or ``GRADIO_TEMP_DIR``) and
points ``GRADIO_TEMP_DIR`` at it, so two servers on one host never see or sweep each other's
uploads. It is removed when the process ends (``atexit``, and before a SIGTERM or SIGINT whose
default action would skip ``atexit``), never while it serves: an ignored signal stays ignored. A
folder left by a killed server is removed at the next start only when the process that made it is
gone (same user, its pid no longer running, or running since after the folder was made). ``start_sweeper`` also deletes, while running, uploads older than ten minutes
and the empty temporary files gradio's upload parser leaves.
"""

from __future__ import annotations

import atexit
import logging
import os
import re
import shutil
import signal
import tempfile
import threading
import time
from pathlib import Path

import psutil

#: gradio's upload folder is swept every SWEEP_EVERY_S of files older than SWEEP_AGE_S, and of the
#: empty temporary files its upload parser leaves (one per upload) once EMPTY_AGE_S old
SWEEP_EVERY_S, SWEEP_AGE_S, EMPTY_AGE_S = 60, 600, 60
PREFIX = "hvl-uploads-"
_OWNED = re.compile(rf"^{PREFIX}(\d+)-[A-Za-z0-9_]+$")

log = logging.getLogger(__name__)


def upload_dir() -> Path:
    """Where gradio keeps uploads and rendered files (``GRADIO_TEMP_DIR``, else its default)."""
    return Path(os.environ.get("GRADIO_TEMP_DIR") or Path(tempfile.gettempdir()) / "gradio")


def owner_gone(folder: Path) -> bool:
    """Whether the server that made ``folder`` (``hvl-uploads-<pid>-…``, ours by uid) has stopped:
    its pid runs no process, or one started after the folder was made (the pid was reused)."""
    m = _OWNED.match(folder.name)
    if m is None:
        return False
    try:
        st = folder.lstat()
    except OSError:
        return False
    if st.st_uid != os.getuid() or not folder.is_dir() or folder.is_symlink():
        return False
    pid = int(m.group(1))
    if pid == os.getpid():
        return False
    try:
        # the folder changed last after it was made: a process started later is another one
        return psutil.Process(pid).create_time() > st.st_mtime + 1
    except psutil.NoSuchProcess:
        return True
    except psutil.Error:
        return False


def remove_stale(parent: str | os.PathLike) -> int:
    """Remove the upload folders under ``parent`` whose server has stopped; returns how many."""
    gone = 0
    for p in Path(parent).glob(f"{PREFIX}*"):
        if owner_gone(p):
            shutil.rmtree(p, ignore_errors=True)
            gone += not p.exists()
    return gone


def remove_at_exit(folder: Path, signals=(signal.SIGTERM, signal.SIGINT)) -> None:
    """Delete ``folder`` when the process ends: ``atexit``, and before each of ``signals`` that
    would kill it without running ``atexit`` (its default action). A signal that was ignored (a
    server started with ``&`` from a script ignores SIGINT) or has a handler is left as it is: the
    process goes on, or ends through that handler and ``atexit``, so the folder exists exactly
    while the server serves."""

    def remove():
        shutil.rmtree(folder, ignore_errors=True)

    atexit.register(remove)
    if threading.current_thread() is not threading.main_thread():
        return  # signal handlers can only be set from the main thread

    def on_signal(signum, frame):
        remove()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    for sig in signals:
        if signal.getsignal(sig) == signal.SIG_DFL:
            signal.signal(sig, on_signal)


def private_upload_dir(parent: str | os.PathLike | None = None) -> Path:
    """A fresh 0700 upload folder for this process under ``parent`` (default ``GRADIO_TEMP_DIR``,
    else the system's temporary folder), set as ``GRADIO_TEMP_DIR`` and removed at exit; stale
    folders of stopped servers under ``parent`` are removed first. Call it before gradio is
    imported (gradio reads ``GRADIO_TEMP_DIR`` then)."""
    parent = Path(parent or os.environ.get("GRADIO_TEMP_DIR") or tempfile.gettempdir())
    parent.mkdir(parents=True, exist_ok=True)
    n = remove_stale(parent)
    if n:
        log.info("removed %d upload folder(s) of stopped servers", n)
    folder = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=parent))  # mode 0700
    os.environ["GRADIO_TEMP_DIR"] = str(folder)
    remove_at_exit(folder)
    return folder


def sweep_uploads(
    folder: str | os.PathLike | None = None, older_than_s: float = 0.0, empty_older_than_s: float | None = None
) -> int:
    """Delete the files under ``folder`` (default ``upload_dir()``) not modified for
    ``older_than_s`` seconds (0: all) and 0-byte files not modified for ``empty_older_than_s``
    (default: the same), then the empty folders. Links are removed, never followed. Returns how
    many files went."""
    root = Path(folder) if folder is not None else upload_dir()
    if not root.is_dir():
        return 0
    now, removed = time.time(), 0
    empty_age = older_than_s if empty_older_than_s is None else empty_older_than_s
    for dirpath, _dirnames, filenames in os.walk(root, topdown=False):
        for f in filenames:
            p = Path(dirpath) / f
            try:
                st = p.lstat()
                age = now - st.st_mtime
                if older_than_s <= 0 or age >= older_than_s or (st.st_size == 0 and age >= empty_age):
                    p.unlink()
                    removed += 1
            except OSError:
                pass
        if Path(dirpath) != root:
            try:
                os.rmdir(dirpath)  # only when empty
            except OSError:
                pass
    return removed


def start_sweeper(
    folder: str | os.PathLike | None = None, every_s: float = SWEEP_EVERY_S, age_s: float = SWEEP_AGE_S
) -> threading.Thread:
    """Sweep ``folder`` now, entirely, and then every ``every_s`` of files older than ``age_s``
    (gradio's own ``delete_cache`` misses 0-byte leftovers)."""
    sweep_uploads(folder, 0)

    def loop():
        while True:
            time.sleep(every_s)
            sweep_uploads(folder, age_s, EMPTY_AGE_S)

    t = threading.Thread(target=loop, name="hvl-upload-sweeper", daemon=True)
    t.start()
    return t
