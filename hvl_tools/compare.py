"""Comparison runs: baselines, HVL and its ablations trained and evaluated on the same cached
features, per plan (fold / task) and seed, with a summary table."""

from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from . import metrics as M
from .aggregate import aggregate_table
from .config import MCM_TAU, VARIANTS, variant_title
from .embedding_scores import score_sets
from .evaluate import evaluate_features
from .reports import plot_roc


def run_benchmark(
    backbone: str,
    plans: Sequence,
    out: str | os.PathLike,
    seeds: Sequence[int] = (0,),
    variants: Sequence[str] = tuple(VARIANTS),
    train_config=None,
    val_fraction: float = 0.1,
    head_options: dict | None = None,
    cache=None,
    device: str = "auto",
    detail: str = "upsample",
    progress: bool = True,
    encode_kw: dict | None = None,
    log=None,
    negatives="auto",
    allow_overlap: bool = False,
    mcm_tau: float = MCM_TAU,
    convention: str = M.DEFAULT_CONVENTION,
) -> dict:
    """Train and evaluate every variant (baselines, HVL, the six Table 2 rows and Fig. 2's
    no-propagation) on each plan (fold / task) and seed, all on the same cached features; write
    per-run reports under ``out/<run>/<variant>[/seed<k>]`` and ``out/summary.{md,json}`` (mean ±
    std over runs) plus ``out/roc.png`` (one ROC per variant, first run and seed).

    ``negatives``: ``"auto"``, ``"none"`` or a list of class names (``hvl_tools.leakage``). A
    backbone that already knows a split's OOD classes (as negative or training classes) is
    refused unless ``allow_overlap``; then the tables carry the warning. ``mcm_tau``: the MCM
    baseline's temperature; ``convention``: the metric convention (``metrics.CONVENTIONS``)."""
    import sys

    from hvl_core.backbones import create_backbone

    from .data import class_set_for, split_validation
    from .features import features_of_items
    from .leakage import build_model, check_overlap
    from .train import TrainConfig, fit

    log = log or (lambda m: print(m, file=sys.stderr, flush=True))
    if not seeds:
        raise ValueError("give at least one seed")
    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown variants {unknown}; choose from {list(VARIANTS)}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    cfg0 = train_config or TrainConfig()
    head_options = dict(head_options or {})
    encode_kw = dict(encode_kw or {})
    M.check_convention(convention)
    bb = create_backbone(backbone)
    if bb.note:  # e.g. auto fell back to the offline backbone: say so, it changes what the numbers mean
        log(f"note: backbone {bb.name}: {bb.note}")
    titles = {v: variant_title(v, mcm_tau) for v in variants}
    overlaps = {}
    results: dict[str, list[dict]] = {v: [] for v in variants}
    curves: dict[str, tuple] = {}
    runs = []
    for plan in plans:
        run_name = (
            plan.name + (f"-fold{plan.fold}" if plan.fold is not None else "") + (f"-{plan.task}" if plan.task else "")
        )
        classes = class_set_for(plan.class_names, plan.preset)
        base = build_model(bb, classes, negatives, device=device, detail=detail, **head_options)
        leak = check_overlap(bb, plan.ood_class_names, base.classes.negatives, allow=allow_overlap, log=log)
        if leak:
            overlaps[run_name] = leak
        tr, va = split_validation(plan.train, val_fraction)
        kw = dict(cache=cache, progress=progress, **encode_kw)
        F = {
            "train": features_of_items(base, tr, desc="train", **kw),
            "val": features_of_items(base, va, desc="val", **kw) if va else None,
            "test": features_of_items(base, plan.test, desc="test", **kw),
            "ood": features_of_items(base, plan.ood, desc="ood", **kw),
        }
        log(
            f"[{run_name}] {len(F['train'])} train, {len(va)} val, {len(F['test'])} ID test, {len(F['ood'])} OOD "
            f"images; backbone {bb.describe()}"
        )
        runs.append(
            {
                "run": run_name,
                "n_train": len(F["train"]),
                "n_val": len(va),
                "n_test": len(F["test"]),
                "n_ood": len(F["ood"]),
            }
        )
        for variant in variants:
            trained, method, opts = VARIANTS[variant]
            for seed in seeds if trained else [None]:
                tag = f"{run_name}/{variant}" + (f"/seed{seed}" if seed is not None else "")
                opts = {**opts, "tau": mcm_tau} if method == "mcm" else opts
                model = build_model(bb, classes, negatives, device=device, detail=detail, **{**head_options, **opts})
                if trained:
                    cfg = TrainConfig(**{**cfg0.to_dict(), "seed": seed})
                    fit(
                        model,
                        F["train"],
                        F["val"],
                        cfg,
                        out / tag / "checkpoint",
                        progress=False,
                        save_state=False,
                        extra={"benchmark": {"run": run_name, "variant": variant}},
                    )
                elif F["val"] is not None:  # zero-shot: calibrated the same way, so thresholds compare
                    from .calibrate import calibrate_threshold

                    cal = calibrate_threshold(
                        model.head, model.text, model.logit_bias, F["val"], device=model.device, method=method
                    )
                    model.threshold, model.calibrated = cal["threshold"], True
                m = evaluate_features(
                    model,
                    F["test"],
                    F["ood"],
                    out / tag,
                    method=method,
                    info={"variant": variant, "method_name": titles[variant], "run": run_name, "seed": seed},
                    plots=False,
                    convention=convention,
                )
                results[variant].append(m)
                if titles[variant] not in curves:  # the first run and seed
                    sc = score_sets(
                        model.head,
                        model.text,
                        model.logit_bias,
                        F["test"],
                        F["ood"],
                        device=model.device,
                        method=method,
                    )
                    curves[titles[variant]] = (sc.is_id, sc.score)
                log(
                    f"  {tag}: acc {M.fmt_pct(m['accuracy'])}  AUROC {M.fmt_pct(m['auroc'])}  "
                    f"FPR95 {M.fmt_pct(m['fpr95'])}"
                )
    table, summary = aggregate_table(results, titles)
    plot_roc(out / "roc.png", curves, title=f"ROC, {plans[0].name} ({bb.name})")
    doc = {
        "backbone": bb.describe(),
        "seeds": list(seeds),
        "runs": runs,
        "train_config": cfg0.to_dict(),
        "val_fraction": val_fraction,
        "head_options": head_options,
        "mcm_tau": mcm_tau,
        "convention": convention,
        "negatives": negatives if isinstance(negatives, str) else list(negatives),
        "overlap": overlaps or None,
        "summary": summary,
    }
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    warning = "".join(f"**⚠ {run}: {leak['message']}.**\n\n" for run, leak in overlaps.items())
    (out / "summary.md").write_text(
        f"# Benchmark: {', '.join(sorted({p.name for p in plans}))} on {bb.describe()}\n\n"
        + warning
        + f"Mean ± sample std over {len(plans)} run(s) × seeds {list(seeds)} for trained heads "
        f"(zero-shot rows: one value per run). Epochs {cfg0.epochs}, batch {cfg0.batch_size}, lr {cfg0.lr}, "
        f"{cfg0.scheduler} schedule; thresholds calibrated at 95% TPR on {val_fraction:.0%} of the training images. "
        f"Metrics: `{convention}` convention ({M.CONVENTION_NOTES[convention]}); MCM at T = {mcm_tau:g}; "
        f"negative classes: {doc['negatives']}.\n\n" + table
    )
    return doc
