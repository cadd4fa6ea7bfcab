"""hvl compare — baselines, HVL and the Table 2 ablations on one split, over folds and seeds."""

from __future__ import annotations

import sys
from pathlib import Path

from ._train_common import (
    add_cache_args,
    add_head_args,
    add_train_args,
    cache_from_args,
    guard,
    head_options,
    train_config,
)


def register(sub) -> None:
    from hvl_tools.config import CONVENTIONS, DEFAULT_CONVENTION, MCM_TAU, VARIANTS
    from hvl_tools.leakage import add_overlap_args

    p = sub.add_parser(
        "compare",
        help="train/evaluate MCM, zero-shot HVL, the six Table 2 rows and Fig. 2's ablation; mean ± std",
        description="On each fold/task of a split file: encode once (cached), evaluate the zero-shot baselines "
        "(MCM, untrained HVL), train the six rows of the paper's Table 2 (full HVL is row 6) and Fig. 2's "
        "no-propagation ablation for each seed, and write OUT/summary.md|json (mean ± sample std) and "
        "OUT/roc.png. Refuses a backbone that already knows the split's OOD classes.",
    )
    p.add_argument("--split", required=True, help="split file or shipped split name")
    p.add_argument("--data-root", required=True)
    p.add_argument("--folds", type=int, nargs="*", help="folds to run (default: all of a k-fold split)")
    p.add_argument("--tasks", nargs="*", help="tasks to run (default: all of a multi-task split)")
    p.add_argument("--backbone", default="auto")
    p.add_argument("--device", default="auto")
    p.add_argument("--detail", choices=["upsample", "native"], default="upsample")
    p.add_argument("--n", type=int)
    p.add_argument("--k", type=int)
    add_head_args(p)
    p.add_argument("--variants", nargs="+", default=list(VARIANTS), choices=list(VARIANTS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument(
        "--mcm-tau",
        type=float,
        default=MCM_TAU,
        help=f"temperature of the MCM baseline (default {MCM_TAU:g}, MCM's own; 0.01 = CLIP's logit scale)",
    )
    p.add_argument(
        "--metric-convention",
        choices=CONVENTIONS,
        default=DEFAULT_CONVENTION,
        help="exact (HVL_SPEC §7, default), mcm (MCM's code), openood (OOD positive)",
    )
    add_overlap_args(p)
    add_train_args(p, full=False)
    p.add_argument("--val-fraction", type=float, default=0.1)
    p.add_argument("--out", required=True)
    add_cache_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    return guard(lambda: _run(args))


def _run(args) -> int:
    from hvl_tools.compare import run_benchmark
    from hvl_tools.data import load_split, plan_split, split_folds
    from hvl_tools.leakage import parse_negatives

    spec = load_split(args.split)
    tasks = args.tasks or ([t["name"] for t in spec["tasks"]] if "tasks" in spec else [None])
    k = split_folds(spec)
    folds = args.folds if args.folds else (list(range(k)) if spec["partition"]["rule"] == "kfold-hash" else [None])
    plans = [plan_split(spec, args.data_root, fold=f, task=t) for t in tasks for f in folds]
    cfg = train_config(args)
    run_benchmark(
        args.backbone,
        plans,
        args.out,
        seeds=args.seeds,
        variants=args.variants,
        train_config=cfg,
        val_fraction=args.val_fraction,
        head_options=head_options(args),
        cache=cache_from_args(args),
        device=args.device,
        detail=args.detail,
        progress=not args.no_progress,
        encode_kw={"batch_size": args.encode_batch_size, "workers": args.workers, "strict": args.strict},
        negatives=parse_negatives(args.negatives),
        allow_overlap=args.allow_overlap,
        mcm_tau=args.mcm_tau,
        convention=args.metric_convention,
    )
    print((Path(args.out) / "summary.md").read_text())
    print(f"wrote {args.out}/summary.md, summary.json, roc.png and per-run reports", file=sys.stderr)
    return 0
