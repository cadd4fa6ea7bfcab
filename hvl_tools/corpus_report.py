"""The markdown report of ``hvl corpus run`` (``results/corpus/README.md``)."""

from __future__ import annotations

import math
from pathlib import Path

from hvl_core.scores import SCORES

GROUP_NAMES = {"id": "its own ID images", "far": "far-OOD", "other": "the other preset's ID", "near": "near-OOD"}


def ci(t) -> str:
    """(value, lo, hi) → "0.912 [0.88, 0.94]"."""
    v, lo, hi = t
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "—"
    return f"{v:.3f} [{lo:.2f}, {hi:.2f}]" if not math.isnan(lo) else f"{v:.3f}"


def pct(t) -> str:
    v, lo, hi = t
    if v is None or math.isnan(v):
        return "—"
    return f"{100 * v:.1f}% [{100 * lo:.0f}, {100 * hi:.0f}]"


def preset_section(name: str, r: dict) -> list[str]:
    best, which = r["default"]["score"], r["default"]["head"]
    lines = [
        f"## {name}",
        "",
        f"Sources — train: {', '.join(r['sources']['train'])}; calibration: {', '.join(r['sources']['calib'])}; "
        f"test: {', '.join(r['sources']['test'])}.",
        "",
        f"Trained on {r['n_train']} ID images ({r['train_config']['epochs']} epochs, the paper's loss). "
        f"Default: the **{which}** head with the **{best}** score, the best AUROC on the calibration sources "
        "(ID against OOD images of those sources) among "
        + "; ".join(
            f"{w} " + ", ".join(f"{s} {v:.3f}" for s, v in r[w]["selection_auroc_calib"].items())
            for w in ("trained", "untrained")
        )
        + f"; threshold {r['default']['threshold']:.4g} = conformal quantile for "
        f"{100 * r['alpha']:.0f}% false rejection on {r[which][best]['n_calibration']} calibration images.",
        "",
        "Test sources only; 95% bootstrap CIs (images resampled within each group).",
        "",
        "| head | score | threshold | ID accepted | far-OOD accepted | other preset accepted | near-OOD accepted "
        "| AUROC all | AUROC far | AUROC near | FPR95 | ID accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for head in ("trained", "untrained"):
        for s in (s for s in SCORES if s in r[head]):
            e = r[head][s]
            t = e["test"]
            mark = " (default)" if head == which and s == best else ""
            lines.append(
                f"| {head}{mark} | {s} | {e['threshold']:.4g} | {pct(t['accepted']['id'])} | "
                f"{pct(t['accepted']['far'])} | {pct(t['accepted']['other'])} | {pct(t['accepted']['near'])} | "
                f"{ci(t['auroc']['all'])} | {ci(t['auroc']['far'])} | {ci(t['auroc']['near'])} | "
                f"{ci(t['fpr95']['all'])} | {ci(t['id_accuracy'])} |"
            )
    n = r[which][best]["test"]["n"]
    lines += [
        "",
        f"Test images: {n['id']} ID, {n['far']} far-OOD, {n['other']} of the other preset, {n['near']} near-OOD.",
        "",
        f"Per test source at the default ({best}, {r['default']['threshold']:.4g}):",
        "",
        "| source | role | images | accepted as known |",
        "|---|---|---|---|",
    ]
    for row in r[which][best]["per_source"]:
        lines.append(f"| {row['source']} | {row['role']} | {row['n']} | {row['accepted']} |")
    lines += [
        "",
        "Every OOD kind, all splits (OOD images are never trained on; calibration-split OOD images chose "
        "the score), at the default:",
        "",
        "| kind | images | accepted as known |",
        "|---|---|---|",
    ]
    for row in r[which][best]["per_kind_all_ood"]:
        lines.append(f"| {row['kind']} | {row['n']} | {row['accepted']} |")
    return lines + [""]


def zoo_section(name: str, z: dict) -> list[str]:
    lines = [
        f"## Zoo: {name}",
        "",
        f"Leave one ID source out ({len(z['folds'])} folds: "
        + ", ".join(f"{f['held_out']} ({f['n_id']})" for f in z["folds"])
        + "); each fold fits on the other sources' ID images and tests the held-out source's ID images "
        "against every OOD image. Mean over folds, 95% bootstrap CI over folds. Same backbone "
        "features; the single-scale methods use the pooled scale-0 feature.",
        "",
        "| method | AUROC all | AUROC far (+ other preset) | AUROC near | FPR95 |",
        "|---|---|---|---|---|",
    ]
    order = sorted(z["summary"], key=lambda m: -z["summary"][m]["auroc_all"][0])
    for m in order:
        s = z["summary"][m]
        lines.append(
            f"| {m} | {ci(s['auroc_all'])} | {ci(s['auroc_far'])} | {ci(s['auroc_near'])} | {ci(s['fpr95_all'])} |"
        )
    return lines + [""]


def write_corpus_report(results: dict, out: Path) -> Path:
    lines = [
        "# HVL on real images of held-out sources",
        "",
        "Regenerate: `hvl corpus fetch` (on a networked machine; or `--from DIR` with local copies), then "
        "`hvl corpus run --out results/corpus --weights weights`. Backbone: `medmnist-densenet121` (the only "
        "one with real weights offline). Corpus: `corpus/README.md`. FPR95 is spec §7's exact convention. "
        "Splits are by source: no number below comes from a source the head was trained or calibrated on.",
        "",
    ]
    for name, r in results["presets"].items():
        lines += preset_section(name, r)
    for name, z in results.get("zoo", {}).items():
        lines += zoo_section(name, z)
    path = Path(out) / "README.md"
    path.write_text("\n".join(lines) + "\n")
    return path
