"""``--engine local``: one process drives the model; decode workers (torch DataLoader) read the
files and make the views in parallel, batches arrive pinned on CUDA."""

from __future__ import annotations

import functools
import os
from collections.abc import Iterator, Sequence

import torch

from .scorer import Batch, Scorer, collate


def default_workers(device: torch.device) -> int:
    """Decode processes. With a GPU: all cores but one (at most 8), so decoding keeps up with the
    device. On the CPU: none. The encoder's threads use every core there, so a decode process
    would only take a core from them (and seconds to start), while decoding in-line costs a few
    percent of the encoder's time."""
    if device.type != "cuda":
        return 0
    return max(0, min(8, (os.cpu_count() or 1) - 1))


class _Files(torch.utils.data.Dataset):
    def __init__(self, paths: Sequence[str], decode):
        self.paths, self.decode = list(paths), decode

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i):
        return self.paths[i], self.decode(self.paths[i])


def _collate(items, size: int) -> Batch:
    return collate([p for p, _ in items], [d for _, d in items], size)


def local_batches(
    scorer: Scorer, paths: Sequence[str], batch_size: int, workers: int | None = None
) -> Iterator[list[dict]]:
    """Rows of each batch, in input order."""
    from .views import decode_item

    m = scorer.model
    workers = default_workers(m.device) if workers is None else workers
    decode = functools.partial(
        decode_item, size=scorer.size, n=scorer.n, detail=m.detail, on_device=scorer.decode_on_device
    )
    loader = torch.utils.data.DataLoader(
        _Files(paths, decode),
        batch_size=batch_size,
        shuffle=False,
        num_workers=workers,
        collate_fn=functools.partial(_collate, size=scorer.size),
        pin_memory=m.device.type == "cuda",
        prefetch_factor=4 if workers else None,
        persistent_workers=False,
    )
    for batch in loader:
        yield scorer.score(batch)
