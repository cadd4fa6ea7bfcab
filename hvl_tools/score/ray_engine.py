"""``--engine ray``: the same scoring on Ray Data, from one machine to a cluster.

The pipeline is ``ray.data.from_items(paths)`` → ``map_batches(decode_batch)`` (CPU tasks: read
the files, make the views) → ``map_batches(RayScorer)`` (actors, each holding one model on a GPU
or on CPUs; ``RayScorer.__call__`` is ``Scorer.score``, the local engine's code) → rows streamed
back to the driver, which appends them to scores.csv as they arrive.

``address=None`` starts a private Ray instance on this machine, bound to 127.0.0.1, without the
dashboard, and shuts it down afterwards; ``address="auto"`` or ``"ray://HOST:10001"`` joins a
running cluster (every node needs this package and the files at the same paths).
"""
from __future__ import annotations

import logging
from collections.abc import Iterator, Sequence

import numpy as np

from .scorer import COLUMNS, Batch, ModelSpec, Scorer, collate
from .views import Decoded, decode_item


class RayUnavailable(RuntimeError):
    """Ray is not installed."""


def require_ray():
    try:
        import ray
        import ray.data  # noqa: F401
    except ImportError:
        raise RayUnavailable("--engine ray needs Ray Data: pip install 'hvl-demo[ray]' "
                             "(or pip install 'ray[data]')") from None
    return ray


def decode_batch(batch: dict[str, np.ndarray], size: int, n: int, detail: str, on_device: bool) -> dict[str, np.ndarray]:
    """Ray task: file paths → views (uint8, fixed shape), JPEG bytes for the device, errors."""
    paths = [str(p) for p in batch["path"]]
    decoded = [decode_item(p, size, n, detail, on_device) for p in paths]
    views = np.zeros((len(paths), size, size, 3), np.uint8)
    for i, d in enumerate(decoded):
        if d.view is not None:
            views[i] = d.view
    return {"path": np.array(paths, dtype=object), "view": views,
            "has_view": np.array([d.view is not None for d in decoded]),
            "jpeg": np.array([b"" if d.jpeg is None else d.jpeg.tobytes() for d in decoded], dtype=object),
            "error": np.array([d.error or "" for d in decoded], dtype=object)}


def batch_of_columns(batch: dict[str, np.ndarray], size: int) -> Batch:
    """decode_batch's columns → the Batch that Scorer.score takes."""
    decoded = []
    for i in range(len(batch["path"])):
        if batch["error"][i]:
            decoded.append(Decoded(error=str(batch["error"][i])))
        elif batch["has_view"][i]:
            decoded.append(Decoded(view=batch["view"][i]))
        else:
            decoded.append(Decoded(jpeg=np.frombuffer(bytearray(batch["jpeg"][i]), dtype=np.uint8)))
    return collate([str(p) for p in batch["path"]], decoded, size)


class RayScorer:
    """Ray Data actor: builds the model once, then scores batches with ``Scorer.score``."""

    def __init__(self, spec: dict, threshold: float | None, decode: str, device: str):
        self.scorer = Scorer(ModelSpec(**spec).load(device), threshold, decode)

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        if self.scorer.model.detail == "native":  # crops need the full image: decode here
            paths = [str(p) for p in batch["path"]]
            b = collate(paths, [self.scorer.decode(p) for p in paths], self.scorer.size)
        else:
            b = batch_of_columns(batch, self.scorer.size)
        rows = self.scorer.score(b)
        out = {c: np.array([r[c] for r in rows], dtype=object if c in ("path", "label", "error") else None)
               for c in COLUMNS}
        out["score_name"] = np.array([self.scorer.score_name] * len(rows), dtype=object)
        return out


def init_ray(address: str | None, num_cpus: int | None = None, object_store_mb: int = 512):
    """Join ``address``, or start a private local instance on loopback. Returns (ray, started)."""
    ray = require_ray()
    if ray.is_initialized():
        return ray, False
    if address:
        ray.init(address=address, log_to_driver=False)
    else:
        ray.init(address="local", num_cpus=num_cpus, include_dashboard=False, _node_ip_address="127.0.0.1",
                 object_store_memory=object_store_mb * 2**20, log_to_driver=False, configure_logging=False)
    ctx = ray.data.DataContext.get_current()
    ctx.enable_progress_bars = False  # ours counts rows written
    logging.getLogger("ray.data").setLevel(logging.WARNING)
    return ray, True


def ray_batches(spec: ModelSpec, scorer: Scorer, paths: Sequence[str], batch_size: int, actors: int = 1,
                gpus_per_actor: float = 0.0, cpus_per_actor: float = 1.0, address: str | None = None,
                num_cpus: int | None = None) -> Iterator[list[dict]]:
    """Rows of each scored batch, as Ray returns them (not in input order). ``scorer`` is the
    driver's own (for the view size and decoder settings; it scores nothing)."""
    ray, started = init_ray(address, num_cpus)
    try:
        device = "cuda" if gpus_per_actor > 0 else "cpu"
        ds = ray.data.from_items([{"path": p} for p in paths])
        if scorer.model.detail != "native":
            ds = ds.map_batches(decode_batch, batch_size=batch_size, batch_format="numpy", num_cpus=1,
                                fn_kwargs={"size": scorer.size, "n": scorer.n, "detail": scorer.model.detail,
                                           "on_device": scorer.decode_on_device})
        ds = ds.map_batches(RayScorer, batch_size=batch_size, batch_format="numpy",
                            compute=ray.data.ActorPoolStrategy(size=actors),
                            num_gpus=gpus_per_actor or None, num_cpus=cpus_per_actor,
                            fn_constructor_kwargs={"spec": spec.to_dict(), "threshold": scorer.threshold,
                                                   "decode": "device" if scorer.decode_on_device else "cpu",
                                                   "device": device})
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if len(out["path"]):
                scorer.score_name = str(out["score_name"][0])
            yield [{"path": str(out["path"][i]), "label": str(out["label"][i]), "score": float(out["score"][i]),
                    "msp": float(out["msp"][i]), "known": bool(out["known"][i]), "error": str(out["error"][i])}
                   for i in range(len(out["path"]))]
    finally:
        if started:
            ray.shutdown()
