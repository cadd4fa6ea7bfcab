"""What the server's log may say: no upload's name or path, and the file readers in one line.

``configure_logging`` sets up the root handler with ``PrivateFilter``: in every record, a path
under the upload folder (or gradio's default one) becomes ``<upload>``, with the rest of its line
(a file name may hold spaces), in the message and in a traceback; a record of an image reader's library (``READERS``: wsidicom, tifffile, pydicom, PIL,
openslide, imagecodecs) or a Python warning becomes one line — the library and level, without
its message or traceback, which quote the file and what it holds.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from pathlib import Path

#: libraries that read uploads: their records name the file, so they are cut to one line
READERS = ("wsidicom", "tifffile", "pydicom", "PIL", "openslide", "imagecodecs", "py.warnings")
LOG_FORMAT = "%(levelname)s %(name)s: %(message)s"


class PrivateFilter(logging.Filter):
    """Rewrites records so that no upload path or reader's message reaches the log."""

    def __init__(self, folders=()):
        super().__init__()
        roots = {str(f) for f in folders if f} | {str(Path(tempfile.gettempdir()) / "gradio")}
        roots |= {os.path.realpath(r) for r in roots}
        alts = "|".join(re.escape(r) for r in sorted(roots, key=len, reverse=True))
        # a file name may hold spaces: the rest of the line goes too (up to a quote, if quoted)
        self._paths = re.compile(rf"(?:{alts})[^'\"\n]*")

    def redact(self, text: str) -> str:
        return self._paths.sub("<upload>", text)

    def filter(self, record: logging.LogRecord) -> bool:
        lib = record.name.split(".")[0]
        if lib in READERS:
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


def configure_logging(upload_folder=None, level: int = logging.INFO) -> PrivateFilter:
    """The root handler (created if there is none) with ``PrivateFilter`` on it; the readers'
    loggers at WARNING and Python warnings captured into the log."""
    logging.basicConfig(level=level, format=LOG_FORMAT)
    f = PrivateFilter([upload_folder, os.environ.get("GRADIO_TEMP_DIR")])
    for h in logging.getLogger().handlers:
        for old in [x for x in h.filters if isinstance(x, PrivateFilter)]:
            h.removeFilter(old)
        h.addFilter(f)
    for name in READERS:
        logging.getLogger(name).setLevel(logging.WARNING)
    logging.captureWarnings(True)
    return f
