"""What to score: folders (searched recursively), globs, single files, or CSV manifests."""

from __future__ import annotations

import csv
import glob
from pathlib import Path

from hvl_tools.data import IMAGE_EXTENSIONS, is_image_file, list_images

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


def collect_inputs(inputs: list[str]) -> list[str]:
    """Image paths to score, in input order, each once. Raises ``InputError`` for an input that
    is neither a file, a folder, a manifest nor a glob with matches."""
    found: list[str] = []
    for spec in inputs:
        p = Path(spec)
        if p.is_dir():
            files = [str(x) for x in list_images(p, recursive=True)]
            if not files:
                raise InputError(f"{spec}: no images ({', '.join(IMAGE_EXTENSIONS)}) in this folder")
            found += files
        elif p.is_file() and p.suffix.lower() == ".csv":
            found += read_manifest(p)
        elif p.is_file():
            found.append(spec)  # any file: the decoder says why when it is not an image
        elif glob.has_magic(spec):
            files = sorted(x for x in glob.glob(spec, recursive=True) if is_image_file(Path(x)))
            if not files:
                raise InputError(f"{spec}: the pattern matches no images")
            found += files
        else:
            raise InputError(f"{spec}: no such file or folder")
    return list(dict.fromkeys(found))
