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


FEATURE_WORDS = {
    "global": "the L2-normalised scale-0 embedding",
    "scale-means": "the L2-normalised scale-0 embedding beside the L2-normalised means of the scale-1 and "
    "scale-2 patch embeddings (their cosine similarity is the mean of the three scales')",
}


def scope_section(r: dict) -> list[str]:
    """Stage 1 (in scope?): what it was fitted on, its in-scope shares, AUROCs, per kind and leave-kind-out."""
    sc = r["scope"]
    fit = sc["fitted_on"]
    lines = [
        "### Stage 1 — in scope?",
        "",
        f"f = {FEATURE_WORDS[sc['features']]}. "
        f"KNN bank (k = 10) of {sum(fit['id_sources'].values())} ID images from {len(fit['id_sources'])} train and "
        f"calibration sources; gate: logistic regression with outlier exposure against "
        f"{sum(fit['negative_sources'].values())} images of {len(fit['negative_sources'])} sources "
        f"({'; '.join(f'{k} {v}' for k, v in fit['negative_kinds'].items())}). Thresholds from "
        f"{sc['n_calibration']} ID scores pooled leave-one-source-out: KNN ≥ {sc['t_knn']:.4f}, gate ≥ "
        f"{sc['t_gate']:.3f}"
        + (
            f", contrast (KNN minus the cosine to the nearest of those negatives) ≥ {sc['t_contrast']:.4f} (each at "
            f"{100 * r['alpha'] / 3:.2f}%)."
            if sc.get("t_contrast") is not None
            else f" (each at {100 * r['alpha'] / 2:.1f}%)."
        ),
        "",
        "| test images | n | in scope |",
        "|---|---|---|",
    ]
    lines += [f"| {GROUP_NAMES[g]} | {sc['n'][g]} | {pct(sc['in_scope'][g])} |" for g in ("id", "far", "other", "near")]
    lines += [
        "",
        "Far-OOD (and the other preset's images) against ID, test sources, per detector (stage 1's own "
        "against the classifier's scores at scale 0); near-OOD AUROC beside it:",
        "",
        "| detector | AUROC far | AUROC near |",
        "|---|---|---|",
    ]
    lines += [f"| {m} | {ci(v)} | {sc['auroc_near'][m]:.3f} |" for m, v in sc["auroc_far"].items()]
    lines += ["", "In scope, by kind (test sources):", "", "| kind | n | in scope |", "|---|---|---|"]
    lines += [f"| {row['group']} | {row['n']} | {row['in_scope']} |" for row in sc["per_kind"]]
    lines += [
        "",
        "Leave one kind out: stage 1 refitted without that far-OOD kind among its negatives (the gate and "
        "the contrast bank); that kind's test images then (and the ID test images' in-scope share):",
        "",
        "| kind left out | test images | in scope | ID in scope |",
        "|---|---|---|---|",
    ]
    lines += [
        f"| {row['kind']} | {row['n_test']} | {row['in_scope']} | {100 * row['id_in_scope']:.1f}% |"
        for row in sc["leave_kind_out"]
    ]
    held = sc.get("held_out_negatives") or []
    if held:
        lines += [
            "",
            "Validation on the train and calibration sources (what chose f, the gate's C and the contrast "
            "test): each far-OOD source among the negatives left out of the fit in turn, "
            f"{sum(r['in_scope'] for r in held)} of its {sum(r['n'] for r in held)} images then in scope: "
            + "; ".join(f"{r['source']} {r['in_scope']}/{r['n']}" for r in held)
            + ".",
        ]
    return lines + [""]


def preset_section(name: str, r: dict) -> list[str]:
    best, which = r["default"]["score"], r["default"]["head"]
    lines = [
        f"## {name}",
        "",
        f"Sources — train: {', '.join(r['sources']['train'])}; calibration: {', '.join(r['sources']['calib'])}; "
        f"test: {', '.join(r['sources']['test'])}.",
        "",
        *scope_section(r),
        "### Stage 2 — known class?",
        "",
        f"Trained on the {r['n_train']} ID images of the train and calibration sources ({r['train_config']['epochs']} "
        f"epochs, the paper's loss, L_ID in the log domain): accuracy on them **{r['train_accuracy']:.3f}**. "
        f"Default: the **{which}** head with the **{best}** score, the best AUROC of ID against near-OOD of the "
        "train and calibration sources, each image scored by a head that never saw its source (the trained head "
        f"cross-fitted over {r['source_folds']} folds of sources), among "
        + "; ".join(
            f"{w} " + ", ".join(f"{s} {v:.3f}" for s, v in r[w]["selection_auroc"].items())
            for w in ("trained", "untrained")
        )
        + f"; threshold {r['default']['threshold']:.4g} = conformal quantile for {100 * r['alpha']:.0f}% false "
        f"rejection over {r[which][best]['n_calibration']} ID scores of the train and calibration sources, pooled "
        "so that no score comes from a head that saw its source.",
        "",
        "Test sources only, both stages: *known* = in scope and score ≥ threshold; 95% bootstrap CIs. AUROCs "
        "and ID accuracy are stage 2's alone (all test images).",
        "",
        "| head | score | threshold | ID known | far-OOD known | far-OOD out of scope | other preset known "
        "| other preset out of scope | near-OOD known | AUROC near | AUROC all | ID accuracy |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for head in ("trained", "untrained"):
        for s in (s for s in SCORES if s in r[head]):
            e = r[head][s]
            t, o = e["test"], e["outcomes"]
            mark = " (default)" if head == which and s == best else ""
            lines.append(
                f"| {head}{mark} | {s} | {e['threshold']:.4g} | {pct(o['known']['id'])} | {pct(o['known']['far'])} | "
                f"{pct(o['out_of_scope']['far'])} | {pct(o['known']['other'])} | {pct(o['out_of_scope']['other'])} | "
                f"{pct(o['known']['near'])} | {ci(t['auroc']['near'])} | {ci(t['auroc']['all'])} | "
                f"{ci(t['id_accuracy'])} |"
            )
    e = r[which][best]
    n = e["test"]["n"]
    mb = r["mixed_batch"]
    lines += [
        "",
        f"Test images: {n['id']} ID, {n['far']} far-OOD, {n['other']} of the other preset, {n['near']} near-OOD.",
        "",
        "Precision of each *known* answer at the default (of the test images called that class, the share that are "
        "it): " + "; ".join(f"{c} {100 * v['value']:.0f}% of {v['n']}" for c, v in e["precision"].items()) + ".",
        "",
        f"A mixed batch of {mb['n_id']} ID and {mb['n_far']} far-OOD test images: Benjamini–Hochberg at 5% over the "
        f"deciding stage's p-values flags {mb['flagged_far']} of the far-OOD and {mb['flagged_id']} of the ID images.",
        "",
        f"Per test source at the default ({best}, {r['default']['threshold']:.4g}; out-of-scope images count as not known):",
        "",
        "| source | role | images | known |",
        "|---|---|---|---|",
    ]
    lines += [f"| {row['source']} | {row['role']} | {row['n']} | {row['accepted']} |" for row in e["per_source"]]
    lines += [
        "",
        "Every OOD kind of the test sources, known at the default:",
        "",
        "| kind | images | known |",
        "|---|---|---|",
    ]
    lines += [f"| {row['kind']} | {row['n']} | {row['accepted']} |" for row in e["per_kind_test"]]
    return lines + [""]


def zoo_section(name: str, z: dict) -> list[str]:
    lines = [
        f"## Zoo: {name}",
        "",
        f"Leave one ID source out ({len(z['folds'])} folds: "
        + ", ".join(f"{f['held_out']} ({f['n_id']})" for f in z["folds"])
        + "); each fold fits on the other sources' ID images and tests the held-out source's ID images "
        "against every OOD image. Mean over folds, 95% bootstrap CI over folds. Same backbone "
        "features; the single-scale methods use the pooled scale-0 feature."
        + (
            ""
            if z.get("trained_hvl", True)
            else " The HVL head trained per fold is left out here (its cost); the trained head's "
            "numbers are in the stage 2 table above."
        ),
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
