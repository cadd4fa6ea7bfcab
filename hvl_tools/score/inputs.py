"""What to score: folders (searched recursively), globs, single files, or CSV manifests.

Folders and globs take every entry named like an image: what ``hvl predict`` reads
(``hvl_core.images.FILE_SUFFIXES``: images, DICOM, whole-slide .svs/.ndpi/.tiff) and any other
image type (.svg, .gif ...), links included even when broken, a folder named ``x.png`` too:
whatever cannot be read is an error row of its own, never left out."""

from __future__ import annotations

import csv
import glob
import mimetypes
from pathlib import Path

from hvl_core.images import FILE_SUFFIXES

MANIFEST_COLUMN = "path"


class InputError(ValueError):
    """An input that names nothing to score; the message says which."""


def read_manifest(path: Path) -> list[str]:
    """A CSV with a ``path`` column (else its first column); relative paths are taken from the
    manifest's folder. Other columns are ignored."""
    try:
        with open(path, newline="", encoding="utf-8-sig") as f:
            rows = list(csv.reader(f))
    except (OSError, UnicodeDecodeError, csv.Error) as e:
        raise InputError(f"{path}: cannot read the manifest ({e})") from None
    if not rows:
        raise InputError(f"{path}: the manifest is empty")
    header = [h.strip().lower() for h in rows[0]]
    col = header.index(MANIFEST_COLUMN) if MANIFEST_COLUMN in header else 0
    body = rows[1:] if MANIFEST_COLUMN in header else rows
    out = []
    for r in body:
        if len(r) > col and r[col].strip():
            p = Path(r[col].strip())
            out.append(str(p if p.is_absolute() else path.parent / p))
    return out


def is_scored(p: Path) -> bool:
    """An entry a folder scan takes: one named like an image — a kind ``hvl predict`` reads, or
    any other image type (``.svg``, ``.gif``, ``.heic``: ``mimetypes``) — whether a file, a link
    (even a broken one) or a folder (``x.png/``): what cannot be read gets an error row."""
    if p.name.startswith("."):
        return False
    return p.suffix.lower() in FILE_SUFFIXES or (mimetypes.guess_type(p.name)[0] or "").startswith("image/")


def scan_folder(folder: Path) -> list[str]:
    """Every file under ``folder`` a scan takes, sorted by path."""
    return sorted(str(p) for p in folder.rglob("*") if is_scored(p))


def collect_inputs(inputs: list[str]) -> list[str]:
    """Image paths to score, in input order, each once. Raises ``InputError`` for an input that
    is neither a file, a folder, a manifest nor a glob with matches."""
    found: list[str] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            files = scan_folder(p)
            if not files:
                raise InputError(f"{spec}: no images ({', '.join(FILE_SUFFIXES)}) in this folder")
            found += files
        elif p.is_file() and p.suffix.lower() == ".csv":
            found += read_manifest(p)
        elif p.is_file() or p.is_symlink():
            found.append(spec)  # any file or link: the decoder says why when it is not an image
        elif glob.has_magic(spec):
            files = sorted(x for x in glob.glob(spec, recursive=True) if is_scored(Path(x)))
            if not files:
                raise InputError(f"{spec}: the pattern matches no images")
            found += files
        else:
            raise InputError(f"{spec}: no such file or folder")
    return list(dict.fromkeys(found))
