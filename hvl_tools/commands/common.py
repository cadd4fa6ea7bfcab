"""Options and error handling shared by the sub-commands."""

from __future__ import annotations

import argparse
import pickle
import sys

from hvl_core.backbones import MEASURED_BACKBONE
from hvl_core.config import HVLConfig
from hvl_core.scores import SCORES


def add_model_args(
    p: argparse.ArgumentParser,
    default_preset: str | None = "dermatology-isic4",
    default_backbone: str = MEASURED_BACKBONE,
) -> None:
    g = p.add_argument_group("model")
    g.add_argument(
        "--backbone",
        default=None,
        help=f"default: a checkpoint's own, else {default_backbone}; {MEASURED_BACKBONE} (measured on real "
        "images, a calibrated checkpoint per preset), auto (CLIP ViT-B/16, else the offline one), "
        "clip-vit-b16, biomedclip, "
        "quiltnet-b32, dermlip-b16 (non-commercial), medmnist-densenet121, NAME-random (the same "
        "architecture, random weights), NAME:/path/to/weights, MODEL:PRETRAINED or hf-hub:ID",
    )
    cls = g.add_mutually_exclusive_group()
    cls.add_argument("--preset", default=None, help=f"class preset (default {default_preset})")
    cls.add_argument(
        "--classes", nargs="+", metavar="NAME", help='custom known classes; "name: prompt description" allowed'
    )
    g.add_argument(
        "--checkpoint",
        help="trained head: a folder, a file of it, or a hub repo id org/name (default: "
        "the calibrated checkpoint shipped for the backbone and preset, if any)",
    )
    g.add_argument(
        "--untrained",
        action="store_true",
        help="the untrained head (zero-shot, or a classifier's own scores) instead of the shipped checkpoint",
    )
    g.add_argument("--n", type=int, help=f"partitions per side at mid scale (default {HVLConfig.n})")
    g.add_argument("--k", type=int, help=f"pseudo-OOD patches per image (default {HVLConfig.k})")
    g.add_argument(
        "--score",
        choices=list(SCORES),
        help="decision score (default: the checkpoint's, else the backbone's measured default for the "
        "preset, else msp, the paper's); thresholds are in its units",
    )
    g.add_argument(
        "--detail",
        choices=["upsample", "native"],
        default="upsample",
        help="upsample the view (paper) or cut patches from the upload's own pixels",
    )
    g.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.set_defaults(default_preset=default_preset, default_backbone=default_backbone)


def backbone_from_args(args) -> str:
    """``--backbone``, else the checkpoint's own (``auto``), else the command's default."""
    return args.backbone or ("auto" if args.checkpoint else args.default_backbone)


def checkpoint_from_args(args, preset: str | None):
    """``--checkpoint``, else the calibrated checkpoint shipped for the backbone and preset (unless
    ``--untrained``), else None."""
    if args.checkpoint is not None or not preset or getattr(args, "untrained", False):
        return args.checkpoint
    from hvl_core.checkpoint import shipped_checkpoint

    found = shipped_checkpoint(backbone_from_args(args), preset)
    return None if found is None else str(found)


def model_from_args(args):
    """load_model from the common options; exits with one clear sentence on failure."""
    from hvl_core.backbones.catalog import offline_failure

    backbone = backbone_from_args(args)
    why = offline_failure(backbone)  # before torch is even imported: seconds, not minutes
    if why:
        fail(why)
    from hvl_core import BackboneUnavailable, CheckpointError, ScoreError, load_model
    from hvl_core.backbones import UnknownClassError

    opts = {k: getattr(args, k) for k in ("n", "k", "score") if getattr(args, k, None) is not None}
    preset = args.preset
    if preset is None and not args.classes and not args.checkpoint:
        preset = args.default_preset
    checkpoint = checkpoint_from_args(args, preset)
    try:
        return load_model(
            backbone=backbone,
            classes=args.classes,
            preset=preset,
            checkpoint=checkpoint,
            device=args.device,
            detail=args.detail,
            threshold=getattr(args, "threshold", None),
            **opts,
        )
    except (BackboneUnavailable, CheckpointError, UnknownClassError, ScoreError, ValueError) as e:
        fail(str(e))
    except (RuntimeError, OSError, EOFError, IndexError, KeyError, pickle.UnpicklingError) as e:
        # what torch or open_clip raise on a weights file they cannot use: one sentence, never a traceback
        fail(f"could not build the backbone {backbone}: its weights could not be read ({type(e).__name__})")


def fail(message: str, status: int = 2):
    print(f"hvl: error: {message}", file=sys.stderr)
    raise SystemExit(status)
