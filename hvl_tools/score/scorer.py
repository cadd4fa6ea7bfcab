"""The model side of scoring, shared by every engine: a batch of decoded files → result rows.

``Scorer.score`` runs one batch through the model's own code: the views go to the device (from
pinned memory when the loader pinned them), ``crops_of_views`` cuts every image's
``1 + n² + 4n²`` crops there, ``HVLModel.encode_crops`` encodes the batch's crops together (bf16
autocast on CUDA, as the model does), and ``HVLModel.decide_batch`` runs the head and the
decision. A Ray actor and the local loop call the same method, so they give the same scores.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field

import numpy as np
import torch

from hvl_core.geometry import num_crops, split_scales

from .views import DECODERS, Decoded, crops_of_views, decode_jpegs, decode_view

#: the columns of scores.csv, in order
#: p_value: conformal, against a calibrated checkpoint's known images (empty without one)
COLUMNS = ("path", "label", "score", "msp", "p_value", "outcome", "known", "error")


@dataclass
class ModelSpec:
    """How to build the model (``hvl_core.load_model`` arguments); plain values, so a Ray actor
    on another machine can build the same model."""

    backbone: str = "auto"
    classes: list[str] | None = None
    preset: str | None = None
    checkpoint: str | None = None
    device: str = "auto"
    detail: str = "upsample"
    threshold: float | None = None
    head_options: dict = field(default_factory=dict)  # n, k, ...

    def load(self, device: str | None = None):
        from hvl_core import load_model

        return load_model(
            backbone=self.backbone,
            classes=self.classes,
            preset=self.preset,
            checkpoint=self.checkpoint,
            device=device or self.device,
            detail=self.detail,
            threshold=self.threshold,
            **self.head_options,
        )

    def to_dict(self) -> dict:
        return asdict(self)


def resolve_decoder(decode: str, device: torch.device) -> bool:
    """True when JPEGs are decoded on the device: ``auto`` does it on CUDA (nvjpeg)."""
    if decode not in DECODERS:
        raise ValueError(f"decode must be one of {DECODERS}, got {decode!r}")
    return decode == "device" or (decode == "auto" and device.type == "cuda")


@dataclass
class Batch:
    """Decoded files of one batch, collated: the views of those that have one stacked (uint8,
    pinnable), JPEG bytes for the device decoder, and the errors."""

    paths: list[str]
    views: torch.Tensor  # (V, S, S, 3) uint8
    view_rows: list[int]  # batch position of each view
    crops: torch.Tensor | None  # (V, M, 3, S, S) for detail="native"
    jpegs: list[tuple[int, np.ndarray]]
    errors: dict[int, str]

    def pin_memory(self) -> Batch:  # called by the DataLoader's pinning thread
        self.views = self.views.pin_memory()
        if self.crops is not None:
            self.crops = self.crops.pin_memory()
        return self


def collate(paths: Sequence[str], decoded: Sequence[Decoded], size: int) -> Batch:
    rows = [i for i, d in enumerate(decoded) if d.view is not None]
    views = (
        torch.from_numpy(np.stack([decoded[i].view for i in rows]))
        if rows
        else torch.zeros(0, size, size, 3, dtype=torch.uint8)
    )
    crops = None
    if rows and decoded[rows[0]].crops is not None:
        crops = torch.stack([decoded[i].crops for i in rows])
    return Batch(
        paths=list(paths),
        views=views,
        view_rows=rows,
        crops=crops,
        jpegs=[(i, d.jpeg) for i, d in enumerate(decoded) if d.jpeg is not None],
        errors={i: d.error for i, d in enumerate(decoded) if d.error is not None},
    )


def state_digest(module: torch.nn.Module) -> str:
    """sha256 (12 hex) of a module's tensors: tells two trained heads apart."""
    h = hashlib.sha256()
    for k, v in sorted(module.state_dict().items()):
        h.update(k.encode())
        h.update(v.detach().float().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()[:12]


class Scorer:
    """A loaded model and how to feed it; ``score(batch)`` → rows of scores.csv."""

    def __init__(self, model, threshold: float | None = None, decode: str = "auto"):
        self.model = model
        self.threshold = model.threshold if threshold is None else float(threshold)
        self.size = model.backbone.image_size
        self.n = model.n
        self.decode_on_device = resolve_decoder(decode, model.device) and model.detail == "upsample"
        self.score_name = model.score_name  # msp, energy or maxlogit: the model's decision score

    def identity(self) -> dict:
        """What the scores depend on; a resumed run must match it."""
        from hvl_core.verdicts import smallest_p
        from hvl_tools.features import backbone_fingerprint, precision_of

        m = self.model
        return {
            "backbone": m.backbone.name,
            "backbone_weights": backbone_fingerprint(m.backbone),
            "classes": list(m.classes.names),
            "negatives": list(m.classes.negatives),
            "head": m.head.config.to_dict(),
            "head_weights": state_digest(m.head),
            "detail": m.detail,
            "threshold": self.threshold,
            "scope": None
            if m.scope is None
            else {"t_knn": m.scope.t_knn, "t_gate": m.scope.t_gate, "t_contrast": m.scope.t_contrast},
            "smallest_p": smallest_p(
                len(m.calibration.get(m.score_name, ())), None if m.scope is None else m.scope.smallest_p
            ),
            "precision": precision_of(m.device),
            "decoder": "device" if self.decode_on_device else "cpu",
        }

    def decode(self, path: str) -> Decoded:
        from .views import decode_item

        return decode_item(path, self.size, self.n, self.model.detail, self.decode_on_device)

    def _device_views(self, batch: Batch) -> tuple[list[int], torch.Tensor | None]:
        """Batch positions and their views (B, 3, S, S) on the device (JPEGs decoded there)."""
        dev = self.model.device
        rows = list(batch.view_rows)
        parts = [batch.views.to(dev, non_blocking=True).permute(0, 3, 1, 2)] if rows else []
        if batch.jpegs:
            try:
                parts.append(torch.stack(decode_jpegs([b for _, b in batch.jpegs], self.size, dev)))
                rows += [i for i, _ in batch.jpegs]
            except RuntimeError:  # a file nvjpeg refuses: the CPU decoder reads it, or says why not
                for i, _ in batch.jpegs:
                    d = decode_view(batch.paths[i], self.size, self.n)
                    if d.error is not None:
                        batch.errors[i] = d.error
                    else:
                        parts.append(torch.from_numpy(d.view).permute(2, 0, 1).unsqueeze(0).to(dev))
                        rows.append(i)
        return rows, (torch.cat(parts) if parts else None)

    def score(self, batch: Batch) -> list[dict]:
        """Rows (dicts with COLUMNS) for every file of the batch, in the batch's order."""
        from hvl_core.model import Encoded

        m = self.model
        rows, views = self._device_views(batch)
        out: dict[int, dict] = {i: _error_row(batch.paths[i], e) for i, e in batch.errors.items()}
        if views is not None:
            if batch.crops is not None:  # native detail: cut from the full image by the decoder
                crops = batch.crops.to(m.device, non_blocking=True)
            else:
                crops = crops_of_views(views, self.n)
            B, M = len(rows), num_crops(self.n)
            v = m.encode_crops(crops.flatten(0, 1)).view(B, M, -1)  # one encoder call for the batch
            v0, v1, v2 = split_scales(v, self.n)
            empty = np.zeros((0, 0, 3), np.uint8)
            encoded = [Encoded(v0=v0[j], v1=v1[j], v2=v2[j], n=self.n, view=empty) for j in range(B)]
            for i, pred in zip(rows, m.decide_batch(encoded, self.threshold)):
                out[i] = {
                    "path": batch.paths[i],
                    "label": pred.label,
                    "score": float(pred.score),
                    "msp": float(pred.msp),
                    "p_value": float("nan") if pred.deciding_p_value is None else float(pred.deciding_p_value),
                    "outcome": pred.outcome,
                    "known": bool(pred.known),
                    "error": "",
                }
        return [out[i] for i in range(len(batch.paths))]


def _error_row(path: str, error: str) -> dict:
    return {
        "path": path,
        "label": "",
        "score": float("nan"),
        "msp": float("nan"),
        "p_value": float("nan"),
        "outcome": "",
        "known": False,
        "error": error,
    }
