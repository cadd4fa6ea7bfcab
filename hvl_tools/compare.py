"""Comparison runs: baselines, HVL and its ablations trained and evaluated on the same cached
features, per plan (fold / task) and seed, with a summary table."""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

from . import metrics as M
from .aggregate import aggregate_table
from .config import VARIANT_TITLES, VARIANTS
from .evaluate import evaluate_features
from .reports import plot_roc
from .scoring import score_sets


def run_benchmark(backbone: str, plans: Sequence, out: str | os.PathLike, seeds: Sequence[int] = (0,),
                  variants: Sequence[str] = tuple(VARIANTS), train_config=None, val_fraction: float = 0.1,
                  head_options: dict | None = None, cache=None, device: str = "auto", detail: str = "upsample",
                  progress: bool = True, encode_kw: dict | None = None, log=None) -> dict:
    """Train and evaluate every variant (baselines, HVL, Table 2 ablations) on each plan (fold /
    task) and seed, all on the same cached features; write per-run reports under
    ``out/<run>/<variant>[/seed<k>]`` and ``out/summary.{md,json}`` (mean ± std over runs) plus
    ``out/roc.png`` (one ROC per variant, first run and seed)."""
    import sys

    from hvl_core.backbones import create_backbone
    from hvl_core.model import load_model

    from .data import class_set_for, split_validation
    from .features import features_of_items
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
    bb = create_backbone(backbone)
    results: dict[str, list[dict]] = {v: [] for v in variants}
    curves: dict[str, tuple] = {}
    runs = []
    for plan in plans:
        run_name = plan.name + (f"-fold{plan.fold}" if plan.fold is not None else "") + (f"-{plan.task}" if plan.task else "")
        classes = class_set_for(plan.class_names, plan.preset)
        base = load_model(bb, classes=classes, device=device, detail=detail, **head_options)
        tr, va = split_validation(plan.train, val_fraction)
        kw = dict(cache=cache, progress=progress, **encode_kw)
        F = {"train": features_of_items(base, tr, desc="train", **kw),
             "val": features_of_items(base, va, desc="val", **kw) if va else None,
             "test": features_of_items(base, plan.test, desc="test", **kw),
             "ood": features_of_items(base, plan.ood, desc="ood", **kw)}
        log(f"[{run_name}] {len(F['train'])} train, {len(va)} val, {len(F['test'])} ID test, {len(F['ood'])} OOD "
            f"images; backbone {bb.describe()}")
        runs.append({"run": run_name, "n_train": len(F["train"]), "n_val": len(va), "n_test": len(F["test"]),
                     "n_ood": len(F["ood"])})
        for variant in variants:
            trained, method, opts = VARIANTS[variant]
            for seed in (seeds if trained else [None]):
                tag = f"{run_name}/{variant}" + (f"/seed{seed}" if seed is not None else "")
                model = load_model(bb, classes=classes, device=device, detail=detail, **{**head_options, **opts})
                if trained:
                    cfg = TrainConfig(**{**cfg0.to_dict(), "seed": seed})
                    fit(model, F["train"], F["val"], cfg, out / tag / "checkpoint", progress=False, save_state=False,
                        extra={"benchmark": {"run": run_name, "variant": variant}})
                elif F["val"] is not None:  # zero-shot: calibrated the same way, so thresholds compare
                    from .calibrate import calibrate_threshold

                    cal = calibrate_threshold(model.head, model.text, model.logit_bias, F["val"], device=model.device,
                                              method=method)
                    model.threshold, model.calibrated = cal["threshold"], True
                m = evaluate_features(model, F["test"], F["ood"], out / tag, method=method,
                                      info={"variant": variant, "method_name": VARIANT_TITLES[variant], "run": run_name,
                                            "seed": seed}, plots=False)
                results[variant].append(m)
                if VARIANT_TITLES[variant] not in curves:  # the first run and seed
                    sc = score_sets(model.head, model.text, model.logit_bias, F["test"], F["ood"], device=model.device,
                                    method=method)
                    curves[VARIANT_TITLES[variant]] = (sc.is_id, sc.msp)
                log(f"  {tag}: acc {M.fmt_pct(m['accuracy'])}  AUROC {M.fmt_pct(m['auroc'])}  "
                    f"FPR95 {M.fmt_pct(m['fpr95'])}")
    table, summary = aggregate_table(results, VARIANT_TITLES)
    plot_roc(out / "roc.png", curves, title=f"ROC, {plans[0].name} ({bb.name})")
    doc = {"backbone": bb.describe(), "seeds": list(seeds), "runs": runs, "train_config": cfg0.to_dict(),
           "val_fraction": val_fraction, "head_options": head_options, "summary": summary}
    (out / "summary.json").write_text(json.dumps(doc, indent=2) + "\n")
    (out / "summary.md").write_text(
        f"# Benchmark: {', '.join(sorted({p.name for p in plans}))} on {bb.describe()}\n\n"
        f"Mean ± sample std over {len(plans)} run(s) × seeds {list(seeds)} for trained heads "
        f"(zero-shot rows: one value per run). Epochs {cfg0.epochs}, batch {cfg0.batch_size}, lr {cfg0.lr}, "
        f"{cfg0.scheduler} schedule; thresholds calibrated at 95% TPR on {val_fraction:.0%} of the training images.\n\n"
        + table)
    return doc

