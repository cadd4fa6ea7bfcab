"""``--engine ray``: the same scoring on Ray Data, from one machine to a cluster.

The pipeline is ``ray.data.from_items(paths)`` → ``map_batches(decode_batch)`` (CPU tasks: read
the files, make the views) → ``map_batches(RayScorer)`` (actors, each holding one model on a GPU
or on CPUs; ``RayScorer.__call__`` is ``Scorer.score``, the local engine's code) → rows streamed
back to the driver, which appends them to scores.csv as they arrive.

``address=None`` starts a private Ray instance on this machine, bound to 127.0.0.1 (every Ray
process listens on the loopback address only), without the dashboard, and shuts it down afterwards; ``address="auto"`` or ``"ray://HOST:10001"`` joins a
running cluster (every node needs this package and the files at the same paths).
"""

from __future__ import annotations

import contextlib
import logging
import os
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
        raise RayUnavailable(
            "--engine ray needs Ray Data: pip install 'hvl-demo[ray]' (or pip install 'ray[data]')"
        ) from None
    return ray


def decode_batch(
    batch: dict[str, np.ndarray], size: int, n: int, detail: str, on_device: bool
) -> dict[str, np.ndarray]:
    """Ray task: file paths → views (uint8, fixed shape), JPEG bytes for the device, errors."""
    paths = [str(p) for p in batch["path"]]
    decoded = [decode_item(p, size, n, detail, on_device) for p in paths]
    views = np.zeros((len(paths), size, size, 3), np.uint8)
    for i, d in enumerate(decoded):
        if d.view is not None:
            views[i] = d.view
    return {
        "path": np.array(paths, dtype=object),
        "view": views,
        "has_view": np.array([d.view is not None for d in decoded]),
        "jpeg": np.array([b"" if d.jpeg is None else d.jpeg.tobytes() for d in decoded], dtype=object),
        "error": np.array([d.error or "" for d in decoded], dtype=object),
    }


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
        out = {
            c: np.array([r[c] for r in rows], dtype=object if c in ("path", "label", "outcome", "error") else None)
            for c in COLUMNS
        }
        out["score_name"] = np.array([self.scorer.score_name] * len(rows), dtype=object)
        return out


#: Ray's switch between a single-machine instance on the loopback address and one reachable as a
#: cluster node; every Ray process reads it, so it is set in the environment they inherit
LOOPBACK_ENV = "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"


@contextlib.contextmanager
def ray_instance(address: str | None, num_cpus: int | None = None, object_store_mb: int = 512):
    """Join ``address``, or start a private instance bound to 127.0.0.1 (no dashboard), shut down
    on exit. An instance already running in this process is used as it is."""
    saved = os.environ.get(LOOPBACK_ENV)
    if not address:
        os.environ[LOOPBACK_ENV] = "0"
    ray = require_ray()
    started = False
    try:
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                from ray._private import ray_constants

                ray_constants.ENABLE_RAY_CLUSTER = False  # for a Ray imported before the variable was set
                ray.init(
                    address="local",
                    num_cpus=num_cpus,
                    include_dashboard=False,
                    log_to_driver=False,
                    object_store_memory=object_store_mb * 2**20,
                    configure_logging=False,
                )
            started = True
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = False  # ours counts rows written
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        yield ray
    finally:
        if started:
            ray.shutdown()
        if saved is None:
            os.environ.pop(LOOPBACK_ENV, None)
        else:
            os.environ[LOOPBACK_ENV] = saved


def ray_batches(
    spec: ModelSpec,
    scorer: Scorer,
    paths: Sequence[str],
    batch_size: int,
    actors: int = 1,
    gpus_per_actor: float = 0.0,
    cpus_per_actor: float = 1.0,
    address: str | None = None,
    num_cpus: int | None = None,
) -> Iterator[list[dict]]:
    """Rows of each scored batch, as Ray returns them (not in input order). ``scorer`` is the
    driver's own (for the view size and decoder settings; it scores nothing)."""
    with ray_instance(address, num_cpus) as ray:
        device = "cuda" if gpus_per_actor > 0 else "cpu"
        ds = ray.data.from_items([{"path": p} for p in paths])
        if scorer.model.detail != "native":
            # CPU actors: decoding takes the actor's CPUs (Ray fuses the two stages, nothing waits for a CPU
            # the model holds); GPU actors: decoding runs as separate one-CPU tasks beside them
            ds = ds.map_batches(
                decode_batch,
                batch_size=batch_size,
                batch_format="numpy",
                num_cpus=1 if gpus_per_actor > 0 else cpus_per_actor,
                fn_kwargs={
                    "size": scorer.size,
                    "n": scorer.n,
                    "detail": scorer.model.detail,
                    "on_device": scorer.decode_on_device,
                },
            )
        ds = ds.map_batches(
            RayScorer,
            batch_size=batch_size,
            batch_format="numpy",
            compute=ray.data.ActorPoolStrategy(size=actors),
            num_gpus=gpus_per_actor or None,
            num_cpus=cpus_per_actor,
            fn_constructor_kwargs={
                "spec": spec.to_dict(),
                "threshold": scorer.threshold,
                "decode": "device" if scorer.decode_on_device else "cpu",
                "device": device,
            },
        )
        for out in ds.iter_batches(batch_size=None, batch_format="numpy"):
            if len(out["path"]):
                scorer.score_name = str(out["score_name"][0])
            yield [
                {
                    "path": str(out["path"][i]),
                    "label": str(out["label"][i]),
                    "score": float(out["score"][i]),
                    "msp": float(out["msp"][i]),
                    "p_value": float(out["p_value"][i]),
                    "outcome": str(out["outcome"][i]),
                    "known": bool(out["known"][i]),
                    "error": str(out["error"][i]),
                }
                for i in range(len(out["path"]))
            ]
