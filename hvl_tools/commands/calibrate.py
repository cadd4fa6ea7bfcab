"""hvl calibrate — set a checkpoint's threshold at 95% ID TPR on validation ID images (HVL_SPEC §7)."""

from __future__ import annotations

import sys

from hvl_core.scores import SCORES

from ._train_common import add_cache_args, cache_from_args, feats, guard


def register(sub) -> None:
    p = sub.add_parser(
        "calibrate",
        help="calibrate a checkpoint's MSP threshold on validation ID images",
        description="Compute t95, the largest MSP that at least 95% of the validation ID images reach, and store "
        "it in the checkpoint (config.json 'threshold'; the demo's slider starts there). The images need "
        "no labels (class sub-folders or a flat folder). Rewrites the checkpoint atomically, or writes "
        "a calibrated copy to --out.",
    )
    p.add_argument("--checkpoint", required=True, help="local checkpoint folder")
    p.add_argument("--val-dir", required=True, help="validation ID images (not used for training)")
    p.add_argument("--tpr", type=float, default=0.95, help="target ID acceptance rate (default 0.95)")
    p.add_argument(
        "--score",
        choices=list(SCORES),
        help="calibrate for this decision score (default: the checkpoint's); it is saved with the threshold",
    )
    p.add_argument("--out", help="write the calibrated checkpoint here instead of in place")
    p.add_argument("--device", default="auto")
    add_cache_args(p)
    p.set_defaults(func=run)


def run(args) -> int:
    return guard(lambda: _run(args))


def _run(args) -> int:
    from pathlib import Path

    from hvl_core import load_model
    from hvl_tools.calibrate import recalibrate_checkpoint
    from hvl_tools.data import DataReport, folder_items

    from .common import fail

    if not 0 < args.tpr <= 1:
        fail(f"--tpr must be in (0, 1], got {args.tpr}")
    if not Path(args.checkpoint).exists():
        fail(f"{args.checkpoint}: no such checkpoint folder (calibration rewrites a local checkpoint)")
    model = load_model(checkpoint=args.checkpoint, device=args.device)
    items, _ = folder_items(args.val_dir, list(model.classes.names), DataReport(), "val")
    fs = feats(model, items, args, cache_from_args(args), "encoding val")
    if len(fs) == 0:
        fail("no readable validation images")
    target, cal = recalibrate_checkpoint(
        args.checkpoint, model, fs, out=args.out, tpr=args.tpr, score=args.score, note=Path(args.val_dir).name
    )
    print(
        f"threshold {cal['threshold']:.4f}: {cal['val_tpr']:.1%} of {cal['n_val']} validation images have MSP >= it "
        f"(target {args.tpr:.0%}); saved {target}",
        file=sys.stderr,
    )
    print(f"{cal['threshold']:.6f}")
    return 0
