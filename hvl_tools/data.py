"""Datasets: image folders (one sub-folder per class) and split files.

Layout. A labelled folder holds one sub-folder per class (``DIR/<class>/*.png``); folder names
are matched to class names case-insensitively, with ``_``, ``-`` and spaces treated alike
(``melanocytic_nevus`` ↔ "melanocytic nevus"). A flat folder (images, no sub-folders) is an
unlabelled set (scores only). OOD folders are searched recursively.

Split files (JSON, ``format: "hvl-split"``) say which classes are known (ID) and which are held
out (OOD), and how images are partitioned; they list classes and a rule, never files:

- ``"rule": "folders"``: ``DATA_ROOT/<train>/<class>/``, ``DATA_ROOT/<test>/<class>/`` (and an
  optional ``<ood>`` folder for OOD images; else OOD-class images are taken from the test folder);
- ``"rule": "kfold-hash"``: ``DATA_ROOT/<class>/`` holds all images; an image's fold is
  ``int(sha256(file name)) % folds`` (file name only, so it does not depend on where the data lives);
  fold ``i`` is the test set of run ``i``;
- ``"rule": "hash-fraction"``: like kfold-hash with one split, test when
  ``int(sha256(file name)) % 10000 < test_fraction · 10000``.

ID classes are listed (``id_classes``) or chosen by a rule (``"id_rule": {"largest": 40}``: the
40 classes with most images, ties by name); OOD classes are listed or ``"rest"`` (every other
class folder). A split may hold several ``tasks`` (e.g. NCT-CRC's three held-out sets), each
with its own ``id_classes``/``ood_classes``.

Problems are never silent. A missing class folder or a known class without images stops the run
(``DatasetError``) — a model that silently lost a class would be wrong. An unreadable image is
skipped, counted and listed (``DataReport``), because one corrupt file in thousands should not
stop a training run; ``strict=True`` (``--strict``) stops on it instead.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path

from hvl_core.presets import norm_name

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".tif", ".tiff", ".bmp", ".webp")
SPLIT_FORMAT = "hvl-split"


class DatasetError(ValueError):
    """A dataset or split that cannot be used; the message says what is wrong and where."""


def class_name_from_folder(folder: str) -> str:
    """A class name derived from a folder name: underscores become spaces."""
    return folder.replace("_", " ").strip()


def is_image_file(p: Path) -> bool:
    return p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")


def list_images(folder: Path, recursive: bool = False) -> list[Path]:
    """Image files in a folder (sorted by path), optionally recursively."""
    it = folder.rglob("*") if recursive else folder.iterdir()
    return sorted(p for p in it if is_image_file(p))


def class_folders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))


@dataclass
class Item:
    path: Path
    label: int | None  # index into the class list, None when unlabelled / OOD
    group: str = ""  # the class folder name (OOD class for OOD items)


@dataclass
class DataReport:
    """What was found and what was skipped; printed by the commands and stored in outputs."""

    counts: dict[str, int] = field(default_factory=dict)
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    notes: list[str] = field(default_factory=list)

    def summary(self) -> str:
        parts = [f"{k}: {v}" for k, v in self.counts.items()]
        s = ", ".join(parts)
        if self.skipped:
            s += f"; {len(self.skipped)} unreadable image(s) skipped"
        return s

    def to_dict(self) -> dict:
        return {
            "counts": dict(self.counts),
            "skipped": [{"path": p, "reason": r} for p, r in self.skipped],
            "n_skipped": len(self.skipped),
            "notes": list(self.notes),
        }


def match_folders(
    root: Path, class_names, folders: list[str] | None = None, allow_extra: bool = True
) -> dict[int, Path]:
    """Map class index → folder under ``root``. ``folders[i]`` names class i's folder explicitly
    (else the class name). Matching is case-insensitive. Raises ``DatasetError`` listing every
    class without a folder (and the folders that were there)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    present = class_folders(root)
    by_key: dict[str, list[Path]] = {}
    for p in present:
        by_key.setdefault(norm_name(p.name), []).append(p)
    out, missing = {}, []
    for i, name in enumerate(class_names):
        want = folders[i] if folders and folders[i] else name
        hits = by_key.get(norm_name(want), [])
        if len(hits) > 1:
            raise DatasetError(f"{root}: folders {[h.name for h in hits]} all match class {name!r}; keep one")
        if not hits:
            missing.append(f"{name!r}" + (f" (folder {want!r})" if want != name else ""))
        else:
            out[i] = hits[0]
    if missing:
        raise DatasetError(
            f"{root}: no folder for class(es) {', '.join(missing)}; found folders: "
            f"{', '.join(p.name for p in present) or 'none'} (names match case-insensitively, "
            f"'_' = '-' = space)"
        )
    if not allow_extra:
        used = {p for p in out.values()}
        extra = [p.name for p in present if p not in used]
        if extra:
            raise DatasetError(f"{root}: folders {extra} match no class of {list(class_names)}")
    return out


def labelled_items(
    root, class_names, folders: list[str] | None = None, report: DataReport | None = None, name: str = "images"
) -> list[Item]:
    """Every image under ``root/<class folder>/`` for the given classes, labelled by class index.
    Folders of other classes are ignored (and noted). An empty class raises ``DatasetError``."""
    root = Path(root)
    mapping = match_folders(root, class_names, folders)
    items: list[Item] = []
    empty = []
    for i, folder in sorted(mapping.items()):
        files = list_images(folder, recursive=True)
        if not files:
            empty.append(f"{class_names[i]!r} ({folder})")
        items += [Item(p, i, folder.name) for p in files]
    if empty:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) for class(es) {', '.join(empty)}")
    if report is not None:
        report.counts[name] = len(items)
        used = set(mapping.values())
        extra = [p.name for p in class_folders(root) if p not in used]
        if extra:
            report.notes.append(f"{root}: ignored folders of no known class: {', '.join(extra)}")
    return items


def folder_items(
    root, class_names=None, report: DataReport | None = None, name: str = "images"
) -> tuple[list[Item], bool]:
    """An evaluation folder: labelled by class sub-folders when it has any (they must all match
    ``class_names``), else a flat set of unlabelled images. Returns (items, labelled)."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    subs = class_folders(root)
    if subs and class_names is not None:
        keys = {norm_name(c): i for i, c in enumerate(class_names)}
        unknown = [p.name for p in subs if norm_name(p.name) not in keys]
        if unknown:
            raise DatasetError(
                f"{root}: sub-folders {unknown} are not classes of the model "
                f"({', '.join(class_names)}); names match case-insensitively, '_' = '-' = space. "
                "Rename them, or pass a flat folder for scores without accuracy"
            )
        items = []
        for p in subs:
            files = list_images(p, recursive=True)
            if not files and report is not None:
                report.notes.append(f"{p}: no images (class {class_names[keys[norm_name(p.name)]]!r} not evaluated)")
            items += [Item(f, keys[norm_name(p.name)], p.name) for f in files]
        labelled = True
    else:
        items = [Item(f, None, "") for f in list_images(root, recursive=bool(subs))]
        labelled = False
    if not items:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    if report is not None:
        report.counts[name] = len(items)
    return items, labelled


def ood_items(root, report: DataReport | None = None, name: str = "ood") -> list[Item]:
    """Every image under ``root`` (recursively), unlabelled; the first-level folder is its group."""
    root = Path(root)
    if not root.is_dir():
        raise DatasetError(f"{root}: no such folder")
    files = list_images(root, recursive=True)
    if not files:
        raise DatasetError(f"{root}: no images ({', '.join(IMAGE_EXTENSIONS)}) found")
    items = [Item(f, None, f.relative_to(root).parts[0] if len(f.relative_to(root).parts) > 1 else "") for f in files]
    if report is not None:
        report.counts[name] = len(items)
    return items


def class_set_for(names, preset: str | None = None):
    """The class set of a split: when every name is a class of ``preset`` (case-insensitively), the
    preset's prompts, descriptions and template for those classes, in the order of ``names``;
    else plain names."""
    from hvl_core.presets import (
        DEFAULT_TEMPLATE,
        ClassSet,
        class_set_from_names,
        preset_info,
    )

    if preset:
        try:
            info = preset_info(preset)
        except ValueError:
            info = None
        if info is not None:
            entries = {norm_name(c["name"]): c for c in info["classes"]}
            known = [c["name"] for c in info["classes"] if c.get("id", True)]
            if all(norm_name(n) in entries for n in names):
                picked = [entries[norm_name(n)] for n in names]
                return ClassSet(
                    names=tuple(c["name"] for c in picked),
                    prompts=tuple(c.get("prompt", c["name"]) for c in picked),
                    template=info.get("template", DEFAULT_TEMPLATE),
                    descriptions=tuple(c.get("description", "") for c in picked),
                    preset=preset if [c["name"] for c in picked] == known else None,
                    title=info.get("title", preset),
                    domain=info.get("domain", ""),
                )
    return class_set_from_names(list(names))


# --------------------------------------------------------------------------- deterministic partitions


def name_hash(name: str, salt: str = "") -> int:
    """A stable integer from a file name (sha256 of ``salt + name``)."""
    return int(hashlib.sha256((salt + name).encode("utf-8")).hexdigest(), 16)


def fold_of(path, folds: int) -> int:
    """The fold of an image: ``int(sha256(file name)) % folds``."""
    return name_hash(Path(path).name) % folds


def align_labels(items: list[Item], names, model_names) -> None:
    """Re-index ``items``' labels, given in the order of ``names`` (a split's classes), to the
    order of ``model_names`` (a model's), in place. The two must be the same classes up to
    case/separators (``norm_name``); else ``DatasetError``."""
    order = {norm_name(n): i for i, n in enumerate(model_names)}
    if sorted(order) != sorted(norm_name(n) for n in names):
        raise DatasetError(
            f"the split's known classes ({', '.join(names)}) differ from the model's ({', '.join(model_names)})"
        )
    remap = {i: order[norm_name(n)] for i, n in enumerate(names)}
    for it in items:
        it.label = remap[it.label]


def split_validation(items: list[Item], fraction: float, salt: str = "hvl-val") -> tuple[list[Item], list[Item]]:
    """Hold out ``fraction`` of each class for validation (calibration), deterministically: per
    class, images ordered by ``sha256(salt + file name)``, the first ``round(fraction · n)`` go to
    validation (at least one when the fraction is > 0 and the class has ≥ 2 images). Returns (train, val)."""
    if not 0 <= fraction < 1:
        raise ValueError(f"the validation fraction must be in [0, 1), got {fraction}")
    if fraction == 0:
        return list(items), []
    by_class: dict = {}
    for it in items:
        by_class.setdefault(it.label, []).append(it)
    train, val = [], []
    for label in sorted(by_class, key=lambda x: (x is None, x)):
        group = sorted(by_class[label], key=lambda it: (name_hash(it.path.name, salt), str(it.path)))
        k = round(fraction * len(group))
        if k == 0 and len(group) >= 2:
            k = 1
        k = min(k, len(group) - 1)
        val += group[:k]
        train += group[k:]
    return train, val


# --------------------------------------------------------------------------- split files


@dataclass
class SplitPlan:
    """The images of one run (one fold / task) of a split file."""

    name: str
    class_names: list[str]
    class_folders: list[str]
    ood_class_names: list[str]
    train: list[Item]
    test: list[Item]
    ood: list[Item]
    fold: int | None
    task: str | None
    report: DataReport
    preset: str | None = None
    provenance: str = ""


def list_splits() -> list[str]:
    """Split files shipped with hvl_tools (``hvl_tools/resources/splits``)."""
    d = resources.files("hvl_tools.resources") / "splits"
    return sorted(p.name[:-5] for p in d.iterdir() if p.name.endswith(".json")) if d.is_dir() else []


def load_split(source: str | Path) -> dict:
    """Read a split file: a path, or the name of a shipped one (``isic4``, ``nct-crc-task1``, ...)."""
    p = Path(source)
    if not p.is_file():
        shipped = resources.files("hvl_tools.resources") / "splits" / f"{source}.json"
        if not shipped.is_file():
            raise DatasetError(f"split {source}: no such file, nor a shipped split ({', '.join(list_splits())})")
        text, where = shipped.read_text(), f"shipped split {source}"
    else:
        text, where = p.read_text(), str(p)
    try:
        spec = json.loads(text)
    except json.JSONDecodeError as e:
        raise DatasetError(f"{where}: not valid JSON ({e})") from None
    if not isinstance(spec, dict) or spec.get("format") != SPLIT_FORMAT:
        raise DatasetError(f'{where}: not an HVL split file (needs "format": "{SPLIT_FORMAT}")')
    if "partition" not in spec or "rule" not in spec["partition"]:
        raise DatasetError(f"{where}: the split has no partition rule")
    rule = spec["partition"]["rule"]
    if rule not in ("folders", "kfold-hash", "hash-fraction"):
        raise DatasetError(f"{where}: unknown partition rule {rule!r} (folders, kfold-hash, hash-fraction)")
    spec.setdefault("name", Path(str(source)).stem)
    return spec


def split_folds(spec: dict) -> int:
    """Number of runs the partition defines (k for kfold-hash, else 1)."""
    return int(spec["partition"].get("folds", 1)) if spec["partition"]["rule"] == "kfold-hash" else 1


def _class_entries(entries) -> tuple[list[str], list[str]]:
    names, folders = [], []
    for e in entries:
        if isinstance(e, str):
            names.append(e)
            folders.append(e)
        else:
            names.append(e["name"])
            folders.append(e.get("folder", e["name"]))
    return names, folders


def _count_images(folder: Path) -> int:
    return len(list_images(folder, recursive=True))


def plan_split(
    spec: dict | str | Path, data_root, fold: int | None = None, task: str | None = None, strict_ood: bool = True
) -> SplitPlan:
    """Resolve a split file against ``data_root`` into the train / test / OOD images of one run."""
    if not isinstance(spec, dict):
        spec = load_split(spec)
    root = Path(data_root)
    if not root.is_dir():
        raise DatasetError(f"data root {root}: no such folder")
    report = DataReport()
    body = spec
    if "tasks" in spec:
        tasks = {t["name"]: t for t in spec["tasks"]}
        if task is None:
            raise DatasetError(f"split {spec['name']} has tasks {list(tasks)}; choose one (--task)")
        if task not in tasks:
            raise DatasetError(f"split {spec['name']}: no task {task!r}; tasks: {list(tasks)}")
        body = {**spec, **tasks[task]}
    elif task is not None:
        raise DatasetError(f"split {spec['name']} has no tasks")
    part = spec["partition"]
    rule = part["rule"]
    # where class folders live
    if rule == "folders":
        train_root, test_root = root / part["train"], root / part["test"]
        ood_root = root / part["ood"] if part.get("ood") else test_root
        scan_root = train_root
    else:
        train_root = test_root = ood_root = scan_root = root / part.get("images", ".")
    if not scan_root.is_dir():
        raise DatasetError(f"{scan_root}: no such folder (split {spec['name']}, rule {rule})")
    # classes
    if "id_classes" in body:
        names, folders = _class_entries(body["id_classes"])
    elif "id_rule" in body:
        largest = int(body["id_rule"]["largest"])
        counted = sorted(((_count_images(p), p.name) for p in class_folders(scan_root)), key=lambda x: (-x[0], x[1]))
        if len(counted) < largest:
            raise DatasetError(
                f"{scan_root}: {len(counted)} class folders, the split needs at least {largest} known classes"
            )
        folders = sorted(n for _, n in counted[:largest])
        names = [class_name_from_folder(f) for f in folders]
        report.notes.append(f"known classes: the {largest} largest folders of {scan_root}")
    else:
        raise DatasetError(f"split {spec['name']}: no id_classes nor id_rule")
    ood_spec = body.get("ood_classes", "rest")
    id_keys = {norm_name(f) for f in folders}
    if ood_spec == "rest":
        ood_folders = [p.name for p in class_folders(ood_root) if norm_name(p.name) not in id_keys]
        ood_names = [class_name_from_folder(f) for f in ood_folders]
    else:
        ood_names, ood_folders = _class_entries(ood_spec)
    overlap = id_keys & {norm_name(f) for f in ood_folders}
    if overlap:
        raise DatasetError(f"split {spec['name']}: classes {sorted(overlap)} are both known and OOD")

    k = split_folds(spec)
    if rule == "kfold-hash":
        if fold is None:
            raise DatasetError(f"split {spec['name']} has {k} folds; choose one (--fold 0..{k - 1})")
        if not 0 <= fold < k:
            raise DatasetError(f"split {spec['name']}: fold {fold} out of range 0..{k - 1}")
    elif fold not in (None, 0):
        raise DatasetError(f"split {spec['name']} has a single partition; --fold does not apply")

    def in_test(p: Path) -> bool:
        if rule == "kfold-hash":
            return fold_of(p, k) == fold
        frac = float(part.get("test_fraction", 0.2))
        return name_hash(p.name) % 10000 < round(frac * 10000)

    if rule == "folders":
        train = labelled_items(train_root, names, folders, report, "train")
        test = labelled_items(test_root, names, folders, report, "test")
    else:
        everything = labelled_items(scan_root, names, folders)
        train = [it for it in everything if not in_test(it.path)]
        test = [it for it in everything if in_test(it.path)]
        for i, n in enumerate(names):
            if not any(it.label == i for it in train):
                raise DatasetError(f"split {spec['name']}: class {n!r} has no training images in this fold")
        report.counts["train"], report.counts["test"] = len(train), len(test)
    ood: list[Item] = []
    if ood_folders:
        found = {norm_name(p.name): p for p in class_folders(ood_root)}
        missing = [f for f in ood_folders if norm_name(f) not in found]
        if missing and strict_ood:
            raise DatasetError(f"{ood_root}: no folder for OOD class(es) {missing}")
        for f in ood_folders:
            if norm_name(f) in found:
                files = list_images(found[norm_name(f)], recursive=True)
                if rule == "hash-fraction" and part.get("ood_test_only", False):
                    files = [p for p in files if in_test(p)]
                ood += [Item(p, None, found[norm_name(f)].name) for p in files]
        report.counts["ood"] = len(ood)
    return SplitPlan(
        name=spec["name"],
        class_names=names,
        class_folders=folders,
        ood_class_names=ood_names,
        train=train,
        test=test,
        ood=ood,
        fold=fold,
        task=task,
        report=report,
        preset=body.get("preset"),
        provenance=spec.get("provenance", ""),
    )
