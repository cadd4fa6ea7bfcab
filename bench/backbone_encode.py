"""Encode time per image for each named backbone (its random twin: same architecture, tokenizer
and preprocessing, nothing downloaded), so a Space owner can pick hardware.

    .venv/bin/python bench/backbone_encode.py --out bench/results --name backbone-encode-cpu

One image = the 1 + n² + 4n² crops of HVL (21 at n = 2) in one encoder call: ``model.encode``
(decode, crops, encoder), and the bare encoder call on the same crops. Rounds interleave the
backbones; figures are medians over rounds. Writes OUT/NAME.json and OUT/NAME.md.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np
import torch
from PIL import Image

import hvl_core
from hvl_core.backbones.catalog import BY_NAME

DEFAULT_BACKBONES = [
    "clip-vit-b16-random",
    "biomedclip-random",
    "quiltnet-b32-random",
    "dermlip-b16-random",
    "medmnist-densenet121",
    "tiny-clip-random",
]


def _image(seed: int = 0) -> Image.Image:
    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 255, (448, 448, 3), dtype=np.uint8))


def _timed(fn) -> float:
    t = time.perf_counter()
    fn()
    return time.perf_counter() - t


def run(backbones: list[str], n: int, repeats: int, warmup: int, device: str) -> dict:
    img = _image()
    models, rows = {}, {}
    for name in backbones:
        t = time.perf_counter()
        preset = "histology-nct-crc" if name == "medmnist-densenet121" else "dermatology-isic4"
        models[name] = hvl_core.load_model(name, preset=preset, n=n, device=device)
        rows[name] = {"build_s": round(time.perf_counter() - t, 2), "encode": [], "encoder": []}
    from hvl_core.geometry import hierarchical_crops

    crops = {name: hierarchical_crops(img, n, m.backbone.image_size, m.detail) for name, m in models.items()}
    sync = torch.cuda.synchronize if torch.device(device).type == "cuda" else (lambda: None)
    for r in range(warmup + repeats):
        for name, m in models.items():  # interleaved: a busy moment hits every backbone alike
            a = _timed(lambda: (m.encode(img), sync()))
            b = _timed(lambda: (m.encode_crops(crops[name]), sync()))
            if r >= warmup:
                rows[name]["encode"].append(a)
                rows[name]["encoder"].append(b)
    # per-round ratio to the first backbone: robust when the machine is busy (each round's
    # backbones run back to back, so a busy spell slows them alike)
    ref = backbones[0]
    for name, row in rows.items():
        row["ratio"] = [a / b for a, b in zip(row["encode"], rows[ref]["encode"])]
    out = {}
    for name, row in rows.items():
        bb = models[name].backbone
        info = BY_NAME.get(name)
        out[name] = {
            "twin_of": info.twin_of if info else None,
            "params_m": round(sum(p.numel() for mod in bb.modules() for p in mod.parameters()) / 1e6, 1),
            "crops": int(crops[name].shape[0]),
            "build_s": row["build_s"],
            "encode_ms_median": round(1e3 * statistics.median(row["encode"]), 1),
            "encoder_ms_median": round(1e3 * statistics.median(row["encoder"]), 1),
            "encode_ms_min": round(1e3 * min(row["encode"]), 1),
            f"encode_vs_{ref}": round(statistics.median(row["ratio"]), 2),
        }
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--backbone", nargs="+", default=DEFAULT_BACKBONES)
    ap.add_argument("--n", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--out", default="bench/results")
    ap.add_argument("--name", default="backbone-encode-cpu")
    args = ap.parse_args(argv)
    load_before = os.getloadavg()
    results = run(args.backbone, args.n, args.repeats, args.warmup, args.device)
    env = {
        "device": args.device,
        "torch": torch.__version__,
        "threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(),
        "cores": os.cpu_count(),
        "loadavg_before": [round(x, 2) for x in load_before],
        "loadavg_after": [round(x, 2) for x in os.getloadavg()],
        "gpu": torch.cuda.get_device_name() if torch.cuda.is_available() and args.device != "cpu" else None,
        "n": args.n,
        "repeats": args.repeats,
        "warmup": args.warmup,
    }
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    (out / f"{args.name}.json").write_text(json.dumps({"env": env, "backbones": results}, indent=2) + "\n")
    lines = [
        f"# Encode time per image, n = {args.n} ({next(iter(results.values()))['crops']} crops)",
        "",
        f"Device: {env['gpu'] or env['cpu']} ({env['cores']} cores, {env['threads']} torch threads); "
        f"load average before/after {env['loadavg_before'][0]} / {env['loadavg_after'][0]}; "
        f"median of {args.repeats} rounds after {args.warmup} warm-up, backbones interleaved.",
        "",
        f"| backbone | twin of | params (M) | `model.encode(image)` ms | fastest round ms | bare encoder ms | "
        f"× `{args.backbone[0]}` | build s |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    for name, r in results.items():
        lines.append(
            f"| `{name}` | {r['twin_of'] or '—'} | {r['params_m']} | {r['encode_ms_median']} | "
            f"{r['encode_ms_min']} | {r['encoder_ms_median']} | {r[f'encode_vs_{args.backbone[0]}']} | "
            f"{r['build_s']} |"
        )
    lines += [
        "",
        "Command: `"
        + " ".join([".venv/bin/python bench/backbone_encode.py", *(sys.argv[1:] if argv is None else argv)])
        + "`",
    ]
    (out / f"{args.name}.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
