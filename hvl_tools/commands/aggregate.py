"""hvl aggregate — mean ± std of metrics.json files over repeated runs (seeds, folds)."""

from __future__ import annotations

import json
from pathlib import Path


def register(sub) -> None:
    p = sub.add_parser(
        "aggregate",
        help="mean ± std of metrics.json files (seeds, folds) as a markdown table",
        description="Find every metrics.json under the given folders, group them (by their 'variant' "
        "or 'method_name' field, or by top folder with --by folder) and print mean ± sample "
        "std of accuracy, AUROC, FPR95, AUPR.",
    )
    p.add_argument("dirs", nargs="+", help="folders (searched recursively) or metrics.json files")
    p.add_argument("--by", choices=["variant", "folder", "all"], default="variant")
    p.add_argument("--out", help="also write the table (markdown) here, and a JSON next to it")
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_tools.aggregate import aggregate_table, find_metrics

    from .common import fail

    try:
        found = find_metrics(args.dirs)
    except ValueError as e:
        fail(str(e))
    if not found:
        fail(f"no metrics.json under {' '.join(args.dirs)}")
    groups: dict[str, list[dict]] = {}
    for path, m in found:
        if args.by == "all":
            key = "all"
        elif args.by == "folder":
            key = path.parent.name
        else:
            key = m.get("variant") or m.get("method_name") or m.get("method") or "runs"
        groups.setdefault(key, []).append(m)
    try:
        table, summary = aggregate_table(groups)
    except ValueError as e:
        fail(str(e))
    convention = next(iter(groups.values()))[0].get("convention", "exact")
    table = f"Metrics: `{convention}` convention.\n\n" + table
    print(table)
    if args.out:
        Path(args.out).write_text(table)
        Path(args.out).with_suffix(".json").write_text(json.dumps(summary, indent=2) + "\n")
    return 0
