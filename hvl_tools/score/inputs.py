"""What to score: folders (searched recursively), globs, single files, or CSV manifests.

Folders and globs take every file ``hvl predict`` reads (``hvl_core.images.FILE_SUFFIXES``:
images, DICOM, whole-slide .svs/.ndpi/.tiff), links included even when broken: whatever cannot
be read is an error row of its own, never left out."""

from __future__ import annotations

import csv
import glob
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
    """A file (or a link, even a broken one) a folder scan takes: a readable kind by its name."""
    return (p.is_file() or p.is_symlink()) and p.suffix.lower() in FILE_SUFFIXES and not p.name.startswith(".")


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
