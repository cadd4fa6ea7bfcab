"""The ``hvl`` command line. Each sub-command lives in ``hvl_tools/commands/<name>.py`` and
exposes ``register(subparsers)``, which adds its parser with ``func=run``."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

#: the folders each sub-command writes (argparse dests), checked before any work
OUTPUT_FOLDERS = {
    "train": ("out",),
    "evaluate": ("out",),
    "compare": ("out",),
    "calibrate": ("out",),
    "bench": ("out",),
    "synth": ("outdir",),
    "score": ("out",),
    "corpus": ("out",),
}

COMMANDS = [
    "predict",
    "score",
    "bench",
    "synth",
    "train",
    "evaluate",
    "calibrate",
    "compare",
    "aggregate",
    "push",
    "corpus",
]


def build_parser() -> argparse.ArgumentParser:
    from hvl_core import __version__

    parser = argparse.ArgumentParser(
        prog="hvl",
        description="HVL: hierarchical vision-language OOD detection for medical images (Lai et al., MICCAI 2025).",
    )
    parser.add_argument("--version", action="version", version=f"hvl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"hvl_tools.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    from hvl_core.allocator import tune_malloc

    tune_malloc()  # the encoder's activations kept in the heap: ~35% more images/s on the CPU
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, format="%(levelname)s %(message)s")
    check_output_folders(args)
    return int(args.func(args) or 0)


def check_output_folders(args) -> None:
    """A folder the command will write to, or its feature cache, that cannot be written is one
    sentence and exit 2 now, not an OSError after the encoding work."""
    from hvl_core.files import OutputError, writable_dir
    from hvl_tools.config import default_cache_dir

    wanted = [(getattr(args, dest, None), "output folder") for dest in OUTPUT_FOLDERS.get(args.command, ())]
    if hasattr(args, "cache_dir") and not getattr(args, "no_cache", False):
        wanted.append((args.cache_dir or default_cache_dir(), "feature cache"))
    try:
        for path, what in wanted:
            if path:
                writable_dir(path, what)
    except OutputError as e:
        print(f"hvl: error: {e}", file=sys.stderr)
        raise SystemExit(2) from None


if __name__ == "__main__":
    sys.exit(main())
