"""Aggregation of repeated runs (seeds, folds): mean ± sample std of each metric."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from . import metrics as M
from .reports import markdown_table


def aggregate(results: Sequence[dict], keys=("accuracy", "auroc", "fpr95", "aupr", "aupr_out")) -> dict:
    """Mean ± sample std (n−1) of each metric over repeated runs (seeds, folds)."""
    out = {}
    for k in keys:
        mean, std, n = M.mean_std(r.get(k) for r in results)
        out[k] = {"mean": mean, "std": std, "n": n}
    return out


def find_metrics(dirs: Sequence[str | os.PathLike]) -> list[tuple[Path, dict]]:
    found = []
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(d.rglob("metrics.json"))
        for f in files:
            try:
                found.append((f, json.loads(f.read_text())))
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"{f}: not a readable metrics.json ({e})") from None
    return found


def convention_of(results) -> str:
    """The one metric convention of a set of metrics dicts (files written before conventions
    existed are ``exact``); mixing conventions in one table is refused (HVL_SPEC §7)."""
    found = {r.get("convention", M.DEFAULT_CONVENTION) for r in results}
    if len(found) > 1:
        raise ValueError(f"these results use different metric conventions {sorted(found)}; aggregate each separately")
    return found.pop() if found else M.DEFAULT_CONVENTION


def aggregate_table(groups: dict[str, list[dict]], titles: dict[str, str] | None = None) -> tuple[str, dict]:
    """``{name: [metrics, ...]}`` → (markdown table with mean ± std, JSON-ready summary). All
    results must share one metric convention (``convention_of``)."""
    convention_of([r for results in groups.values() for r in results])
    rows, summary = [], {}
    for name, results in groups.items():
        agg = aggregate(results)
        summary[name] = {**agg, "runs": len(results)}
        rows.append(
            {
                "name": (titles or {}).get(name, name) + (f" (n={len(results)})" if len(results) > 1 else ""),
                **{k: (v["mean"], v["std"] if v["n"] > 1 else None) for k, v in agg.items()},
            }
        )
    return markdown_table(rows), summary
