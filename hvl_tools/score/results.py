"""``DIR/scores.csv`` (appended and fsync'd per batch, so a killed run loses at most the batch in
flight), ``DIR/run.json`` (what the scores depend on; a rerun must match it), and at the end
``summary.json`` and ``scores.png``."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from pathlib import Path

import numpy as np

from hvl_core.files import atomic_write

from .scorer import COLUMNS

SCORES = "scores.csv"
RUN = "run.json"
SUMMARY = "summary.json"
HISTOGRAM = "scores.png"


class ResumeError(ValueError):
    """An output folder whose earlier scores came from another model or settings."""


def _fmt(row: dict) -> list:
    out = []
    for c in COLUMNS:
        v = row[c]
        if isinstance(v, float):
            v = "" if math.isnan(v) else f"{v:.9g}"
        elif isinstance(v, bool):
            v = "true" if v else "false"
        out.append(v)
    return out


class ScoresFile:
    """scores.csv, resumable. ``done`` is what earlier runs finished; ``append(rows)`` writes a
    batch and makes it durable (flush + fsync) before returning."""

    def __init__(self, out_dir: str | os.PathLike):
        self.path = Path(out_dir) / SCORES
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.done: dict[str, dict] = {}
        if self.path.exists():
            self._repair()
            self.done = {r["path"]: r for r in read_scores(self.path)}
        self._f = open(self.path, "a", newline="", encoding="utf-8")
        if self._f.tell() == 0:
            self._write([list(COLUMNS)])

    def _repair(self) -> None:
        """Cut a line torn by a kill in the middle of a write (everything before it was fsync'd)."""
        data = self.path.read_bytes()
        if data and not data.endswith(b"\n"):
            with open(self.path, "r+b") as f:
                f.truncate(data.rfind(b"\n") + 1)

    def _write(self, lines: list[list]) -> None:
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerows(lines)
        self._f.write(buf.getvalue())
        self._f.flush()
        os.fsync(self._f.fileno())

    def append(self, rows: list[dict]) -> None:
        if rows:
            self._write([_fmt(r) for r in rows])
            for r in rows:
                self.done[r["path"]] = r

    def close(self) -> None:
        self._f.close()

    def __enter__(self) -> ScoresFile:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def read_scores(path: str | os.PathLike) -> list[dict]:
    """Rows of a scores.csv, typed (score/msp float, NaN for errors; known bool). A row with the
    wrong number of fields (a torn write) is dropped."""
    rows = []
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        header = next(reader, None)
        if header is None:
            return []
        if tuple(header) != COLUMNS:
            raise ResumeError(f"{path} is not an hvl score file (its header is {header})")
        for rec in reader:
            if len(rec) != len(COLUMNS):
                continue
            r = dict(zip(COLUMNS, rec))
            r["score"] = float(r["score"]) if r["score"] else float("nan")
            r["msp"] = float(r["msp"]) if r["msp"] else float("nan")
            r["p_value"] = float(r["p_value"]) if r["p_value"] else float("nan")
            r["known"] = r["known"] == "true"
            rows.append(r)
    return rows


def check_run(out_dir: str | os.PathLike, identity: dict) -> None:
    """Write run.json, or refuse when the folder holds scores of another model or settings."""
    out = Path(out_dir)
    p = out / RUN
    if p.exists():
        try:
            before = json.loads(p.read_text(encoding="utf-8")).get("model")
        except (OSError, ValueError, AttributeError):
            before = None
        if before != identity:
            diff = sorted(k for k in set(identity) | set(before or {}) if (before or {}).get(k) != identity.get(k))
            raise ResumeError(
                f"{out} holds scores made with another model or settings "
                f"({', '.join(diff) or 'unreadable ' + RUN} differ); use another --out folder, "
                f"or delete {out / SCORES} and {p} to start over"
            )
    elif (out / SCORES).exists() and (out / SCORES).stat().st_size:
        raise ResumeError(
            f"{out / SCORES} exists without {RUN}, so it cannot be resumed safely; use another "
            "--out folder or delete it"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write(p, json.dumps({"format": "hvl-score-run", "model": identity}, indent=1) + "\n")


def bh_summary(rows: list[dict], fdr: float, smallest_p: float | None = None) -> dict | None:
    """Benjamini–Hochberg over the rows' conformal p-values — each the p-value of the stage that
    decided — (None when there are none); ``note`` says when BH cannot flag single images at this size."""
    from hvl_core.conformal import bh_select
    from hvl_core.verdicts import bh_note

    ok = [r for r in rows if not r["error"] and not math.isnan(r["p_value"])]
    if not ok:
        return None
    flagged = bh_select([r["p_value"] for r in ok], fdr)
    return {
        "fdr": fdr,
        "unknown": int(flagged.sum()),
        "known": int((~flagged).sum()),
        "unknown_paths": [r["path"] for r, f in zip(ok, flagged) if f],
        "note": bh_note(smallest_p, len(ok), fdr),
    }


def summarize(rows: list[dict], identity: dict, score_name: str, run: dict, fdr: float = 0.05) -> dict:
    """summary.json: counts, score quantiles, predicted labels, the model and this run's speed;
    with conformal p-values, the Benjamini–Hochberg selection at ``fdr`` ("bh")."""
    ok = [r for r in rows if not r["error"]]
    s = np.array([r["score"] for r in ok], dtype=np.float64)
    labels: dict[str, int] = {}
    for r in ok:
        labels[r["label"]] = labels.get(r["label"], 0) + 1
    known = sum(r["known"] for r in ok)
    out_of_scope = sum(r["outcome"] == "out of scope" for r in ok)
    q = {f"p{int(p)}": round(float(np.percentile(s, p)), 6) for p in (1, 5, 25, 50, 75, 95, 99)} if len(s) else {}
    return {
        "format": "hvl-score-summary",
        "files": len(rows),
        "scored": len(ok),
        "errors": len(rows) - len(ok),
        "known": known,
        "unknown": len(ok) - known - out_of_scope,
        "out_of_scope": out_of_scope,
        "threshold": identity["threshold"],
        "score": score_name,
        "score_mean": round(float(s.mean()), 6) if len(s) else None,
        "score_quantiles": q,
        "predicted_labels": dict(sorted(labels.items())),
        "model": identity,
        "run": run,
        "bh": bh_summary(rows, fdr, identity.get("smallest_p")),
    }


def plot_scores(path: str | os.PathLike, rows: list[dict], threshold: float, score_name: str) -> None:
    """Histogram of the scores, known and unknown apart, with the threshold."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ok = [r for r in rows if not r["error"]]
    s = np.array([r["score"] for r in ok], dtype=np.float64)
    k = np.array([r["known"] for r in ok], dtype=bool)
    fig, ax = plt.subplots(figsize=(5.2, 3.6), dpi=110)
    lo, hi = (float(s.min()), float(s.max())) if len(s) else (0.0, 1.0)
    lo, hi = min(lo, threshold), max(hi, threshold)
    bins = np.linspace(lo, hi if hi > lo else lo + 1e-6, 41)
    ax.hist(s[k], bins=bins, color="tab:blue", alpha=0.7, label=f"known ({int(k.sum())})")
    ax.hist(s[~k], bins=bins, color="tab:red", alpha=0.7, label=f"unknown ({int((~k).sum())})")
    ax.axvline(threshold, color="k", ls="--", lw=1, label=f"threshold {threshold:.3g}")
    ax.set_xlabel(score_name.upper())
    ax.set_ylabel("images")
    ax.set_title(f"{len(ok)} images scored")
    ax.legend(fontsize=8)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    plt.close(fig)
    atomic_write(path, buf.getvalue())
