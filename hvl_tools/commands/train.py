"""hvl train — train the HVL head on a labelled image folder or a split file, calibrate, save."""

from __future__ import annotations

import json
import sys
from pathlib import Path

from ._train_common import (
    add_cache_args,
    add_head_args,
    add_train_args,
    cache_from_args,
    feats,
    guard,
    head_options,
    train_config,
)
from .common import add_model_args, backbone_from_args, fail


def register(sub) -> None:
    p = sub.add_parser(
        "train",
        help="train the HVL head (frozen encoder, cached features) and calibrate its threshold",
        description="Train the HVL head on cached crop embeddings with the paper's settings (Adam, lr 0.002, "
        "batch 32, 100 epochs, cosine annealing, K=4, n=2), hold out --val-fraction of each class "
        "to calibrate the threshold at 95% ID TPR, and write an atomic safetensors checkpoint to "
        "--out. Resumable with --resume. Class names come from --classes/--preset, else the split "
        "file, else the train folder's sub-folders.",
    )
    d = p.add_argument_group("data")
    d.add_argument("--train-dir", help="folder with one sub-folder of images per known class")
    d.add_argument("--split", help="split file (JSON) or a shipped split name (isic4, skin40, nct-crc-task1, ...)")
    d.add_argument("--data-root", help="where the split's class folders are")
    d.add_argument("--fold", type=int, help="test fold of a k-fold split (0..k-1)")
    d.add_argument("--task", help="task of a multi-task split (e.g. NCT-CRC task)")
    d.add_argument(
        "--val-fraction",
        type=float,
        default=0.1,
        help="fraction of each class held out to calibrate the threshold (default 0.1; 0: none)",
    )
    d.add_argument("--val-dir", help="explicit validation (ID) folder for calibration instead of --val-fraction")
    d.add_argument(
        "--flip",
        action="store_true",
        help="add horizontally and vertically flipped copies (cached as extra views) to the training set",
    )
    add_model_args(p, default_preset=None, default_backbone="auto")
    from hvl_tools.leakage import add_overlap_args

    add_overlap_args(p)
    add_head_args(p)
    add_train_args(p)
    p.add_argument(
        "--out",
        required=True,
        help="checkpoint folder to write (model.safetensors, config.json, README.md, "
        "training.json, loss.png, train_state/)",
    )
    p.add_argument("--resume", action="store_true", help="continue from OUT/train_state (same data and settings)")
    p.add_argument(
        "--evaluate",
        action="store_true",
        help="after training, evaluate on the split's test and OOD images into OUT/eval",
    )
    add_cache_args(p)
    p.set_defaults(func=run)


def _data(args):
    """(items or None, plan or None, class names or None, their folders or None, preset, report)."""
    from hvl_tools.data import (
        DataReport,
        class_folders,
        class_name_from_folder,
        norm_name,
        plan_split,
    )

    if bool(args.train_dir) == bool(args.split):
        fail("give either --train-dir DIR or --split FILE --data-root DIR")
    if args.split:
        if not args.data_root:
            fail("--split needs --data-root (the folder its class folders are in)")
        plan = plan_split(args.split, args.data_root, fold=args.fold, task=args.task)
        return plan.train, plan, plan.class_names, plan.class_folders, plan.preset, plan.report
    root = Path(args.train_dir)
    if not root.is_dir():
        fail(f"{root}: no such folder")
    if args.checkpoint or args.classes or args.preset:
        return None, None, None, None, None, DataReport()  # the model fixes the classes; folders match by name
    subs = class_folders(root)
    if not subs:
        fail(f"{root}: no class sub-folders (the training folder needs one sub-folder of images per class)")
    names = [class_name_from_folder(p.name) for p in subs]
    if len({norm_name(n) for n in names}) != len(names):
        fail(f"{root}: sub-folders {[p.name for p in subs]} collide when compared case-insensitively")
    return None, None, names, [p.name for p in subs], None, DataReport()


def run(args) -> int:
    return guard(lambda: _run(args))


def _run(args) -> int:
    from hvl_core import load_model
    from hvl_core.backbones import create_backbone
    from hvl_core.model import resolve_classes
    from hvl_tools.data import align_labels, class_set_for, folder_items, labelled_items, norm_name, split_validation
    from hvl_tools.leakage import build_model, check_overlap, parse_negatives
    from hvl_tools.train import fit

    items, plan, names, folders, preset, report = _data(args)
    if args.checkpoint and (args.classes or args.preset):
        fail("--checkpoint fixes the classes; drop --classes/--preset")
    classes = None
    if args.classes or args.preset:
        try:
            classes = resolve_classes(args.classes, args.preset)
        except ValueError as e:
            fail(str(e))
    elif names is not None and not args.checkpoint:
        classes = class_set_for(names, preset)
    opts = head_options(args)
    negatives = parse_negatives(args.negatives)
    if args.checkpoint and negatives != "auto":
        fail("--checkpoint fixes the negative classes; drop --negatives")
    try:
        cfg = train_config(args)
        if args.checkpoint or negatives == "auto":
            model = load_model(
                backbone=backbone_from_args(args),
                classes=classes,
                checkpoint=args.checkpoint,
                device=args.device,
                detail=args.detail,
                **opts,
            )
        else:
            model = build_model(
                create_backbone(backbone_from_args(args)),
                resolve_classes(classes, None),
                negatives,
                device=args.device,
                detail=args.detail,
                **opts,
            )
    except ValueError as e:
        fail(str(e))
    if model.backbone.note:  # e.g. auto fell back to the offline backbone
        print(f"note: backbone {model.backbone.name}: {model.backbone.note}", file=sys.stderr)
    if plan is not None:
        check_overlap(model.backbone, plan.ood_class_names, model.classes.negatives, allow=args.allow_overlap)
    model_names = list(model.classes.names)
    if plan is not None:  # the split's classes must be the model's (any order): re-index labels
        align_labels(plan.train + plan.test, names, model_names)
    elif items is None:  # --train-dir
        by_folder = (
            folders
            if names is not None and [norm_name(n) for n in names] == [norm_name(n) for n in model_names]
            else None
        )
        items = labelled_items(args.train_dir, model_names, by_folder, report, "train")
    if not 0 <= args.val_fraction < 1:
        fail(f"--val-fraction must be in [0, 1), got {args.val_fraction}")
    if args.val_dir:
        train_items = items
        val_items, _ = folder_items(args.val_dir, model_names, report, "val")
    else:
        train_items, val_items = split_validation(items, args.val_fraction)
    progress = not args.no_progress
    say = (lambda m: print(m, file=sys.stderr)) if progress else (lambda m: None)
    say(f"backbone: {model.backbone.describe()} on {model.device}; classes: {', '.join(model_names)}")
    where = ""
    if plan is not None:
        where = (
            f"; split {plan.name}"
            + (f" fold {plan.fold}" if plan.fold is not None else "")
            + (f" task {plan.task}" if plan.task else "")
        )
    say(f"data: {len(train_items)} training, {len(val_items)} validation images{where}")
    for note in report.notes:
        say(f"note: {note}")
    cache = cache_from_args(args)
    views = ("orig", "hflip", "vflip") if args.flip else ("orig",)
    train_fs = feats(model, train_items, args, cache, "encoding train", views)
    val_fs = feats(model, val_items, args, cache, "encoding val") if val_items else None
    if len(train_fs) == 0:
        fail("no readable training images")
    for i, c in enumerate(model_names):
        if not (train_fs.labels == i).any():
            fail(f"class {c!r} has no readable training image")
    skipped = train_fs.skipped + (val_fs.skipped if val_fs else [])

    def name(p):  # the checkpoint may be published: folder and file names only, no local paths
        return Path(p).name if p else None

    extra = {
        "data": {
            "train_dir": name(args.train_dir),
            "split": plan.name if plan else None,
            "fold": args.fold,
            "task": args.task,
            "val_fraction": None if args.val_dir else args.val_fraction,
            "val_dir": name(args.val_dir),
            "flip": args.flip,
            "n_skipped": len(skipped),
            "skipped": [{"file": name(p), "reason": r} for p, r in skipped[:100]],
        }
    }
    compile_step = {None: False, "default": True}.get(args.compile_step, args.compile_step)
    out, summary = fit(
        model,
        train_fs,
        val_fs,
        cfg,
        args.out,
        resume=args.resume,
        progress=progress,
        extra=extra,
        compile_step=compile_step,
    )
    cal = summary.get("calibration")
    final = summary.get("final") or {}
    print(
        f"saved {out} (epoch {final.get('epoch')}: L_ID {final.get('loss_id', float('nan')):.4f}, "
        f"L_OOD {final.get('loss_ood', float('nan')):.4f}; training accuracy {summary['train_accuracy']:.3f})"
    )
    if cal:
        print(
            f"threshold {cal['threshold']:.4f}: 95% of {cal['n_val']} validation ID images have MSP >= it "
            f"(validation accuracy {cal.get('val_accuracy', float('nan')):.3f})"
        )
    else:
        print("no validation images: the checkpoint has no calibrated threshold (hvl calibrate can add one)")
    if args.evaluate:
        if plan is None:
            fail("--evaluate needs --split (its test and OOD images)")
        from hvl_tools.evaluate import evaluate_features

        id_fs = feats(model, plan.test, args, cache, "encoding test")
        ood_fs = feats(model, plan.ood, args, cache, "encoding OOD") if plan.ood else None
        m = evaluate_features(
            model,
            id_fs,
            ood_fs,
            Path(args.out) / "eval",
            info={"split": plan.name, "fold": plan.fold, "task": plan.task, "checkpoint": str(out)},
        )
        print(json.dumps({k: m.get(k) for k in ("accuracy", "auroc", "fpr95", "aupr", "n_id", "n_ood")}))
    return 0
