"""``hvl score``: screen an archive — every image of folders, globs or a CSV manifest gets the
model's decision, written to ``OUT/scores.csv`` (path, label, score, msp, known, error) batch by
batch, then ``summary.json`` and a histogram ``scores.png``.

Engines: ``local`` (``local.py``: DataLoader decode workers, one model) and ``ray``
(``ray_engine.py``: Ray Data tasks and actors, one machine or a cluster). Both feed
``Scorer.score`` (``scorer.py``), so they give the same scores.

Resumable: ``run.json`` records what the scores depend on; a rerun with the same model skips the
files already in scores.csv, and every batch is fsync'd, so ``kill -9`` loses at most the
batches in flight.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import Sequence
from pathlib import Path

from hvl_core.files import atomic_write

from .inputs import InputError, collect_inputs
from .results import HISTOGRAM, SUMMARY, ResumeError, ScoresFile, check_run, plot_scores, summarize
from .scorer import COLUMNS, ModelSpec, Scorer

ENGINES = ("local", "ray")

__all__ = ["COLUMNS", "ENGINES", "InputError", "ModelSpec", "ResumeError", "Scorer", "collect_inputs", "score_archive"]


def score_archive(
    inputs: Sequence[str],
    out_dir: str | os.PathLike,
    spec: ModelSpec,
    engine: str = "local",
    batch_size: int = 16,
    workers: int | None = None,
    decode: str = "auto",
    progress: bool = True,
    model=None,
    ray_options: dict | None = None,
    limit_batches: int | None = None,
    fdr: float = 0.05,
) -> dict:
    """Score every image of ``inputs`` into ``out_dir``; returns the summary.

    ``model``: an already built model for ``spec`` (the local engine uses it; Ray actors build
    their own from ``spec``). ``ray_options``: ``address``, ``actors``, ``gpus_per_actor``,
    ``cpus_per_actor``, ``num_cpus``. ``limit_batches``: stop after that many batches (tests)."""
    if engine not in ENGINES:
        raise ValueError(f"engine must be one of {ENGINES}, got {engine!r}")
    if batch_size < 1:
        raise ValueError(f"batch size must be >= 1, got {batch_size}")
    paths = collect_inputs(list(inputs))
    if not paths:
        raise InputError("nothing to score: the inputs name no images")
    if engine == "ray":
        from .ray_engine import require_ray

        require_ray()  # before loading anything
    opts = dict(ray_options or {})
    if model is None:
        model = spec.load("cpu" if engine == "ray" else None)
    scorer = Scorer(model, spec.threshold, decode)
    identity = scorer.identity()
    if engine == "ray" and opts.get("gpus_per_actor"):
        identity.update(precision="cuda autocast", decoder="device" if decode in ("auto", "device") else "cpu")
        scorer.decode_on_device = identity["decoder"] == "device" and model.detail == "upsample"
    out = Path(out_dir)
    check_run(out, identity)
    t0 = time.perf_counter()
    with ScoresFile(out) as sink:
        todo = [p for p in paths if p not in sink.done]
        skipped = len(paths) - len(todo)
        bar = None
        if progress:
            from tqdm import tqdm

            bar = tqdm(total=len(paths), initial=skipped, desc="scoring", unit="img", dynamic_ncols=True)
        done_now = 0
        if todo:
            if engine == "local":
                from .local import local_batches

                batches = local_batches(scorer, todo, batch_size, workers)
            else:
                from .ray_engine import ray_batches

                batches = ray_batches(spec, scorer, todo, batch_size, **opts)
            for b, rows in enumerate(batches):
                sink.append(rows)
                done_now += len(rows)
                if bar is not None:
                    bar.update(len(rows))
                if limit_batches is not None and b + 1 >= limit_batches:
                    batches.close()
                    break
        if bar is not None:
            bar.close()
        rows = [sink.done[p] for p in paths if p in sink.done]
    seconds = time.perf_counter() - t0
    run = {
        "engine": engine,
        "inputs": len(paths),
        "skipped_as_done": skipped,
        "scored_now": done_now,
        "seconds": round(seconds, 3),
        "images_per_s": round(done_now / seconds, 3) if done_now else None,
        "batch_size": batch_size,
    }
    summary = summarize(rows, identity, scorer.score_name, run, fdr)
    atomic_write(out / SUMMARY, json.dumps(summary, indent=1) + "\n")
    plot_scores(out / HISTOGRAM, rows, scorer.threshold, scorer.score_name)
    return summary
