"""What the server's log may say: no upload's name or path, no request's data, and the file
readers in one line.

``configure_logging`` sets up the root handler with ``PrivateFilter``: in every record, a path
under the upload folder (or gradio's default one) becomes ``<upload>``, with the rest of its line
(a file name may hold spaces and quotes), in the message and in a traceback; a ``data:`` URI
becomes ``data:<withheld>`` and a message is cut at ``MAX_CHARS``; a record of an image reader's
library (``READERS``: wsidicom, tifffile, pydicom, PIL, openslide, imagecodecs) or a Python
warning becomes one line — the library and level, without its message or traceback, which quote
the file and what it holds. gradio also ``print``s (a failed event's traceback, with the values
it was given): ``sys.stdout`` and ``sys.stderr`` go through the same redaction
(``RedactedStream``).
"""

from __future__ import annotations

import logging
import os
import re
import sys
import tempfile
from pathlib import Path

#: libraries that read uploads (and Python's warnings): their records name the file, so they
#: are cut to one line
READERS = ("wsidicom", "tifffile", "pydicom", "PIL", "openslide", "imagecodecs", "py.warnings")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"
#: characters a message, a traceback or one console write may hold (a request's body may be MBs)
MAX_CHARS = 8000
#: a data: URI, however long (its payload is an upload's bytes)
_DATA_URI = re.compile(r"data:[\w.+/-]*(?:;[\w.+=-]+)*,[A-Za-z0-9+/=%_-]*")


def _reader(name: str) -> str | None:
    """The ``READERS`` entry a logger belongs to (its name or a child's), or None."""
    return next((r for r in READERS if name == r or name.startswith(r + ".")), None)


class PrivateFilter(logging.Filter):
    """Rewrites records so that no upload path, data or reader's message reaches the log."""

    def __init__(self, folders=()):
        super().__init__()
        roots = {str(f) for f in folders if f} | {str(Path(tempfile.gettempdir()) / "gradio")}
        roots |= {os.path.realpath(r) for r in roots}
        alts = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True))
        # the rest of the line goes too: a name may hold spaces and quotes ("it's DOE^JOHN.png");
        # a quote ends it only where a quoted path's closing quote would (before , ) ] or a space)
        self._paths = re.compile(rf"(?:{alts})(?:[^'\"\n]|['\"](?![\s,)\]}}:]|$))*")

    def redact(self, text: str) -> str:
        text = self._paths.sub("<upload>", _DATA_URI.sub("data:<withheld>", text))
        if len(text) > MAX_CHARS:  # cut to MAX_CHARS in all, so that a second pass leaves it as is
            cut = f" … ({len(text) - MAX_CHARS + 64:,} characters withheld)"
            text = text[: MAX_CHARS - 64] + cut
        return text

    def filter(self, record: logging.LogRecord) -> bool:
        lib = _reader(record.name)
        if lib is not None:
            what = "a warning" if lib == "py.warnings" else f"{lib} {record.levelname.lower()}"
            record.msg, record.args = f"{what} while reading a file (details withheld: they name it)", None
            record.exc_info = record.exc_text = record.stack_info = None
            return True
        record.msg, record.args = self.redact(record.getMessage()), None
        if record.exc_info:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
            record.exc_info = None
        if record.exc_text:
            record.exc_text = self.redact(record.exc_text)
        return True


class RedactedStream:
    """A console stream whose every write goes through ``PrivateFilter.redact`` first."""

    def __init__(self, stream, private: PrivateFilter):
        self.stream, self.private = stream, private

    def write(self, text: str) -> int:
        self.stream.write(self.private.redact(text) + ("\n" if len(text) > MAX_CHARS else ""))
        return len(text)

    def __getattr__(self, name):  # flush, fileno, encoding, isatty ...: the stream's own
        return getattr(self.stream, name)


def configure_logging(upload_folder=None, level: int = logging.INFO) -> PrivateFilter:
    """The root handler (created if there is none) with ``PrivateFilter`` on it; the readers'
    loggers at WARNING, Python warnings captured into the log, and ``sys.stdout`` and
    ``sys.stderr`` redacted the same way."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    f = PrivateFilter([upload_folder, os.environ.get("GRADIO_TEMP_DIR")])
    for h in logging.getLogger().handlers:
        for old in [x for x in h.filters if isinstance(x, PrivateFilter)]:
            h.removeFilter(old)
        h.addFilter(f)
    for name in READERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    for name in ("stdout", "stderr"):
        stream = getattr(sys, name)
        setattr(sys, name, RedactedStream(stream.stream if isinstance(stream, RedactedStream) else stream, f))
    return f
