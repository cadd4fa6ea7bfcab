"""hvl score INPUT... --out DIR — screen an archive: a score and a decision for every image."""

from __future__ import annotations

import sys

from .common import add_model_args, fail


def register(sub) -> None:
    p = sub.add_parser(
        "score",
        help="score every image of folders, globs or a CSV manifest into DIR/scores.csv (resumable)",
        description="Score an archive: OUT/scores.csv (path, label, score, msp, known, error), summary.json and "
        "scores.png. A rerun with the same model skips the files already scored; each batch is "
        "written and fsync'd, so a killed run loses at most the batch in flight. Exit status 1 when "
        "some file could not be read.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="image files, folders (searched recursively), globs ('scans/**/*.jpg') or CSV manifests "
        "(a 'path' column, else the first; relative paths from the manifest's folder)",
    )
    p.add_argument("--out", required=True, metavar="DIR", help="output folder")
    add_model_args(p)
    p.add_argument(
        "--threshold", type=float, help="decision threshold (default: the checkpoint's calibrated one, else 0.5)"
    )
    p.add_argument(
        "--engine",
        choices=["local", "ray"],
        default="local",
        help="local: one process, decode workers; ray: Ray Data tasks and model actors, on this machine "
        "or a cluster (pip install 'hvl-demo[ray]')",
    )
    p.add_argument(
        "--fdr",
        type=float,
        default=0.05,
        help="with a calibrated checkpoint: also flag as unknown the images Benjamini–Hochberg selects "
        "at this false discovery rate over their conformal p-values (summary.json 'bh'; default 0.05)",
    )
    p.add_argument("--batch-size", type=int, default=16, help="images per encoder batch (default 16)")
    p.add_argument(
        "--workers",
        type=int,
        help="local engine: decode processes (default: with a GPU cores - 1, at most 8; on the CPU 0)",
    )
    p.add_argument(
        "--decode",
        choices=["auto", "cpu", "device"],
        default="auto",
        help="where JPEGs are decoded: auto = on the GPU (nvjpeg) when the model is on CUDA, else PIL",
    )
    g = p.add_argument_group("ray engine")
    g.add_argument(
        "--ray-address",
        help="a running cluster (auto, ray://HOST:10001); default: a private local instance on 127.0.0.1",
    )
    g.add_argument("--actors", type=int, default=1, help="model actors (default 1)")
    g.add_argument("--gpus-per-actor", type=float, default=0.0, help="GPUs per model actor (default 0: CPU actors)")
    g.add_argument("--cpus-per-actor", type=float, default=1.0, help="CPUs per model actor (default 1)")
    g.add_argument("--ray-cpus", type=int, help="CPUs of the private local instance (default: all)")
    p.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_core import BackboneUnavailable, CheckpointError
    from hvl_core.backbones import UnknownClassError
    from hvl_tools.score import InputError, ModelSpec, ResumeError, score_archive

    from .common import backbone_from_args, checkpoint_from_args

    if not 0 < args.fdr < 1:
        fail(f"--fdr must be between 0 and 1, got {args.fdr}")
    if args.batch_size < 1 or (args.workers is not None and args.workers < 0) or args.actors < 1:
        fail("--batch-size and --actors must be at least 1, --workers at least 0")
    opts = {k: getattr(args, k) for k in ("n", "k") if getattr(args, k, None) is not None}
    preset = args.preset
    if preset is None and not args.classes and not args.checkpoint:
        preset = args.default_preset
    spec = ModelSpec(
        backbone=backbone_from_args(args),
        classes=args.classes,
        preset=preset,
        checkpoint=checkpoint_from_args(args, preset),
        device=args.device,
        detail=args.detail,
        threshold=args.threshold,
        head_options=opts,
    )
    ray_options = {
        "address": args.ray_address,
        "actors": args.actors,
        "gpus_per_actor": args.gpus_per_actor,
        "cpus_per_actor": args.cpus_per_actor,
        "num_cpus": args.ray_cpus,
    }
    try:
        s = score_archive(
            args.inputs,
            args.out,
            spec,
            engine=args.engine,
            batch_size=args.batch_size,
            fdr=args.fdr,
            workers=args.workers,
            decode=args.decode,
            progress=args.progress,
            ray_options=ray_options if args.engine == "ray" else None,
        )
    except (InputError, ResumeError, BackboneUnavailable, CheckpointError, UnknownClassError, ValueError) as e:
        fail(str(e))
    except RuntimeError as e:  # Ray missing or its start failing
        fail(str(e).splitlines()[0] if str(e) else type(e).__name__)
    r = s["run"]
    speed = f", {r['images_per_s']:.2f} images/s" if r["images_per_s"] else ""
    print(
        f"{s['scored']} scored ({s['known']} known, {s['unknown']} unknown at {s['score']} ≥ {s['threshold']:.3g}, "
        f"{s['out_of_scope']} out of scope), "
        f"{s['errors']} unreadable; {r['scored_now']} now in {r['seconds']:.1f} s{speed}, "
        f"{r['skipped_as_done']} already done → {args.out}/scores.csv",
        file=sys.stderr,
    )
    if s.get("bh"):
        print(
            f"Benjamini–Hochberg at FDR {s['bh']['fdr']:g}: {s['bh']['unknown']} of {s['scored']} flagged unknown "
            "(among them, at most that share of known images expected)",
            file=sys.stderr,
        )
        if s["bh"]["note"]:
            print(s["bh"]["note"], file=sys.stderr)
    return 1 if s["errors"] else 0
