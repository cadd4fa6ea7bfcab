"""hvl predict IMAGE... — known class or "unknown" for each image."""
from __future__ import annotations

import json
import sys

from .common import add_model_args, model_from_args


def register(sub) -> None:
    p = sub.add_parser("predict", help="predict images: known class or unknown",
                       description="Predict each image; a bad file is reported and the others still run. "
                                   "Exit status 1 when any image failed.")
    p.add_argument("images", nargs="+", help="image files")
    add_model_args(p)
    p.add_argument("--threshold", type=float, help="MSP threshold (default: the checkpoint's calibrated one, else 0.5)")
    p.add_argument("--json", action="store_true", help="one JSON object per image on stdout")
    p.add_argument("--batch-size", type=int, default=8)
    p.set_defaults(func=run)


def run(args) -> int:
    from hvl_core import ImageError, load_image

    model = model_from_args(args)
    if not args.json:
        print(f"backbone: {model.backbone.describe()}; classes: {', '.join(model.classes.names)}; "
              f"threshold {args.threshold if args.threshold is not None else model.threshold:.3f}", file=sys.stderr)
    failed = 0
    paths = list(args.images)
    for s in range(0, len(paths), args.batch_size):
        loaded, names = [], []
        for path in paths[s:s + args.batch_size]:
            try:
                loaded.append(load_image(path))
                names.append(path)
            except ImageError as e:
                failed += 1
                _report_error(args, path, str(e))
        encoded = model.encode_batch(loaded) if loaded else []  # one encoder call per chunk
        for path, pred in zip(names, model.decide_batch(encoded, args.threshold)):
            if args.json:
                d = {"path": path, "label": pred.label, "msp": round(pred.msp, 6), "known": pred.known,
                     "threshold": pred.threshold, "backbone": pred.backbone, "backbone_note": pred.backbone_note,
                     "probs": {c: round(float(p), 6) for c, p in zip(pred.classes, pred.p_id)},
                     "pseudo_ood": [list(rc) for rc in pred.pseudo_ood], "notes": pred.notes}
                print(json.dumps(d), flush=True)
            else:
                verdict = f"Known: {pred.label}" if pred.known else "Unknown — refer to a specialist"
                rel = "≥" if pred.known else "<"
                print(f"{path}: {verdict} (MSP {pred.msp:.3f} {rel} {pred.threshold:.3f}; top: {pred.label})")
    return 1 if failed else 0


def _report_error(args, path: str, message: str) -> None:
    if args.json:
        print(json.dumps({"path": path, "error": message}), flush=True)
    else:
        print(f"{path}: error: {message}", file=sys.stderr)
