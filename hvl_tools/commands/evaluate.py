"""hvl evaluate — ID accuracy, AUROC, FPR95, AUPR on ID and OOD image folders (HVL_SPEC §7)."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._train_common import (
    add_cache_args,
    add_head_args,
    cache_from_args,
    feats,
    guard,
    head_options,
)
from .common import add_model_args, fail, model_from_args


def register(sub) -> None:
    from hvl_tools.config import CONVENTIONS, DEFAULT_CONVENTION, MCM_TAU

    p = sub.add_parser(
        "evaluate",
        help="evaluate a model on ID and OOD images (accuracy, AUROC, FPR95, AUPR)",
        description="Score ID images (class sub-folders give accuracy; a flat folder gives scores only) and OOD "
        "images, and write OUT/metrics.json, OUT/scores.csv, OUT/roc.png, OUT/hist.png and "
        "OUT/report.md. Without --checkpoint the head is untrained (zero-shot HVL); --method mcm "
        "scores with the single-scale softmax (the MCM baseline). Class names come from the "
        "checkpoint, --preset/--classes, else the ID folder's sub-folders.",
    )
    d = p.add_argument_group("data")
    d.add_argument("--id-dir", help="ID test images: one sub-folder per known class, or a flat folder")
    d.add_argument("--ood-dir", help="OOD images (searched recursively)")
    d.add_argument("--split", help="instead of the folders: a split file's test and OOD images")
    d.add_argument("--data-root", help="where the split's class folders are")
    d.add_argument("--fold", type=int)
    d.add_argument("--task")
    add_model_args(p, default_preset=None, default_backbone="auto")
    add_head_args(p, inference_only=True)
    p.add_argument(
        "--method",
        choices=["hvl", "mcm"],
        default="hvl",
        help="hvl: fused p_ID (default); mcm: scale-0 softmax only (zero-shot MCM baseline), at "
        f"MCM's own temperature T = {MCM_TAU:g} unless --tau says otherwise",
    )
    p.add_argument(
        "--metric-convention",
        choices=CONVENTIONS,
        default=DEFAULT_CONVENTION,
        help="exact (HVL_SPEC §7, default), mcm (MCM's code), openood (OOD positive)",
    )
    p.add_argument(
        "--allow-overlap",
        action="store_true",
        help="evaluate even when the model knows an OOD class (as a negative or a training class of its "
        "backbone); the report is then marked NOT A FAIR BENCHMARK (default: refuse)",
    )
    p.add_argument(
        "--threshold",
        type=float,
        help="threshold for the known/unknown column (default: the checkpoint's calibrated one, else 0.5)",
    )
    p.add_argument("--out", required=True, help="output folder")
    p.add_argument("--no-plots", action="store_true")
    add_cache_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    return guard(lambda: _run(args))


def _run(args) -> int:
    from hvl_tools.config import MCM_TAU
    from hvl_tools.data import (
        DataReport,
        class_folders,
        class_name_from_folder,
        folder_items,
        ood_items,
        plan_split,
    )
    from hvl_tools.evaluate import evaluate_features
    from hvl_tools.leakage import check_overlap

    if args.method == "mcm" and args.tau is None:
        args.tau = MCM_TAU
    report = DataReport()
    plan = None
    if args.split:
        if args.id_dir or args.ood_dir:
            fail("give either --split or --id-dir/--ood-dir")
        if not args.data_root:
            fail("--split needs --data-root")
        plan = plan_split(args.split, args.data_root, fold=args.fold, task=args.task)
        if not (args.checkpoint or args.preset or args.classes):
            from hvl_tools.data import class_set_for

            args.classes = class_set_for(plan.class_names, plan.preset)  # load_model takes a ClassSet too
    else:
        if not args.id_dir:
            fail("give --id-dir DIR (and usually --ood-dir DIR), or --split FILE --data-root DIR")
        if not Path(args.id_dir).is_dir():
            fail(f"{args.id_dir}: no such folder")
        if not (args.checkpoint or args.preset or args.classes):
            subs = class_folders(Path(args.id_dir))
            if not subs:
                fail(
                    f"{args.id_dir} has no class sub-folders: name the classes with --checkpoint, --preset or --classes"
                )
            args.classes = [class_name_from_folder(s.name) for s in subs]
    model = model_from_args(args)
    names = list(model.classes.names)
    if plan is not None:
        from hvl_tools.data import align_labels

        align_labels(plan.test, plan.class_names, names)
        id_list, ood_list, labelled = plan.test, plan.ood, True
    else:
        id_list, labelled = folder_items(args.id_dir, names, report, "id")
        ood_list = ood_items(args.ood_dir, report, "ood") if args.ood_dir else []
    ood_names = (
        plan.ood_class_names
        if plan is not None
        else sorted({class_name_from_folder(it.group) for it in ood_list if it.group})
    )
    overlap = check_overlap(model.backbone, ood_names, model.classes.negatives, allow=args.allow_overlap)
    if not args.no_progress:
        print(
            f"backbone: {model.backbone.describe()} on {model.device}; classes: {', '.join(names)}; "
            f"{len(id_list)} ID ({'labelled' if labelled else 'unlabelled'}), {len(ood_list)} OOD images",
            file=sys.stderr,
        )
    for note in report.notes:
        print(f"note: {note}", file=sys.stderr)
    cache = cache_from_args(args)
    id_fs = feats(model, id_list, args, cache, "encoding ID")
    ood_fs = feats(model, ood_list, args, cache, "encoding OOD") if ood_list else None
    if len(id_fs) == 0:
        fail("no readable ID images")
    info = {
        "id_dir": args.id_dir,
        "ood_dir": args.ood_dir,
        "split": plan.name if plan else None,
        "fold": args.fold,
        "task": args.task,
        "labelled": labelled,
        "notes": report.notes,
        "overlap": overlap,
    }
    m = evaluate_features(
        model,
        id_fs,
        ood_fs,
        args.out,
        method=args.method,
        threshold=args.threshold,
        overrides=head_options(args, inference_only=True),
        info=info,
        plots=not args.no_plots,
        convention=args.metric_convention,
    )
    keys = ("accuracy", "auroc", "fpr95", "aupr", "n_id", "n_ood")
    print(json.dumps({k: m.get(k) for k in keys}))
    if not args.ood_dir and plan is None:
        print("no --ood-dir: AUROC/FPR95/AUPR need OOD images (null)", file=sys.stderr)
    print(
        f"wrote {Path(args.out) / 'metrics.json'}, scores.csv, report.md"
        + ("" if args.no_plots else ", roc.png, hist.png"),
        file=sys.stderr,
    )
    return 0
