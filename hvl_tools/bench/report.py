"""Markdown rendering and writing of a benchmark result."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

from hvl_core.files import atomic_write

from .settings import (
    PAPER_BATCH,
    PAPER_MEMORY_GB,
    TARGET_CACHED_SPEEDUP,
    TARGET_HVL_OVER_ENCODER,
    TARGET_SCORE_OVER_ENCODER,
)

# --------------------------------------------------------------------------- reporting


def _spread(run: dict, a: str = "hvl_pipeline", b: str = "encoder") -> str:
    """' (lo–hi)': the range of the per-round ratios a/b behind a median, when the raw times are there."""
    raw = run.get("latency", {}).get("raw_s", {})
    if a not in raw or b not in raw or len(raw[a]) < 2:
        return ""
    rs = [x / y for x, y in zip(raw[a], raw[b])]
    return f" ({min(rs):.2f}–{max(rs):.2f})"


def _f(x, nd=2) -> str:
    if x is None:
        return "–"
    if isinstance(x, float) and (abs(x) >= 1000 or x == int(x) and abs(x) >= 100):
        return f"{x:,.0f}"
    return f"{x:.{nd}f}" if isinstance(x, float) else str(x)


def _overhead_reason(run: dict) -> str:
    lat = run["latency"]
    st = lat["stages_ms"]
    enc = lat["ms"]["encoder"]
    parts = sorted(((v, k) for k, v in st.items() if k != "threshold_update"), reverse=True)
    parts.append((st["threshold_update"], "head + Prediction"))
    parts.sort(reverse=True)
    desc = ", ".join(f"{k} {v:.1f} ms" for v, k in parts if v > 0)
    return f"{run['backbone']} n={run['n']}: the encoder takes {enc:.1f} ms; outside it: {desc}"


def render_markdown(r: dict) -> str:
    info = r["device_info"]
    s = r["settings"]
    L = [f"# HVL benchmark — {r['device']}", ""]
    if r.get("partial"):
        L += ["**Partial result** (the run was cut short); the configurations below are complete.", ""]
    L += [
        f"torch {info['torch']}, Python {info['python']}, {info['torch_threads']} torch threads on "
        f"{info['cpu_count']} cores"
        + (f", {info['gpu']} ({info['gpu_memory_gb']} GB)" if "gpu" in info else "")
        + (f"; load average at start {info['load_avg_1m']}" if "load_avg_1m" in info else "")
        + ".",
        f"Run {r.get('started', '')}, {r.get('seconds', 0):.0f} s. Repeats {s['repeats']} (warm-up {s['warmup']}), "
        f"interleaved; times are medians, ratios are medians of per-round ratios (their range in brackets). "
        f"Test images: synthetic "
        f"{s['image_size'][0]}×{s['image_size'][1]} JPEGs. Classes: preset {s['preset']}.",
        "",
    ]
    if s.get("score_only"):
        return "\n".join(L + score_lines(r)) + "\n"
    h = r["headline"]
    tm = r["targets_met"]
    head_run = next((x for x in r["runs"] if (x["backbone"], x["n"]) == (h["backbone"], h["n"])), {})
    L += [
        f"## Headline ({h['backbone']}, n={h['n']})",
        "",
        "| measure | value | target |",
        "|---|---|---|",
        f"| full HVL pipeline / bare encoder on the same crops (`hvl_over_encoder`) | {r['hvl_over_encoder']:.3f}"
        f"{_spread(head_run)} | "
        f"≤ {TARGET_HVL_OVER_ENCODER:.2f} {'✅' if tm['hvl_over_encoder'] else '❌'} |",
        f"| full HVL pipeline / one single-scale forward (`hvl_over_single_scale`) | {r['hvl_over_single_scale']:.2f} | "
        "(the cost of the hierarchy) |",
        f"| cached-feature epoch speed-up over end to end (`cached_train_speedup`) | {r['cached_train_speedup']:.0f}× | "
        f"≥ {TARGET_CACHED_SPEEDUP:.0f}× {'✅' if tm['cached_train_speedup'] else '❌'} |",
        f"| 100 epochs on {s['train_images']} cached images | {r['train_100_epochs_s']:.1f} s | |",
        f"| threshold update (`model.decide`) | {r['threshold_update_ms']:.2f} ms | |",
        f"| peak memory, one image (`peak_memory_mb`) | {r['peak_memory_mb']:.0f} MB | paper: {PAPER_MEMORY_GB} GB |",
    ]
    if "score_over_encoder" in r:
        L.append(
            f"| hvl score images/s / bare encoder images/s, same crops (`score_over_encoder`) | "
            f"{r['score_over_encoder']:.3f} ({_f(r['score_images_per_s'])} images/s) | ≥ "
            f"{TARGET_SCORE_OVER_ENCODER} {'✅' if tm.get('score_over_encoder') else '❌'} |"
        )
    L.append("")
    reasons = [_overhead_reason(run) for run in r["runs"] if run["hvl_over_encoder"] > TARGET_HVL_OVER_ENCODER]
    if reasons:
        L += ["Where the ratio misses 1.10, the time outside the encoder goes to (median per call):", ""]
        L += [f"- {x}" for x in reasons] + [""]
    L += [
        "## Latency per image",
        "",
        "| backbone | n | crops | HVL pipeline ms | bare encoder ms | 1 forward ms | single-scale pipeline ms | "
        "HVL/encoder | HVL/1 forward | HVL/single-scale pipeline | load ms | crops ms | head+Prediction ms | "
        "other ms | peak MB |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        lat, ms, st = run["latency"], run["latency"]["ms"], run["latency"]["stages_ms"]
        L.append(
            f"| {run['backbone']} | {run['n']} | {lat['crops']} | {_f(ms['hvl_pipeline'], 1)} | {_f(ms['encoder'], 1)} | "
            f"{_f(ms['single_scale_forward'], 1)} | {_f(ms['single_scale_pipeline'], 1)} | "
            f"{lat['hvl_over_encoder']:.3f}{_spread(run)} | {lat['hvl_over_single_scale']:.2f} | "
            f"{lat['hvl_over_single_scale_pipeline']:.2f} | {_f(st['load'], 1)} | {_f(st['crops'], 1)} | "
            f"{_f(st['threshold_update'], 2)} | {_f(st['other'], 1)} | {_f(run['memory_single']['peak_mb'], 0)} |"
        )
    gpu = "gpu" in info
    L += [
        "",
        "`other` = pipeline − encoder − load − crops − head: normalisation, host↔device copies, Python. "
        "Peak memory: "
        + (
            "`torch.cuda.max_memory_allocated` (weights included); device used (CUDA context "
            "and allocator cache included) below."
            if gpu
            else "process RSS (weights, Python and torch included), sampled every 3 ms."
        ),
        "",
    ]
    if gpu:
        L += ["| backbone | n | max allocated MB | max reserved MB | device used MB |", "|---|---|---|---|---|"]
        for run in r["runs"]:
            m = run["memory_single"]
            L.append(
                f"| {run['backbone']} | {run['n']} | {m['gpu_max_allocated_mb']:.0f} | {m['gpu_max_reserved_mb']:.0f} | "
                f"{m['gpu_device_used_mb']:.0f} |"
            )
        L.append("")
    L += [
        "## Throughput",
        "",
        "| backbone | n | images | batch | predict_batch img/s | encode_batch (features) img/s | bare encoder img/s | "
        "HVL/encoder (batched) | peak MB (one batch) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        t = run["throughput"]
        L.append(
            f"| {run['backbone']} | {run['n']} | {t['images']} | {t['batch_size']} | {_f(t['predict_images_per_s'])} | "
            f"{_f(t['features_images_per_s'])} | {_f(t['encoder_images_per_s'])} | {t['hvl_over_encoder_batched']:.3f} | "
            f"{_f(t['memory_batch']['peak_mb'], 0)} |"
        )
    L += [
        "",
        "From image files (decode included); the bare encoder runs on crops already on the device.",
        "",
        "## Training",
        "",
        f"Head + Adam (lr 0.002, batch {PAPER_BATCH}) on {s['train_images']} random cached images with "
        f"{s['train_classes']} classes (cached epoch: the project's trainer, one epoch on a fresh head); the "
        "end-to-end epoch pushes decoded images through crops → frozen encoder → head step, one batch timed and "
        "scaled to the epoch. The two alternate in rounds; the speed-up is the median of per-round ratios.",
        "",
        "| backbone | n | d | trainer | cached epoch s | (bare loop) s | end-to-end epoch s | speed-up | 100 epochs s |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        t = run["training"]
        L.append(
            f"| {run['backbone']} | {run['n']} | {t['dim']} | {t['trainer'].split(' (')[0]} | {t['cached_epoch_s']:.3f} | "
            f"{_f(t['cached_epoch_minimal_loop_s'], 3)} | {_f(t['e2e_epoch_s'], 1)} | {t['cached_train_speedup']:.0f}× | "
            f"{t['train_100_epochs_s']:.1f} ({t['train_100_epochs_note'].split(':')[0]}) |"
        )
    variants = [(run, v) for run in r["runs"] for v in run.get("variants", [])]
    if variants:
        L += [
            "",
            "## Before / after (same run, interleaved)",
            "",
            "| backbone | n | what | before | after | before ms | after ms | speed-up |",
            "|---|---|---|---|---|---|---|---|",
        ]
        for run, v in variants:
            if "error" in v:
                L.append(f"| {run['backbone']} | {run['n']} | {v['what']} | – | – | – | – | failed: {v['error']} |")
                continue
            extra = f" (compile {v['compile_s']} s)" if "compile_s" in v else ""
            L.append(
                f"| {run['backbone']} | {run['n']} | {v['what']} | {v['before']} | {v['after']} | "
                f"{_f(v['before_ms'], 1)} | {_f(v['after_ms'], 1)} | {v['speedup']:.2f}×{extra} |"
            )
    L += [""] + score_lines(r)
    L += [
        "## Checks",
        "",
        "| backbone | n | encoder calls / image | encoder calls / batch (expected) | "
        "text re-encoded on reuse | inference mode | encoder frozen | torch threads / cores |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for run in r["runs"]:
        c = run["checks"]
        L.append(
            f"| {run['backbone']} | {run['n']} | {c['encoder_calls_per_image']} | {c['encoder_calls_per_batch']} of "
            f"{c['batch_images']} images ({c['encoder_calls_per_batch_expected']}) | {c['text_encoder_calls_on_reuse']} "
            f"calls ({c['text_lookup_ms']:.3f} ms) | {c['encoder_output_is_inference_tensor']} | {c['encoder_frozen']} | "
            f"{c['torch_threads']} / {c['cpu_count']} |"
        )
    if r.get("errors"):
        L += ["", "## Not measured", ""] + [f"- {e['backbone']}: {e['error']}" for e in r["errors"]]
    return "\n".join(L) + "\n"


def score_lines(r: dict) -> list[str]:
    """The hvl score section: images/s against the bare encoder, the GPU paths, the compiled
    trainer, Ray against local."""
    runs = [x for x in r["runs"] if "score" in x]
    if not runs:
        return []
    L = [
        "## hvl score (from JPEG files to scores.csv)",
        "",
        "The local engine with the command's defaults against the bare encoder on the same crops in the same "
        "batches, alternating in rounds; the score run's time runs from listing the inputs to the last batch "
        "written and fsync'd (the summary and histogram after it are not counted; `wall` is the whole call).",
        "",
        "| backbone | n | images | batch | workers | hvl score img/s | bare encoder img/s | score / encoder "
        f"(target ≥ {TARGET_SCORE_OVER_ENCODER}) | encoder / score time | wall s |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for x in runs:
        sc = x["score"]
        ok = "✅" if sc["score_over_encoder"] >= TARGET_SCORE_OVER_ENCODER else "❌"
        L.append(
            f"| {x['backbone']} | {x['n']} | {sc['images']} | {sc['batch_size']} | "
            f"{'default' if sc['workers'] is None else sc['workers']} | {_f(sc['score_images_per_s'])} | "
            f"{_f(sc['encoder_images_per_s'])} | {sc['score_over_encoder']:.3f} {ok} | "
            f"{sc['score_time_over_encoder']:.3f} | {_f(sc['score_command_wall_s'], 1)} |"
        )
    L.append("")
    gp = [(x, x["score"]["gpu_paths"]) for x in runs if "gpu_paths" in x["score"]]
    if gp:
        L += [
            "| backbone | n | JPEG decode on device img/s | PIL in workers img/s | max score diff | autocast | "
            "min / mean cosine to fp32 |",
            "|---|---|---|---|---|---|---|",
        ]
        for x, g in gp:
            d, a = g["decode"], g["autocast"]
            L.append(
                f"| {x['backbone']} | {x['n']} | {_f(d['device_images_per_s'])} | {_f(d['cpu_images_per_s'])} | "
                f"{d['max_score_diff_device_vs_cpu']} | {a['dtype']} | {a['min_cosine_to_fp32']:.5f} / "
                f"{a['mean_cosine_to_fp32']:.5f} |"
            )
        L.append("")
    tc = [x for x in runs if "train_compiled" in x]
    if tc:
        L += [
            "Cached trainer, eager against `compile_step` (median epoch after the first; the first compiles; "
            "weight difference to the eager head after the same epochs):",
            "",
            "| backbone | n | step | epoch s | speed-up | first epoch s | max weight diff |",
            "|---|---|---|---|---|---|---|",
        ]
        for x in tc:
            t = x["train_compiled"]
            for name in ("eager", "compiled", "cuda_graphs"):
                v = t.get(name)
                if v is None:
                    continue
                if "error" in v:
                    L.append(f"| {x['backbone']} | {x['n']} | {name} | – | – | – | failed: {v['error']} |")
                    continue
                diff = f"{v['max_weight_diff']:.2e}" if "max_weight_diff" in v else "–"
                e2e = f" (end to end: {v['cached_train_speedup']:,.0f}×)" if "cached_train_speedup" in v else ""
                L.append(
                    f"| {x['backbone']} | {x['n']} | {name} | {v['epoch_s']:.4f} | {v.get('speedup', 1.0):.2f}×{e2e} | "
                    f"{v['first_epoch_s']:.2f} | {diff} |"
                )
        L.append("")
    ry = [x for x in runs if "ray" in x]
    if ry:
        L += [
            "Ray engine against the local one, same files, same machine (a private Ray instance):",
            "",
            "| backbone | n | images | local s | ray s | ray / local | overhead s | Ray start s | model load s | "
            "same scores |",
            "|---|---|---|---|---|---|---|---|---|---|",
        ]
        for x in ry:
            y = x["ray"]
            if "error" in y:
                L.append(f"| {x['backbone']} | {x['n']} | – | – | – | – | – | – | – | not run: {y['error']} |")
                continue
            L.append(
                f"| {x['backbone']} | {x['n']} | {y['images']} | {y['local_s']:.1f} | {y['ray_s']:.1f} | "
                f"{y['ray_over_local']:.2f} | {y['ray_overhead_s']:.1f} | {y['ray_start_s']:.1f} | "
                f"{y['model_load_s']:.1f} | {'equal' if y['scores_equal'] else 'max diff ' + str(y['max_score_diff'])} |"
            )
        L += ["", "Ray's time includes building its actor and the actor's model; the instance start is apart.", ""]
    return L


def write_results(result: dict, out_dir: str | os.PathLike, name: str = "bench") -> tuple[Path, Path]:
    """``OUT/NAME.json`` and ``OUT/NAME.md``, each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", render_markdown(result))):
        paths.append(atomic_write(out / f"{name}{suffix}", text))
    return paths[0], paths[1]


def main_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
