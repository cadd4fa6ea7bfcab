"""Evaluation: ID accuracy, AUROC, FPR95, AUPR (HVL_SPEC §7), reports, plots, baselines, aggregation.

``evaluate_features`` scores cached embeddings with a head and writes, under an output folder:

- ``metrics.json``: ``accuracy`` (None without labels), ``auroc``, ``fpr95``, ``aupr``,
  ``aupr_out``, ``n_id``, ``n_ood`` (fractions in [0, 1]), ``t95`` (the MSP accepting 95% of these ID
  images), the model's ``threshold`` with the ID/OOD acceptance rates it gives, per-class
  accuracy, and what was skipped;
- ``scores.csv``: ``path,msp,is_id,label,pred,known,group`` per image;
- ``roc.png`` (the ROC curve, the FPR95 point marked) and ``hist.png`` (ID vs OOD MSP histogram
  with the thresholds);
- ``report.md``: the same numbers as a markdown table.

Methods (all through the same code): ``hvl`` (the head's p_ID), ``mcm`` (zero-shot single-scale
CLIP MCM: softmax of cos(v⁰, t)/tau, evaluated with an untrained head's p⁰). Zero-shot HVL is
``hvl`` with an untrained head; the Table 2 ablations are heads trained with one switch off.
"""
from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Sequence

import numpy as np

from . import metrics as M
from .features import FeatureSet
from .train import head_scores

METHODS = ("hvl", "mcm")
#: the variants a benchmark run trains / evaluates (name -> (trained?, method, head options))
VARIANTS: dict[str, tuple[bool, str, dict]] = {
    "mcm": (False, "mcm", {}),
    "zero-shot-hvl": (False, "hvl", {}),
    "hvl": (True, "hvl", {}),
    "no-fusion": (True, "hvl", {"fusion": False}),
    "no-ood-loss": (True, "hvl", {"use_ood_loss": False}),
    "entropy-selection": (True, "hvl", {"pseudo_ood_selection": "entropy"}),
    "no-propagation": (True, "hvl", {"propagate": False}),
}
VARIANT_TITLES = {
    "mcm": "MCM (zero-shot CLIP, single scale)",
    "zero-shot-hvl": "HVL, untrained head (zero-shot)",
    "hvl": "HVL (trained)",
    "no-fusion": "HVL w/o cross-scale fusion",
    "no-ood-loss": "HVL w/o L_OOD",
    "entropy-selection": "HVL, pseudo-OOD by entropy (background)",
    "no-propagation": "HVL w/o lower-scale propagation",
}
REPORT_METRICS = (("accuracy", "ID acc. ↑"), ("auroc", "AUROC ↑"), ("fpr95", "FPR95 ↓"), ("aupr", "AUPR-In ↑"))


@dataclass
class ScoredSet:
    """Per-image results of one evaluation."""

    paths: list[str]
    msp: np.ndarray
    is_id: np.ndarray
    label: np.ndarray  # class index, -1 when unknown / OOD
    pred: np.ndarray
    groups: list[str]


def score_sets(head, text, logit_bias, id_feats: FeatureSet, ood_feats: FeatureSet | None, device="cpu",
               method: str = "hvl", **overrides) -> ScoredSet:
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    parts = [(id_feats, True)] + ([(ood_feats, False)] if ood_feats is not None and len(ood_feats) else [])
    paths, msp, is_id, label, pred, groups = [], [], [], [], [], []
    for fs, known in parts:
        s, p = head_scores(head, text, logit_bias, fs, device=device, method=method, **overrides)
        paths += fs.paths
        groups += fs.groups
        msp.append(s.numpy())
        pred.append(p.argmax(-1).numpy() if len(p) else np.zeros(0, int))
        is_id.append(np.full(len(fs), known))
        label.append(fs.labels.numpy() if known else np.full(len(fs), -1))
    return ScoredSet(paths, np.concatenate(msp).astype(np.float64), np.concatenate(is_id), np.concatenate(label),
                     np.concatenate(pred), groups)


def compute_metrics(scored: ScoredSet, class_names: Sequence[str], threshold: float | None = None) -> dict:
    y = scored.is_id
    out = M.ood_metrics(y, scored.msp)
    labelled = y & (scored.label >= 0)
    if labelled.any():
        out["accuracy"] = M.accuracy(scored.pred[labelled], scored.label[labelled])
        out["n_labelled"] = int(labelled.sum())
        out["per_class_accuracy"] = {
            c: (M.accuracy(scored.pred[labelled & (scored.label == i)], scored.label[labelled & (scored.label == i)])
                if (labelled & (scored.label == i)).any() else None) for i, c in enumerate(class_names)}
    else:
        out["accuracy"] = None
        out["n_labelled"] = 0
    if threshold is not None:
        r = M.rates_at_threshold(y, scored.msp, threshold)
        out["threshold"] = r["threshold"]
        out["id_accepted_at_threshold"] = r["tpr"]
        out["ood_accepted_at_threshold"] = r["fpr"]
    return out


# --------------------------------------------------------------------------- outputs


def write_scores_csv(path: Path, scored: ScoredSet, class_names: Sequence[str], threshold: float | None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "msp", "is_id", "label", "pred", "known", "group"])
        for i, p in enumerate(scored.paths):
            lab = class_names[scored.label[i]] if scored.label[i] >= 0 else ""
            known = "" if threshold is None else int(scored.msp[i] >= threshold)
            w.writerow([p, f"{scored.msp[i]:.8g}", int(scored.is_id[i]), lab, class_names[int(scored.pred[i])],
                        known, scored.groups[i]])


def _figure(w=4.6, h=3.6):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(w, h), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_roc(path: Path, curves: dict[str, tuple[np.ndarray, np.ndarray]], title: str = "ROC (ID positive)") -> None:
    """ROC curves ``{name: (is_id, msp)}``, with each FPR95 point marked. No pyplot: safe in servers."""
    from sklearn.metrics import roc_curve

    fig = _figure()
    ax = fig.add_subplot(111)
    for name, (y, s) in curves.items():
        if not (y.any() and (~y).any()):
            continue
        fpr, tpr, _ = roc_curve(y, s, drop_intermediate=False)
        a = M.auroc(y, s)
        line, = ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUROC {100 * a:.1f})")
        f95, t95, _ = M.roc_point(y, s)
        ax.plot([f95], [t95], "o", color=line.get_color(), ms=4)
    ax.plot([0, 1], [0, 1], ":", color="grey", lw=0.8)
    ax.axhline(0.95, color="grey", lw=0.6, ls="--")
    if not ax.get_legend_handles_labels()[0]:
        ax.text(0.5, 0.5, "no ROC: needs ID and OOD images", ha="center", va="center", fontsize=9)
    ax.set_xlabel("FPR (OOD accepted as known)")
    ax.set_ylabel("TPR (ID accepted)")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.01)
    ax.set_title(title, fontsize=10)
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=7, loc="lower right")
    fig.tight_layout()
    fig.savefig(path)


def plot_histogram(path: Path, scored: ScoredSet, threshold: float | None, t95: float | None, title: str = "") -> None:
    fig = _figure()
    ax = fig.add_subplot(111)
    lo, hi = float(scored.msp.min()), float(scored.msp.max())
    pad = max(hi - lo, 1e-3) * 0.05
    bins = np.linspace(lo - pad, hi + pad, 31)
    ax.hist(scored.msp[scored.is_id], bins=bins, alpha=0.6, label=f"ID ({int(scored.is_id.sum())})", color="tab:blue")
    if (~scored.is_id).any():
        ax.hist(scored.msp[~scored.is_id], bins=bins, alpha=0.6, label=f"OOD ({int((~scored.is_id).sum())})",
                color="tab:red")
    if t95 is not None:
        ax.axvline(t95, color="black", ls="--", lw=1, label=f"95% ID TPR here ({t95:.3f})")
    if threshold is not None:
        ax.axvline(threshold, color="tab:green", lw=1.2, label=f"model threshold ({threshold:.3f})")
    ax.set_xlabel("MSP (max p_ID)")
    ax.set_ylabel("images")
    ax.set_title(title or "MSP, ID vs OOD", fontsize=10)
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path)


def markdown_table(rows: list[dict], columns=REPORT_METRICS, name_col: str = "Method") -> str:
    """Rows ``{"name": ..., metric: (mean, std) or value}`` → a markdown table in percent."""
    head = f"| {name_col} | " + " | ".join(t for _, t in columns) + " |"
    sep = "|---|" + "---:|" * len(columns)
    lines = [head, sep]
    for r in rows:
        cells = []
        for k, _ in columns:
            v = r.get(k)
            if isinstance(v, (tuple, list)):
                cells.append(M.fmt_pct(v[0], v[1]))
            else:
                cells.append(M.fmt_pct(v))
        lines.append(f"| {r['name']} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_report(out: str | os.PathLike, scored: ScoredSet, class_names: Sequence[str], threshold: float | None,
                 info: dict | None = None, title: str = "HVL evaluation", plots: bool = True) -> dict:
    """Write metrics.json, scores.csv, roc.png, hist.png and report.md under ``out``; returns the metrics."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = compute_metrics(scored, class_names, threshold)
    m.update(info or {})
    m["classes"] = list(class_names)
    m["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    (out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    write_scores_csv(out / "scores.csv", scored, class_names, threshold)
    if plots:
        plot_roc(out / "roc.png", {info.get("method_name", "HVL") if info else "HVL": (scored.is_id, scored.msp)},
                 title=title)
        plot_histogram(out / "hist.png", scored, threshold, m.get("t95"), title=title)
    lines = [f"# {title}", ""]
    if info:
        for k in ("backbone", "checkpoint", "method", "id_dir", "ood_dir"):
            if info.get(k):
                lines.append(f"- {k.replace('_', ' ')}: `{info[k]}`")
    lines.append(f"- ID images: {m['n_id']} ({m['n_labelled']} labelled), OOD images: {m['n_ood']}")
    if m.get("n_skipped"):
        lines.append(f"- unreadable images skipped: {m['n_skipped']}")
    lines += ["", markdown_table([{"name": info.get("method_name", "HVL") if info else "HVL", **m}]), ""]
    if threshold is not None:
        lines.append(f"At the model's threshold {threshold:.4f}: {M.fmt_pct(m.get('id_accepted_at_threshold'))}% of ID "
                     f"and {M.fmt_pct(m.get('ood_accepted_at_threshold'))}% of OOD images are accepted as known.")
    if m.get("t95") is not None:
        lines.append(f"The MSP accepting 95% of these ID images (t95) is {m['t95']:.4f}.")
    lines.append("")
    lines.append("Metrics (HVL_SPEC §7): ID positive, score = MSP; FPR95 = fpr[argmax(tpr ≥ 0.95)] of the exact "
                 "ROC curve (roc_curve(..., drop_intermediate=False)); AUPR-In = average precision with ID positive.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return m


# --------------------------------------------------------------------------- aggregation


def aggregate(results: Sequence[dict], keys=("accuracy", "auroc", "fpr95", "aupr", "aupr_out")) -> dict:
    """Mean ± sample std (n−1) of each metric over repeated runs (seeds, folds)."""
    out = {}
    for k in keys:
        mean, std, n = M.mean_std(r.get(k) for r in results)
        out[k] = {"mean": mean, "std": std, "n": n}
    return out


def find_metrics(dirs: Sequence[str | os.PathLike]) -> list[tuple[Path, dict]]:
    found = []
    for d in dirs:
        d = Path(d)
        files = [d] if d.is_file() else sorted(d.rglob("metrics.json"))
        for f in files:
            try:
                found.append((f, json.loads(f.read_text())))
            except (OSError, json.JSONDecodeError) as e:
                raise ValueError(f"{f}: not a readable metrics.json ({e})") from None
    return found


def aggregate_table(groups: dict[str, list[dict]], titles: dict[str, str] | None = None) -> tuple[str, dict]:
    """``{name: [metrics, ...]}`` → (markdown table with mean ± std, JSON-ready summary)."""
    rows, summary = [], {}
    for name, results in groups.items():
        agg = aggregate(results)
        summary[name] = {**agg, "runs": len(results)}
        rows.append({"name": (titles or {}).get(name, name) + (f" (n={len(results)})" if len(results) > 1 else ""),
                     **{k: (v["mean"], v["std"] if v["n"] > 1 else None) for k, v in agg.items()}})
    return markdown_table(rows), summary


# --------------------------------------------------------------------------- models on cached features


def evaluate_features(model, id_feats: FeatureSet, ood_feats: FeatureSet | None, out: str | os.PathLike,
                      method: str = "hvl", threshold: float | None = None, overrides: dict | None = None,
                      info: dict | None = None, title: str | None = None, plots: bool = True, head=None) -> dict:
    """Score ID and OOD embeddings with ``model``'s head (or ``head``) and write the report to ``out``."""
    overrides = dict(overrides or {})
    head = head if head is not None else model.head
    thr = model.threshold if threshold is None else float(threshold)
    scored = score_sets(head, model.text, model.logit_bias, id_feats, ood_feats, device=model.device, method=method,
                        **overrides)
    skipped = list(id_feats.skipped) + (list(ood_feats.skipped) if ood_feats is not None else [])
    meta = {"method": method, "method_name": (info or {}).get("method_name") or ("MCM" if method == "mcm" else "HVL"),
            "backbone": model.backbone.describe(), "checkpoint": model.checkpoint, "calibrated": model.calibrated,
            "head_config": {**head.config.to_dict(), **overrides}, "n_skipped": len(skipped),
            "skipped": [{"path": p, "reason": r} for p, r in skipped[:200]]}
    meta.update(info or {})
    return write_report(out, scored, list(model.classes.names), thr, meta,
                        title=title or f"{meta['method_name']} on {model.backbone.name}", plots=plots)


# --------------------------------------------------------------------------- benchmark


def run_benchmark(backbone: str, plans: Sequence, out: str | os.PathLike, seeds: Sequence[int] = (0,),
                  variants: Sequence[str] = tuple(VARIANTS), train_config=None, val_fraction: float = 0.1,
                  head_options: dict | None = None, cache=None, device: str = "auto", detail: str = "upsample",
                  progress: bool = True, encode_kw: dict | None = None, log=None) -> dict:
    """Train and evaluate every variant (baselines, HVL, Table 2 ablations) on each plan (fold /
    task) and seed, all on the same cached features; write per-run reports under
    ``out/<run>/<variant>[/seed<k>]`` and ``out/summary.{md,json}`` (mean ± std over runs) plus
    ``out/roc.png`` (one ROC per variant, first run and seed)."""
    import sys

    from .backbones import create_backbone
    from .data import class_set_for, split_validation
    from .features import features_of_items
    from .model import load_model
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
