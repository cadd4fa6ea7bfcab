"""Benchmarks of ``hvl score``: images/s from JPEG files to scores.csv against the bare encoder on
the same crops, where the GPU paths pay (device JPEG decode, bf16 autocast, a compiled training
step), and Ray against the local engine on the same machine."""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import torch

from .settings import BenchSettings
from .timing import _sync, median, timed


def archive_of(folder: Path, files: list[Path], count: int) -> list[str]:
    """``count`` distinct paths (symbolic links) onto the test JPEGs, as an archive to score."""
    folder.mkdir(parents=True, exist_ok=True)
    out = []
    for i in range(count):
        p = folder / f"img_{i:06d}.jpg"
        if not p.exists():
            os.symlink(Path(files[i % len(files)]).resolve(), p)
        out.append(str(p))
    return out


def _spec(model, s: BenchSettings):
    from hvl_tools.score import ModelSpec

    return ModelSpec(
        backbone=model.backbone.name,
        preset=s.preset,
        detail=model.detail,
        device=str(model.device),
        head_options={"n": model.n},
    )


def _scores(out: Path) -> dict[str, float]:
    from hvl_tools.score.results import read_scores

    return {r["path"]: r["score"] for r in read_scores(out / "scores.csv") if not r["error"]}


def _max_diff(a: dict, b: dict) -> float | None:
    common = set(a) & set(b)
    return round(max(abs(a[p] - b[p]) for p in common), 7) if common else None


def bench_score(model, files: list[Path], s: BenchSettings, device: torch.device, tmp: Path) -> dict:
    """``hvl score`` (local engine, the command's defaults) on ``score_images`` JPEGs against the
    bare encoder on the same crops in the same batches, alternating in rounds. The score run's
    time is its own (inputs listed → last batch fsync'd; the summary and histogram after it are
    not counted)."""
    from hvl_core.geometry import hierarchical_crops
    from hvl_core.images import load_image
    from hvl_core.model import MAX_CROPS_PER_CALL
    from hvl_tools.score import score_archive

    N, bs = s.score_images, s.batch_size
    paths = archive_of(tmp / "archive", files, N)
    tmp = Path(tempfile.mkdtemp(prefix="score-", dir=tmp))  # this configuration's output folders
    crops = torch.stack(
        [hierarchical_crops(load_image(p).image, model.n, model.backbone.image_size, model.detail) for p in paths[:bs]]
    )
    x = model.backbone.normalize(crops.flatten(0, 1).to(device))

    def encoder():  # the bare encoder on N images' crops, batch by batch, in the model's chunking
        with torch.inference_mode(), model._autocast():
            for _ in range(math.ceil(N / bs)):
                for chunk in x.split(MAX_CROPS_PER_CALL):
                    model.backbone.encode_image(chunk)

    runs = iter(range(10**6))

    def score(decode: str = "auto") -> tuple[float, Path]:
        out = tmp / f"score-{next(runs)}"
        summary = score_archive(
            paths,
            out,
            _spec(model, s),
            batch_size=bs,
            workers=s.score_workers,
            decode=decode,
            progress=False,
            model=model,
        )
        return summary["run"]["seconds"], out

    for _ in range(min(s.warmup, 1)):  # decode workers, allocator, kernels
        score()
        encoder()
    t_score, t_enc, wall = [], [], []
    for r in range(s.score_repeats):
        for what in ("score", "encoder") if r % 2 == 0 else ("encoder", "score"):
            if what == "score":
                t0 = time.perf_counter()
                sec, last = score()
                wall.append(time.perf_counter() - t0)
                t_score.append(sec)
            else:
                t_enc.append(timed(encoder, device))
    out = {
        "images": N,
        "batch_size": bs,
        "workers": s.score_workers,
        "rounds": s.score_repeats,
        "score_images_per_s": round(N / median(t_score), 3),
        "encoder_images_per_s": round(N / median(t_enc), 3),
        "score_over_encoder": round(median([e / t for t, e in zip(t_score, t_enc)]), 4),
        "score_time_over_encoder": round(median([t / e for t, e in zip(t_score, t_enc)]), 4),
        "score_command_wall_s": round(median(wall), 3),
        "raw_s": {"score": [round(v, 4) for v in t_score], "encoder": [round(v, 4) for v in t_enc]},
    }
    if device.type == "cuda":
        out["gpu_paths"] = _gpu_paths(model, x, score, out, s)
    return out


def _gpu_paths(model, x: torch.Tensor, score, base: dict, s: BenchSettings) -> dict:
    """CUDA only: the JPEG decoder (device vs PIL in workers), and bf16 autocast vs fp32."""
    res = {}
    t_dev, out_dev = score("device")
    t_cpu, out_cpu = score("cpu")
    res["decode"] = {
        "device_images_per_s": round(base["images"] / t_dev, 3),
        "cpu_images_per_s": round(base["images"] / t_cpu, 3),
        "max_score_diff_device_vs_cpu": _max_diff(_scores(out_dev), _scores(out_cpu)),
    }
    with torch.inference_mode():
        ref = model.backbone.encode_image(x).float()
        with model._autocast():
            low = model.backbone.encode_image(x).float()
    cos = torch.nn.functional.cosine_similarity(ref, low, dim=-1)
    res["autocast"] = {
        "dtype": str(torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16),
        "min_cosine_to_fp32": round(float(cos.min()), 6),
        "mean_cosine_to_fp32": round(float(cos.mean()), 6),
    }
    return res


def bench_train_compiled(model, s: BenchSettings, device: torch.device) -> dict:
    """The cached trainer's epoch, eager against ``compile_step=True`` (and on CUDA
    ``"reduce-overhead"``: CUDA graphs), with how far each head ends from the eager one after the
    same epochs (same seed). A variant that fails is reported with its error."""
    from hvl_core.head import HVLHead
    from hvl_tools.config import TrainConfig
    from hvl_tools.features import FeatureSet
    from hvl_tools.train import train_head

    from .measures import _head_options, _train_tensors
    from .settings import PAPER_BATCH

    d, N, C = model.backbone.embed_dim, s.train_images, s.train_classes
    v, labels, text = _train_tensors(d, model.n, N, C, s.seed)
    feats = FeatureSet(v=v, paths=[str(i) for i in range(N)], labels=labels, groups=[""] * N)
    epochs = max(3, s.train_epochs)
    variants = {"eager": False, "compiled": True}
    if device.type == "cuda":
        variants["cuda_graphs"] = "reduce-overhead"
    out: dict = {"epochs": epochs, "batch_size": PAPER_BATCH, "train_images": N}
    eager = None
    for name, flag in variants.items():
        head = HVLHead(d, C, **_head_options(model))
        t0 = time.perf_counter()
        try:
            res = train_head(
                head,
                text,
                None,
                feats,
                TrainConfig(epochs=epochs, batch_size=PAPER_BATCH),
                device=device,
                progress=False,
                log=lambda m: None,
                compile_step=flag,
            )
        except Exception as e:  # noqa: BLE001 - a compiler failure is a result to report
            out[name] = {"error": f"{type(e).__name__}: {str(e)[:300]}"}
            continue
        _sync(device)
        secs = [r["seconds"] for r in res.history]
        row = {
            "first_epoch_s": round(secs[0], 3),
            "epoch_s": round(median(secs[1:]), 4),
            "total_s": round(time.perf_counter() - t0, 2),
        }
        sd = {k: t.detach().float().cpu() for k, t in head.state_dict().items()}
        if eager is None:
            eager = sd
        else:
            row["max_weight_diff"] = float(max((sd[k] - eager[k]).abs().max() for k in sd))
            row["speedup"] = round(out["eager"]["epoch_s"] / row["epoch_s"], 3)
        out[name] = row
    return out


def bench_ray(model, files: list[Path], s: BenchSettings, device: torch.device, tmp: Path) -> dict:
    """The Ray engine against the local one on the same files and machine: the start of a private
    Ray instance, then rounds of (local, ray) scoring runs (Ray's includes building its actor and
    the actor's model), and whether the scores are the same."""
    from hvl_tools.score.ray_engine import RayUnavailable, ray_instance

    t0 = time.perf_counter()
    try:
        with ray_instance(None, num_cpus=os.cpu_count()):
            return _bench_ray(model, files, s, device, tmp, time.perf_counter() - t0)
    except RayUnavailable as e:
        return {"error": str(e)}


def _bench_ray(model, files, s: BenchSettings, device: torch.device, tmp: Path, start_s: float) -> dict:
    from hvl_tools.score import score_archive

    N, bs = s.score_images, s.batch_size
    paths = archive_of(tmp / "archive", files, N)
    tmp = Path(tempfile.mkdtemp(prefix="ray-", dir=tmp))
    spec = _spec(model, s)
    t0 = time.perf_counter()
    spec.load()
    load_s = time.perf_counter() - t0
    times = {"local": [], "ray": []}
    gpus = 1.0 if device.type == "cuda" else 0.0
    cpus = 1.0 if gpus else float(os.cpu_count() or 1)  # a CPU actor takes the machine, as the local engine does
    for r in range(s.ray_repeats):
        for engine in ("local", "ray") if r % 2 == 0 else ("ray", "local"):
            t0 = time.perf_counter()
            score_archive(
                paths,
                tmp / f"{engine}-{r}",
                spec,
                engine=engine,
                batch_size=bs,
                workers=s.score_workers,
                progress=False,
                model=model if engine == "local" else None,
                ray_options={"actors": 1, "gpus_per_actor": gpus, "cpus_per_actor": cpus} if engine == "ray" else None,
            )
            times[engine].append(time.perf_counter() - t0)
    a, b = _scores(tmp / "local-0"), _scores(tmp / "ray-0")
    return {
        "images": N,
        "batch_size": bs,
        "rounds": s.ray_repeats,
        "ray_start_s": round(start_s, 2),
        "model_load_s": round(load_s, 2),
        "local_s": round(median(times["local"]), 2),
        "ray_s": round(median(times["ray"]), 2),
        "ray_over_local": round(median([y / x for x, y in zip(times["local"], times["ray"])]), 3),
        "ray_overhead_s": round(median([y - x for x, y in zip(times["local"], times["ray"])]), 2),
        "max_score_diff": _max_diff(a, b),
        "scores_equal": bool(a) and sorted(a) == sorted(b) and all(a[p] == b[p] for p in a),
        "raw_s": {k: [round(v, 3) for v in vs] for k, vs in times.items()},
        "note": "wall time of score_archive per engine; Ray's includes building its actor and the "
        "actor's model (model_load_s), not the instance start (ray_start_s)",
    }
