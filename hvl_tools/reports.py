"""Evaluation outputs: ``metrics.json``, ``scores.csv``, ROC and histogram plots, ``report.md``,
markdown tables and the training-loss plot. No pyplot: safe in servers."""

from __future__ import annotations

import csv
import datetime as _dt
import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from hvl_core import scores

from . import metrics as M
from .embedding_scores import ScoredSet
from .metrics import compute_metrics

REPORT_METRICS = (("accuracy", "ID acc. ↑"), ("auroc", "AUROC ↑"), ("fpr95", "FPR95 ↓"), ("aupr", "AUPR-In ↑"))


def write_scores_csv(path: Path, scored: ScoredSet, class_names: Sequence[str], threshold: float | None) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["path", "score", "is_id", "label", "pred", "known", "group"])
        for i, p in enumerate(scored.paths):
            lab = class_names[scored.label[i]] if scored.label[i] >= 0 else ""
            known = "" if threshold is None else int(scored.score[i] >= threshold)
            w.writerow(
                [
                    p,
                    f"{scored.score[i]:.8g}",
                    int(scored.is_id[i]),
                    lab,
                    class_names[int(scored.pred[i])],
                    known,
                    scored.groups[i],
                ]
            )


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
        (line,) = ax.plot(fpr, tpr, lw=1.6, label=f"{name} (AUROC {100 * a:.1f})")
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
    lo, hi = float(scored.score.min()), float(scored.score.max())
    pad = max(hi - lo, 1e-3) * 0.05
    bins = np.linspace(lo - pad, hi + pad, 31)
    ax.hist(scored.score[scored.is_id], bins=bins, alpha=0.6, label=f"ID ({int(scored.is_id.sum())})", color="tab:blue")
    if (~scored.is_id).any():
        ax.hist(
            scored.score[~scored.is_id],
            bins=bins,
            alpha=0.6,
            label=f"OOD ({int((~scored.is_id).sum())})",
            color="tab:red",
        )
    if t95 is not None:
        ax.axvline(t95, color="black", ls="--", lw=1, label=f"95% ID TPR here ({t95:.3f})")
    if threshold is not None:
        ax.axvline(threshold, color="tab:green", lw=1.2, label=f"model threshold ({threshold:.3f})")
    name = scores.SCORES[scored.score_name].axis if scored.score_name in scores.SCORES else scored.score_name
    ax.set_xlabel(name)
    ax.set_ylabel("images")
    ax.set_title(title or f"{name}, ID vs OOD", fontsize=10)
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


def write_report(
    out: str | os.PathLike,
    scored: ScoredSet,
    class_names: Sequence[str],
    threshold: float | None,
    info: dict | None = None,
    title: str = "HVL evaluation",
    plots: bool = True,
    convention: str = M.DEFAULT_CONVENTION,
) -> dict:
    """Write metrics.json, scores.csv, roc.png, hist.png and report.md under ``out``; returns the
    metrics (in the named metric convention, ``metrics.CONVENTIONS``)."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    m = compute_metrics(scored, class_names, threshold, convention)
    m.update(info or {})
    m["classes"] = list(class_names)
    m["created"] = _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds")
    (out / "metrics.json").write_text(json.dumps(m, indent=2) + "\n")
    write_scores_csv(out / "scores.csv", scored, class_names, threshold)
    if plots:
        plot_roc(
            out / "roc.png",
            {info.get("method_name", "HVL") if info else "HVL": (scored.is_id, scored.score)},
            title=title,
        )
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
        lines.append(
            f"At the model's threshold {threshold:.4f}: {M.fmt_pct(m.get('id_accepted_at_threshold'))}% of ID "
            f"and {M.fmt_pct(m.get('ood_accepted_at_threshold'))}% of OOD images are accepted as known."
        )
    if m.get("t95") is not None:
        lines.append(f"The MSP accepting 95% of these ID images (t95) is {m['t95']:.4f}.")
    lines.append("")
    if info and info.get("overlap"):
        lines.append(f"**⚠ {info['overlap']['message']}.**")
    lines.append(f"Metrics (HVL_SPEC §7), `{convention}` convention: {M.CONVENTION_NOTES[convention]}; score = MSP.")
    (out / "report.md").write_text("\n".join(lines) + "\n")
    return m


def plot_losses(path: Path, history: list[dict], title: str = "training loss") -> None:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(4.6, 3.2), dpi=110)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(111)
    ep = [h["epoch"] for h in history]
    ax.plot(ep, [h["loss_id"] for h in history], label="L_ID")
    ax.plot(ep, [h["loss_ood"] for h in history], label="L_OOD")
    ax.set_xlabel("epoch")
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
