"""Options and helpers shared by train / evaluate / calibrate / benchmark (not a sub-command)."""

from __future__ import annotations

import argparse
import sys

from .common import fail

#: HVLConfig fields settable from the command line: (flag, dest, argparse kwargs)
HEAD_FLAGS = [
    ("--tau", "tau", dict(type=float, help="softmax temperature (default 0.01)")),
    (
        "--renormalize",
        "renormalize",
        dict(action="store_const", const=True, help="divide each scale's kept-patch sum by the kept count (option)"),
    ),
    (
        "--no-entropy-filter",
        "entropy_filter",
        dict(action="store_const", const=False, help="keep every patch (no entropy filter)"),
    ),
    ("--no-fusion", "fusion", dict(action="store_const", const=False, help="ablation: no cross-scale fusion")),
    ("--no-ood-loss", "use_ood_loss", dict(action="store_const", const=False, help="ablation: train without L_OOD")),
    ("--lambda-ood", "lambda_ood", dict(type=float, help="weight of L_OOD (default 1)")),
    (
        "--pseudo-ood-selection",
        "pseudo_ood_selection",
        dict(
            choices=["entropy_gain", "entropy"],
            help="pseudo-OOD patches by entropy gain (paper) or by entropy (ablation: background selection)",
        ),
    ),
    (
        "--no-propagate",
        "propagate",
        dict(action="store_const", const=False, help="ablation: no lower-scale propagation of pseudo-OOD embeddings"),
    ),
    ("--similarity", "similarity", dict(choices=["cosine", "linear"], help="cosine (paper) or linear logits")),
]


def add_train_args(p: argparse.ArgumentParser, full: bool = True) -> None:
    """Optimisation options; defaults are ``TrainConfig``'s (the paper's)."""
    from hvl_tools.config import TrainConfig

    d = TrainConfig()
    o = p.add_argument_group("optimisation (defaults: the paper's)")
    o.add_argument("--epochs", type=int, default=d.epochs, help=f"default {d.epochs}")
    o.add_argument("--batch-size", type=int, default=d.batch_size, help=f"default {d.batch_size}")
    o.add_argument("--lr", type=float, default=d.lr, help=f"Adam learning rate (default {d.lr})")
    if full:
        o.add_argument("--weight-decay", type=float, default=d.weight_decay, help=f"default {d.weight_decay}")
        o.add_argument(
            "--scheduler",
            choices=["cosine", "constant"],
            default=d.scheduler,
            help=f"default {d.scheduler} (annealed per epoch to 0)",
        )
        o.add_argument("--seed", type=int, default=d.seed, help=f"default {d.seed}")
        o.add_argument(
            "--compile-step",
            nargs="?",
            const="default",
            choices=["default", "reduce-overhead"],
            help="run the training step through torch.compile (reduce-overhead: CUDA graphs too); "
            "pays off on a GPU, the first steps compile",
        )


def train_config(args):
    """``TrainConfig`` from the options ``add_train_args`` added (the others keep their defaults)."""
    from hvl_tools.config import TrainConfig

    names = [f.name for f in __import__("dataclasses").fields(TrainConfig)]
    return TrainConfig(**{k: getattr(args, k) for k in names if getattr(args, k, None) is not None})


def add_head_args(p: argparse.ArgumentParser, inference_only: bool = False) -> None:
    g = p.add_argument_group("HVL head options" + (" (inference)" if inference_only else " and ablations"))
    for flag, dest, kw in HEAD_FLAGS:
        if inference_only and dest not in ("tau", "renormalize", "entropy_filter"):
            continue
        g.add_argument(flag, dest=dest, default=None, **kw)


def head_options(args, inference_only: bool = False) -> dict:
    keys = [d for _, d, _ in HEAD_FLAGS]
    if inference_only:
        keys = ["tau", "renormalize", "entropy_filter", "score"]
    else:
        keys += ["n", "k", "score"]
    return {k: getattr(args, k) for k in keys if getattr(args, k, None) is not None}


def add_cache_args(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("feature cache and encoding")
    g.add_argument("--cache-dir", help="feature cache folder (default $HVL_CACHE_DIR or .hvl_cache/ here)")
    g.add_argument("--no-cache", action="store_true", help="encode every image, write no cache")
    g.add_argument("--encode-batch-size", type=int, default=16, help="images per encoder call (default 16)")
    g.add_argument(
        "--workers", type=int, default=None, help="crop-making worker processes (default 0 on CPU, up to 8 on CUDA)"
    )
    g.add_argument(
        "--strict", action="store_true", help="stop at the first unreadable image (default: skip it, count it, list it)"
    )
    g.add_argument("--no-progress", action="store_true", help="no progress bars or per-epoch lines")


def cache_from_args(args):
    from hvl_tools.features import FeatureCache

    return FeatureCache(args.cache_dir, enabled=not args.no_cache)


def feats(model, items, args, cache, desc: str, views=("orig",)):
    """Encode items (through the cache), reporting skipped images on stderr."""
    from hvl_core.images import ImageError
    from hvl_tools.features import features_of_items

    try:
        fs = features_of_items(
            model,
            items,
            cache,
            views=views,
            batch_size=args.encode_batch_size,
            workers=args.workers,
            progress=not args.no_progress,
            desc=desc,
            strict=args.strict,
        )
    except ImageError as e:
        fail(f"{e} (--strict)")
    if fs.skipped:
        print(f"{desc}: skipped {len(fs.skipped)} unreadable image(s):", file=sys.stderr)
        for p, why in fs.skipped[:10]:
            print(f"  {p}: {why}", file=sys.stderr)
        if len(fs.skipped) > 10:
            print(f"  ... and {len(fs.skipped) - 10} more (listed in the output JSON)", file=sys.stderr)
    return fs


def guard(fn):
    """Run ``fn()``, turning the library's 'bad input' errors into one clear line and exit 2."""
    from hvl_core import BackboneUnavailable, CheckpointError, ImageError
    from hvl_core.backbones import UnknownClassError
    from hvl_tools.data import DatasetError
    from hvl_tools.train import TrainStateError

    try:
        return fn()
    except (DatasetError, CheckpointError, TrainStateError, BackboneUnavailable, UnknownClassError, ImageError) as e:
        fail(str(e))
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        raise SystemExit(130)
