"""hvl bench — latency, throughput, memory and training speed, measured in one run."""

from __future__ import annotations

import argparse
import sys

from .common import fail


def register(sub) -> None:
    p = sub.add_parser(
        "bench",
        help="measure latency, throughput, memory and training speed",
        description="Time the full HVL pipeline against the bare encoder on the same crops and against one "
        "single-scale forward, batched throughput with peak memory, cached-feature training against "
        "end-to-end, and the demo's threshold update. Writes OUT/NAME.json and OUT/NAME.md. Random-weight "
        "backbones are fine for timing; nothing is downloaded.",
    )
    p.add_argument(
        "--backbone",
        nargs="+",
        action="extend",
        metavar="B",
        help="backbones to time (repeat or list several; default: clip-vit-b16-random "
        "medmnist-densenet121; --quick: tiny-clip-random)",
    )
    p.add_argument(
        "--n",
        nargs="+",
        action="extend",
        type=int,
        metavar="N",
        help="partitions per side (repeat or list several; default 1 2 3; --quick: 2)",
    )
    p.add_argument("--out", default="out/bench", help="output folder (default out/bench)")
    p.add_argument("--name", default="bench", help="file name stem: OUT/NAME.json and OUT/NAME.md (default bench)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda, cuda:1 ...")
    p.add_argument("--preset", default="dermatology-isic4", help="class preset for the inference runs")
    p.add_argument("--detail", choices=["upsample", "native"], default="upsample")
    p.add_argument("--repeats", type=int, help="timed rounds per measurement (default 3; --quick 2)")
    p.add_argument("--warmup", type=int, help="untimed rounds first (default 1)")
    p.add_argument("--images", type=int, help="images in the throughput runs (default 2 on CPU, 256 on GPU)")
    p.add_argument("--batch-size", type=int, help="throughput batch size (default 2 on CPU, 32 on GPU)")
    p.add_argument(
        "--image-size", type=int, nargs=2, metavar=("W", "H"), help="synthetic test image size (default 640 480)"
    )
    p.add_argument("--train-images", type=int, help="cached training images (default 2000, the Skin-40 size)")
    p.add_argument("--train-classes", type=int, help="classes in the training runs (default 40)")
    p.add_argument(
        "--train-epochs",
        type=int,
        help="timed rounds of (one cached-feature epoch, one end-to-end "
        "batch) per configuration, after a warm-up (default 3 on GPU, 2 on CPU)",
    )
    p.add_argument(
        "--full-train",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="train all 100 epochs for the headline configuration (default on GPU; on CPU the "
        "100-epoch time is extrapolated from --train-epochs)",
    )
    p.add_argument(
        "--e2e-images", type=int, help="images in each end-to-end training batch (default 2 on CPU, 32 on GPU)"
    )
    p.add_argument(
        "--no-variants", dest="variants", action="store_false", default=None, help="skip the before/after probes"
    )
    p.add_argument(
        "--compile",
        action="store_true",
        default=None,
        help="also time a torch.compile'd encoder (CUDA; compiling takes tens of seconds)",
    )
    g = p.add_argument_group("hvl score")
    g.add_argument(
        "--no-score",
        dest="score",
        action="store_false",
        default=None,
        help="skip timing hvl score against the bare encoder",
    )
    g.add_argument(
        "--score-only",
        action="store_true",
        default=None,
        help="only the hvl score measures (with --ray and the compiled trainer when asked)",
    )
    g.add_argument("--score-images", type=int, help="images scored per run (default 8 on CPU, 1024 on GPU)")
    g.add_argument("--score-repeats", type=int, help="rounds of (hvl score, bare encoder) (default 2 on CPU, 3 on GPU)")
    g.add_argument("--score-workers", type=int, help="decode workers for hvl score (default: the command's)")
    g.add_argument(
        "--ray",
        action="store_true",
        default=None,
        help="also time --engine ray against local on the same files (needs ray[data])",
    )
    g.add_argument("--ray-repeats", type=int, help="rounds of (local, ray) (default 1)")
    g.add_argument(
        "--compile-train",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="time the cached trainer with compile_step=True against eager (default on GPU)",
    )
    p.add_argument(
        "--render", metavar="JSON", help="only re-write the markdown summary of an existing bench JSON (next to it)"
    )
    p.add_argument(
        "--quick",
        action="store_true",
        help="a few seconds with tiny settings (tests, smoke runs; the numbers mean little)",
    )
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_tools.bench import (
        BenchSettings,
        main_progress,
        render_markdown,
        run_bench,
        write_results,
    )

    if args.render:
        return _render(args.render)
    given = {
        "backbones": args.backbone,
        "ns": args.n,
        "device": args.device,
        "preset": args.preset,
        "detail": args.detail,
        "repeats": args.repeats,
        "warmup": args.warmup,
        "images": args.images,
        "batch_size": args.batch_size,
        "image_size": tuple(args.image_size) if args.image_size else None,
        "train_images": args.train_images,
        "train_classes": args.train_classes,
        "train_epochs": args.train_epochs,
        "full_train": args.full_train,
        "e2e_images": args.e2e_images,
        "variants": args.variants,
        "compile": args.compile,
        "score": args.score,
        "score_only": args.score_only,
        "score_images": args.score_images,
        "score_repeats": args.score_repeats,
        "score_workers": args.score_workers,
        "ray": args.ray,
        "ray_repeats": args.ray_repeats,
        "compile_train": args.compile_train,
    }
    given = {k: v for k, v in given.items() if v is not None}
    try:
        settings = BenchSettings.quick_settings(**given) if args.quick else BenchSettings(**given)
        settings.validate()
    except (TypeError, ValueError) as e:
        fail(str(e))

    def partial(result):
        write_results(result, args.out, args.name)

    try:
        result = run_bench(settings, progress=main_progress, on_partial=partial)
    except ValueError as e:
        fail(str(e))
    js, md = write_results(result, args.out, args.name)
    print(render_markdown(result))
    print(f"wrote {js} and {md}", file=sys.stderr)
    return 0


def _render(path: str) -> int:
    import json
    from pathlib import Path

    from hvl_tools.bench import SCHEMA, render_markdown

    p = Path(path)
    try:
        result = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        fail(f"cannot read {p}: {e}")
    if not isinstance(result, dict) or result.get("schema") != SCHEMA:
        fail(f"{p} is not an hvl bench result ({SCHEMA})")
    md = p.with_suffix(".md")
    md.write_text(render_markdown(result), encoding="utf-8")
    print(f"wrote {md}", file=sys.stderr)
    return 0
