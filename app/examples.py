"""The bundled example images (``assets/``, described by ``assets/manifest.json``): what the
gallery shows, what the reference set scores and what the lessons are about."""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

ASSETS_DIR = Path(__file__).resolve().parent.parent / "assets"
KIND_LABELS = {"skin": "Skin", "histology": "Histology", "ood": "Out-of-domain", "failure": "Fails"}
ACRONYMS = {"mri", "ct", "he", "ihc"}


def load_examples(assets_dir: Path = ASSETS_DIR) -> list[dict]:
    """The example gallery: ``assets/manifest.json`` when present, else the images in ``assets/``."""
    manifest = assets_dir / "manifest.json"
    items = []
    if manifest.is_file():
        try:
            entries = json.loads(manifest.read_text())
        except (OSError, json.JSONDecodeError) as e:
            log.warning("ignoring %s: %s", manifest, e)
            entries = []
        for e in entries:
            path = assets_dir / str(e.get("file", ""))
            if path.is_file():
                items.append(
                    {
                        "path": str(path),
                        "kind": e.get("kind", ""),
                        "caption": e.get("caption", path.stem),
                        "preset": e.get("preset"),
                        "why": e.get("why") or {},
                        "title": e.get("title", ""),
                        # what kind of picture it is, in the words of a backbone's "never seen" list
                        "imaging": e.get("imaging", ""),
                    }
                )
    if not items and assets_dir.is_dir():
        for path in sorted(p for p in assets_dir.iterdir() if p.suffix.lower() in (".png", ".jpg", ".jpeg")):
            kind = next((k for k in KIND_LABELS if path.stem.lower().startswith(k)), "")
            items.append({"path": str(path), "kind": kind, "caption": path.stem.replace("_", " ")})
    order = {"skin": 0, "histology": 1, "ood": 2, "failure": 3}
    return sorted(items, key=lambda it: order.get(it["kind"], 3))
