"""hvl synth OUTDIR — generate the synthetic lesion benchmark (cartoons, not medical data)."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "synth",
        help="generate the synthetic benchmark (train/, test/, ood/, split.json)",
        description="Generate a deterministic benchmark of synthetic cartoon lesions (recipes in "
        "hvl_tools/synthetic.py): 4 known classes named after the ISIC-4 preset and 3 near-OOD classes. "
        "Recipe 1: large lesions, each OOD class mixes the looks of two known ones. Recipe 2 (the "
        "mechanism benchmark): small lesions with boundary halos, each OOD class a known one with another "
        "fine texture, lesion masks in OUTDIR/masks/. Not medical images.",
    )
    p.add_argument("outdir")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--train-per-class", type=int, default=60)
    p.add_argument("--test-per-class", type=int, default=25)
    p.add_argument("--ood-per-class", type=int, default=25)
    p.add_argument(
        "--recipe",
        type=int,
        choices=[1, 2],
        default=1,
        help="1 (default) or 2 (small lesions, halos, texture-only near-OOD, masks)",
    )
    p.add_argument("--size", type=int, help="image side in pixels (default 96 for recipe 1, 224 for recipe 2)")
    p.add_argument("--sheet", help="also write a contact sheet PNG (examples of every class)")
    p.add_argument("--no-progress", action="store_true")
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_tools.synthetic import contact_sheet, generate

    from .common import fail

    for k in ("train_per_class", "test_per_class", "ood_per_class"):
        if getattr(args, k) < 1:
            fail(f"--{k.replace('_', '-')} must be >= 1")
    if args.size is not None and args.size < 32:
        fail("--size must be >= 32")
    info = generate(
        args.outdir,
        seed=args.seed,
        train_per_class=args.train_per_class,
        test_per_class=args.test_per_class,
        ood_per_class=args.ood_per_class,
        size=args.size,
        progress=not args.no_progress,
        recipe=args.recipe,
    )
    if args.sheet:
        contact_sheet(args.sheet, size=args.size, seed=args.seed, recipe=args.recipe)
    print(json.dumps(info["counts"]), file=sys.stderr)
    print(f"wrote {args.outdir} (split file {args.outdir}/split.json)")
    return 0
