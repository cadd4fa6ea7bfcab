"""hvl predict IMAGE... — known class or "unknown" for each image."""

from __future__ import annotations

import json
import sys

from .common import add_model_args, model_from_args


def register(sub) -> None:
    p = sub.add_parser(
        "predict",
        help="predict images: known class or unknown",
        description="Predict each image; a bad file is reported and the others still run. "
        "Exit status 1 when any image failed.",
    )
    p.add_argument("images", nargs="+", help="image files (PNG, JPEG, TIFF, DICOM, whole-slide .svs/.ndpi/.tiff ...)")
    add_model_args(p)
    p.add_argument(
        "--threshold",
        type=float,
        help="threshold in the score's units (default: the checkpoint's calibrated one, else the "
        "backbone's measured one, else 0.5 for MSP)",
    )
    p.add_argument(
        "--tile",
        metavar="X,Y",
        help="whole-slide images: analyse the tile centred at level-0 pixel X,Y (default: a tissue tile is "
        "picked and the notes say which)",
    )
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_core import verdicts
    from hvl_core.slides import parse_tile

    from .common import fail

    try:
        tile = parse_tile(args.tile) if args.tile else None
    except ValueError as e:
        fail(str(e))
    model = model_from_args(args)
    from hvl_core import ImageError, ScoreError, load_image

    try:
        threshold, _ = model.resolve_threshold(args.threshold)  # a bad threshold stops before any encoding
    except ScoreError as e:
        fail(str(e))
    if not args.json:
        print(
            f"backbone: {model.backbone.describe()}; classes: {', '.join(model.classes.names)}; "
            f"score {model.score_name}, threshold {threshold:.4g}",
            file=sys.stderr,
        )
    failed = 0
    paths = list(args.images)
    for s in range(0, len(paths), args.batch_size):
        loaded, names = [], []
        for path in paths[s : s + args.batch_size]:
            try:
                loaded.append(load_image(path, tile=tile))
                names.append(path)
            except ImageError as e:
                failed += 1
                _report_error(args, path, str(e))
        encoded = model.encode_batch(loaded) if loaded else []  # one encoder call per chunk
        for path, pred in zip(names, model.decide_batch(encoded, args.threshold)):
            if args.json:
                d = {
                    "path": path,
                    "label": pred.label,
                    "score": round(pred.score, 6),
                    "score_name": pred.score_name,
                    "msp": round(pred.msp, 6),
                    **verdicts.summary(pred),
                    "known": pred.known,
                    "scope": pred.scope,
                    "precision": pred.precision,
                    "threshold": pred.threshold,
                    "threshold_source": pred.threshold_source,
                    "score_range": list(pred.score_range),
                    "p_value_known_class": None if pred.p_value is None else round(pred.p_value, 6),
                    "n_calibration": pred.n_calibration,
                    "backbone": pred.backbone,
                    "backbone_note": pred.backbone_note,
                    "probs": {c: round(float(p), 6) for c, p in zip(pred.classes, pred.p_id)},
                    "p_other": round(pred.p_other["p_id"], 6),
                    "p_dropped": round(pred.p_dropped["p_id"], 6),
                    "pseudo_ood": [list(rc) for rc in pred.pseudo_ood],
                    "notes": pred.notes,
                }
                print(json.dumps(d), flush=True)
            else:
                rel = "≥" if pred.score >= pred.threshold else "<"
                print(f"{path}: {verdicts.headline(pred)}")
                print(f"  {verdicts.meaning(pred)}")
                if verdicts.p_value_words(pred):
                    print(f"  {verdicts.p_value_words(pred)}")
                print(
                    f"  ({pred.score_name} {pred.score:.4g} {rel} {pred.threshold:.4g}; best known class: {pred.label})"
                )
                for note in pred.notes:
                    print(f"  note: {note}")
    return 1 if failed else 0


def _report_error(args, path: str, message: str) -> None:
    if args.json:
        print(json.dumps({"path": path, "error": message}), flush=True)
    else:
        print(f"{path}: error: {message}", file=sys.stderr)
