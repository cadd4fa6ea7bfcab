"""One benchmark run over backbones and ``n``."""

from __future__ import annotations

import dataclasses
import gc
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch

from .measures import (
    bench_checks,
    bench_latency,
    bench_throughput,
    bench_training,
    bench_variants,
)
from .score import bench_ray, bench_score, bench_train_compiled
from .settings import (
    PAPER_MEMORY_GB,
    SCHEMA,
    TARGET_CACHED_SPEEDUP,
    TARGET_HVL_OVER_ENCODER,
    TARGET_SCORE_OVER_ENCODER,
    BenchSettings,
)
from .timing import device_info, measure_memory, synthetic_images

# --------------------------------------------------------------------------- the run


def headline_n(ns: Sequence[int]) -> int:
    return 2 if 2 in ns else list(ns)[0]


def run_bench(
    settings: BenchSettings,
    progress: Callable[[str], None] | None = None,
    on_partial: Callable[[dict], None] | None = None,
) -> dict:
    """Run every measurement; returns the JSON-ready result. ``on_partial(result)`` is called
    after each configuration (so a run cut short still leaves its numbers behind)."""
    from hvl_core.backbones import BackboneUnavailable, create_backbone
    from hvl_core.model import load_model, resolve_device

    settings.validate()
    log = progress or (lambda msg: None)
    device = resolve_device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available")
    s = settings.resolved(device)
    info = device_info(device)
    hn = headline_n(s.ns)
    result = {
        "schema": SCHEMA,
        "device": info["label"],
        "device_info": info,
        "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()},
        "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "runs": [],
        "errors": [],
        "targets": {
            "hvl_over_encoder": TARGET_HVL_OVER_ENCODER,
            "cached_train_speedup": TARGET_CACHED_SPEEDUP,
            "paper_memory_gb": PAPER_MEMORY_GB,
            "score_over_encoder": TARGET_SCORE_OVER_ENCODER,
        },
    }
    t_start = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="hvl-bench-") as tmp:
        from PIL import Image

        files = synthetic_images(Path(tmp), min(s.images, 16), tuple(s.image_size), s.seed)
        paths = [files[i % len(files)] for i in range(s.images)]
        decoded = [Image.open(p).convert("RGB") for p in files]
        for b_i, name in enumerate(s.backbones):
            try:
                log(f"[bench] loading {name}")
                backbone = create_backbone(name)
            except (BackboneUnavailable, ValueError) as e:
                result["errors"].append({"backbone": name, "error": str(e)})
                log(f"[bench] {name}: {e}")
                continue
            for n in s.ns:
                t_cfg = time.perf_counter()
                model = load_model(backbone, preset=s.preset, device=device, detail=s.detail, n=n)
                run = {
                    "backbone": model.backbone.name,
                    "n": n,
                    "embed_dim": model.backbone.embed_dim,
                    "image_size": model.backbone.image_size,
                    "classes": len(model.classes.names),
                }
                if not s.score_only:
                    log(f"[bench] {name} n={n}: latency")
                    run["latency"] = bench_latency(model, files[0], s, device)
                    run["memory_single"] = measure_memory(lambda m=model: m.predict(files[0]), device)
                    log(f"[bench] {name} n={n}: throughput")
                    run["throughput"] = bench_throughput(model, paths, s, device)
                    log(f"[bench] {name} n={n}: training")
                    full = s.full_train and b_i == 0 and n == hn
                    run["training"] = bench_training(model, decoded, s, device, full, bare_loop=n == hn)
                    run["checks"] = bench_checks(model, files[0], paths, s, device)
                    if s.variants and n == hn:
                        log(f"[bench] {name} n={n}: variants")
                        run["variants"] = bench_variants(model, files[0], s, device)
                    lat, tr = run["latency"], run["training"]
                    run.update(
                        hvl_over_encoder=lat["hvl_over_encoder"],
                        hvl_over_single_scale=lat["hvl_over_single_scale"],
                        cached_train_speedup=tr["cached_train_speedup"],
                        threshold_update_ms=lat["threshold_update_ms"],
                        peak_memory_mb=run["memory_single"]["peak_mb"],
                        seconds=round(time.perf_counter() - t_cfg, 1),
                    )
                    log(
                        f"[bench] {name} n={n}: HVL/encoder {lat['hvl_over_encoder']:.3f}, "
                        f"HVL/single {lat['hvl_over_single_scale']:.2f}, cached speedup {tr['cached_train_speedup']:.0f}× "
                        f"({run['seconds']:.0f} s)"
                    )
                if s.score and n == hn:
                    log(f"[bench] {name} n={n}: hvl score")
                    run.update(measure_score(model, files, s, device, Path(tmp)))
                    tc, tr = run.get("train_compiled", {}), run.get("training")
                    for variant in ("compiled", "cuda_graphs"):
                        if tr and "epoch_s" in tc.get(variant, {}):  # against the same end-to-end epoch
                            tc[variant]["cached_train_speedup"] = round(tr["e2e_epoch_s"] / tc[variant]["epoch_s"], 1)
                    run["seconds"] = round(time.perf_counter() - t_cfg, 1)
                    log(
                        f"[bench] {name} n={n}: hvl score {run['score_images_per_s']:.2f} images/s, "
                        f"{run['score_over_encoder']:.3f}× the bare encoder's"
                    )
                if not s.score_only or "score" in run:
                    result["runs"].append(run)
                _fill_headline(result, hn)
                result["seconds"] = round(time.perf_counter() - t_start, 1)
                result["partial"] = True
                if on_partial is not None:
                    on_partial(result)
                del model
                gc.collect()
            del backbone
            gc.collect()
    if not result["runs"]:
        raise ValueError("no backbone could be benchmarked: " + "; ".join(e["error"] for e in result["errors"]))
    _fill_headline(result, hn)
    result["partial"] = False
    result["seconds"] = round(time.perf_counter() - t_start, 1)
    result["finished"] = time.strftime("%Y-%m-%dT%H:%M:%S%z")
    return result


def measure_score(model, files, s: BenchSettings, device: torch.device, tmp: Path) -> dict:
    """The hvl score measures of one configuration (and Ray, the compiled trainer when asked)."""
    out = {"score": bench_score(model, files, s, device, tmp)}
    out["score_over_encoder"] = out["score"]["score_over_encoder"]
    out["score_images_per_s"] = out["score"]["score_images_per_s"]
    if s.compile_train:
        out["train_compiled"] = bench_train_compiled(model, s, device)
    if s.ray:
        out["ray"] = bench_ray(model, files, s, device, tmp)
    return out


def _fill_headline(result: dict, hn: int) -> None:
    runs = result["runs"]
    pick = next((r for r in runs if r["n"] == hn), runs[0])
    result["headline"] = {"backbone": pick["backbone"], "n": pick["n"]}
    for k in (
        "hvl_over_encoder",
        "hvl_over_single_scale",
        "cached_train_speedup",
        "threshold_update_ms",
        "peak_memory_mb",
        "score_over_encoder",
        "score_images_per_s",
    ):
        if k in pick:
            result[k] = pick[k]
    if "training" in pick:
        result["train_100_epochs_s"] = pick["training"]["train_100_epochs_s"]
    met = {}
    if "hvl_over_encoder" in pick:
        met.update(
            hvl_over_encoder=pick["hvl_over_encoder"] <= TARGET_HVL_OVER_ENCODER,
            cached_train_speedup=pick["cached_train_speedup"] >= TARGET_CACHED_SPEEDUP,
        )
    if "score_over_encoder" in pick:
        met["score_over_encoder"] = pick["score_over_encoder"] >= TARGET_SCORE_OVER_ENCODER
    result["targets_met"] = met
