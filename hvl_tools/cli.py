"""The ``hvl`` command line. Each sub-command lives in ``hvl_tools/commands/<name>.py`` and
exposes ``register(subparsers)``, which adds its parser with ``func=run``."""
from __future__ import annotations

import argparse
import importlib
import logging
import sys

COMMANDS = ["predict", "score", "bench", "synth", "train", "evaluate", "calibrate", "compare", "aggregate", "push"]


def build_parser() -> argparse.ArgumentParser:
    from hvl_core import __version__

    parser = argparse.ArgumentParser(prog="hvl", description="HVL: hierarchical vision-language OOD detection "
                                     "for medical images (Lai et al., MICCAI 2025).")
    parser.add_argument("--version", action="version", version=f"hvl {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="show library log messages")
    sub = parser.add_subparsers(dest="command", required=True)
    for name in COMMANDS:
        importlib.import_module(f"hvl_tools.commands.{name}").register(sub)
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.CRITICAL, format="%(levelname)s %(message)s")
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
