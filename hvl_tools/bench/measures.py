"""The measurements: latency, throughput, training, checks and GPU/CPU variants."""

from __future__ import annotations

import contextlib
import math
import os
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

from .settings import PAPER_BATCH, PAPER_EPOCHS, BenchSettings
from .timing import (
    _sync,
    count_calls,
    interleaved,
    measure_memory,
    median,
    ratio_median,
    timed,
)

# --------------------------------------------------------------------------- the measurements


def _encoder_fn(model, x: torch.Tensor, autocast: bool = True) -> Callable[[], torch.Tensor]:
    """The bare encoder on prepared (normalised, on-device) pixels, as the model runs it."""

    def run():
        with torch.inference_mode(), model._autocast() if autocast else contextlib.nullcontext():
            return model.backbone.encode_image(x)

    return run


def single_scale_predict(model, src) -> np.ndarray:
    """A single-scale model used like HVL: decode, the backbone's view, one crop through the
    encoder, zero-shot softmax against the class embeddings (MCM). Returns p (C,)."""
    from hvl_core import equations as eq
    from hvl_core.geometry import square_view, to_tensor01
    from hvl_core.images import load_image

    li = load_image(src)
    x = to_tensor01(square_view(li.image, model.backbone.image_size)).unsqueeze(0)
    v = model.encode_crops(x)
    cfg = model.head.config
    t = model.text
    with torch.inference_mode():
        if cfg.similarity == "cosine":
            v, t = torch.nn.functional.normalize(v, dim=-1), torch.nn.functional.normalize(t, dim=-1)
        p = eq.class_probs(v, t, cfg.tau, model.logit_bias, cfg.similarity)[0, : model.head.num_classes]
    return p.float().cpu().numpy()


def _ms(xs: Sequence[float]) -> float:
    return round(median(xs) * 1000, 3)


def bench_latency(model, path: Path, s: BenchSettings, device: torch.device) -> dict:
    from hvl_core.geometry import hierarchical_crops, num_crops
    from hvl_core.images import load_image

    n, S = model.n, model.backbone.image_size
    li = load_image(path)
    crops = hierarchical_crops(li.image, n, S, model.detail)
    x = model.backbone.normalize(crops.to(device))
    fns = {
        "hvl_pipeline": lambda: model.predict(path),
        "encoder": _encoder_fn(model, x),
        "single_scale_forward": _encoder_fn(model, x[:1].contiguous()),
        "single_scale_pipeline": lambda: single_scale_predict(model, path),
    }
    t = interleaved(fns, s.repeats, s.warmup, device)

    # cheap stages, many repeats: where the overhead goes
    reps = 3 if s.quick else max(10, s.repeats)
    where = device if getattr(model, "crops_on_device", False) else None
    encoded = model.encode(path)
    thresholds = iter(np.linspace(0.05, 0.95, reps + s.warmup + 1))
    stages = interleaved(
        {
            "load": lambda: load_image(path),
            "crops": lambda: hierarchical_crops(li.image, n, S, model.detail, device=where),
            "threshold_update": lambda: model.decide(encoded, threshold=float(next(thresholds))),
        },
        reps,
        s.warmup,
        device,
    )
    full, enc = _ms(t["hvl_pipeline"]), _ms(t["encoder"])
    other = full - enc - _ms(stages["load"]) - _ms(stages["crops"]) - _ms(stages["threshold_update"])
    return {
        "crops": num_crops(n),
        "ms": {k: _ms(v) for k, v in t.items()},
        "stages_ms": {**{k: _ms(v) for k, v in stages.items()}, "other": round(other, 3)},
        "hvl_over_encoder": round(ratio_median(t["hvl_pipeline"], t["encoder"]), 4),
        "hvl_over_single_scale": round(ratio_median(t["hvl_pipeline"], t["single_scale_forward"]), 4),
        "hvl_over_single_scale_pipeline": round(ratio_median(t["hvl_pipeline"], t["single_scale_pipeline"]), 4),
        "encoder_over_single_forward": round(ratio_median(t["encoder"], t["single_scale_forward"]), 4),
        "threshold_update_ms": _ms(stages["threshold_update"]),
        "raw_s": {k: [round(v, 6) for v in vs] for k, vs in t.items()},
    }


def bench_throughput(model, paths: list[Path], s: BenchSettings, device: torch.device) -> dict:
    from hvl_core.geometry import hierarchical_crops
    from hvl_core.images import load_image
    from hvl_core.model import MAX_CROPS_PER_CALL

    bs, n, S = s.batch_size, model.n, model.backbone.image_size
    N = len(paths)
    crops = torch.stack([hierarchical_crops(load_image(p).image, n, S, model.detail) for p in paths[:bs]])
    x = model.backbone.normalize(crops.flatten(0, 1).to(device))

    def encoder_all():  # the bare encoder on N images' crops, in the model's chunking
        with torch.inference_mode(), model._autocast():
            for _ in range(math.ceil(N / bs)):
                for chunk in x.split(MAX_CROPS_PER_CALL):
                    model.backbone.encode_image(chunk)

    def features():
        for i in range(0, N, bs):
            model.encode_batch(paths[i : i + bs])

    t = interleaved(
        {
            "predict_batch": lambda: model.predict_batch(paths, batch_size=bs),
            "encode_batch": features,
            "encoder": encoder_all,
        },
        s.throughput_repeats,
        1 if device.type == "cuda" else 0,
        device,
    )
    mem_batch = measure_memory(lambda: model.predict_batch(paths[:bs], batch_size=bs), device)
    return {
        "images": N,
        "batch_size": bs,
        "predict_images_per_s": round(N / median(t["predict_batch"]), 3),
        "features_images_per_s": round(N / median(t["encode_batch"]), 3),
        "encoder_images_per_s": round(N / median(t["encoder"]), 3),
        "hvl_over_encoder_batched": round(ratio_median(t["predict_batch"], t["encoder"]), 4),
        "memory_batch": mem_batch,
    }


def _train_tensors(d: int, n: int, N: int, C: int, seed: int):
    g = torch.Generator().manual_seed(seed)
    M = 1 + 5 * n * n
    v = torch.randn(N, M, d, generator=g)
    labels = torch.randint(0, C, (N,), generator=g)
    text = torch.randn(C, d, generator=g)
    return v, labels, text


def _head_options(model) -> dict:
    opts = model.head.config.to_dict()
    opts["num_negatives"] = 0
    return opts


def _minimal_epochs(head, v, labels, text, epochs: int, device: torch.device, batch: int = PAPER_BATCH) -> list[float]:
    """A bare training loop (Adam, lr 0.002, cosine per epoch); losses stay on the device.
    Returns seconds per epoch."""
    from hvl_core.geometry import split_scales

    head.to(device).train()
    v, labels, text = v.to(device), labels.to(device), text.to(device)
    opt = torch.optim.Adam(head.parameters(), lr=0.002)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=epochs)
    gen = torch.Generator().manual_seed(0)
    N, n = len(v), head.config.n
    times = []
    for _ in range(epochs):
        _sync(device)
        t0 = time.perf_counter()
        perm = torch.randperm(N, generator=gen).to(device)
        total = torch.zeros((), device=device)
        for s in range(0, N, batch):
            idx = perm[s : s + batch]
            v0, v1, v2 = split_scales(v[idx], n)
            loss = head.loss(head(v0, v1, v2, text), labels[idx])["total"]
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            total += loss.detach()
        sched.step()
        if not torch.isfinite(total):
            raise FloatingPointError("the benchmark's training loss is not finite")
        _sync(device)
        times.append(time.perf_counter() - t0)
    head.eval()
    return times


def _trainer_epochs(head, v, labels, text, epochs: int, device: torch.device) -> list[float]:
    """Epoch times of the project's trainer (``hvl_tools.train.train_head``)."""
    from hvl_tools.features import FeatureSet
    from hvl_tools.train import TrainConfig, train_head

    N = len(v)
    feats = FeatureSet(v=v, paths=[f"bench/{i}" for i in range(N)], labels=labels, groups=[""] * N)
    res = train_head(
        head,
        text,
        None,
        feats,
        TrainConfig(epochs=epochs, batch_size=PAPER_BATCH),
        device=device,
        progress=False,
        log=lambda msg: None,
    )
    return [float(r["seconds"]) for r in res.history]


def bench_training(
    model, images: list, s: BenchSettings, device: torch.device, full: bool, bare_loop: bool = True
) -> dict:
    """Cached-feature epochs vs an end-to-end epoch, for this backbone and n, in interleaved
    rounds (one cached epoch, one end-to-end batch), so the ratio holds on a loaded machine."""
    from hvl_core.geometry import hierarchical_crops, split_scales
    from hvl_core.head import HVLHead

    d, n, S = model.backbone.embed_dim, model.n, model.backbone.image_size
    N, C = s.train_images, s.train_classes
    v, labels, text = _train_tensors(d, n, N, C, s.seed)
    opts = _head_options(model)

    def cached_epoch() -> float:
        """Seconds of one epoch of the project's trainer on a fresh head (its own epoch timer)."""
        return _trainer_epochs(HVLHead(d, C, **opts), v, labels, text, 1, device)[0]

    # end to end: decoded images → crops → frozen encoder → head step
    head = HVLHead(d, C, **opts).to(device).train()
    opt = torch.optim.Adam(head.parameters(), lr=0.002)
    t_dev = text.to(device)
    where = device if getattr(model, "crops_on_device", False) else None
    B = min(PAPER_BATCH, s.e2e_images)
    batch = [images[j % len(images)] for j in range(B)]
    gen = torch.Generator().manual_seed(s.seed)

    def e2e_step():
        crops = torch.stack([hierarchical_crops(im, n, S, model.detail, device=where) for im in batch])
        feats = model.encode_crops(crops.flatten(0, 1)).view(B, crops.shape[1], -1).clone()
        v0, v1, v2 = split_scales(feats, n)
        y = torch.randint(0, C, (B,), generator=gen).to(device)
        loss = head.loss(head(v0, v1, v2, t_dev), y)["total"]
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()

    cached_epoch()  # warm-up (on CPU the encoder is already warm and an end-to-end batch costs seconds)
    if device.type == "cuda":
        e2e_step()
    t_cached, t_e2e = [], []
    for r in range(s.train_epochs):
        for what in ("cached", "e2e") if r % 2 == 0 else ("e2e", "cached"):
            if what == "cached":
                t_cached.append(cached_epoch())
            else:
                t_e2e.append(timed(e2e_step, device) / B * N)
    out = {
        "trainer": "hvl_tools.train.train_head",
        "train_images": N,
        "classes": C,
        "batch_size": PAPER_BATCH,
        "dim": d,
        "rounds": s.train_epochs,
        "e2e_batch": B,
        "cached_epoch_s": round(median(t_cached), 4),
        "e2e_epoch_s": round(median(t_e2e), 3),
        "e2e_epoch_note": f"time of one end-to-end batch of {B} image(s) × {N}/{B}, per round",
        "cached_train_speedup": round(ratio_median(t_e2e, t_cached), 2),
        "raw_s": {"cached_epoch": [round(x, 5) for x in t_cached], "e2e_epoch": [round(x, 3) for x in t_e2e]},
        "cached_epoch_minimal_loop_s": None,
    }
    if bare_loop:
        out["cached_epoch_minimal_loop_s"] = round(
            _minimal_epochs(HVLHead(d, C, **opts), v, labels, text, 2, device)[1], 4
        )
    if full:
        trainer = _trainer_epochs(HVLHead(d, C, **opts), v, labels, text, PAPER_EPOCHS, device)
        out["train_100_epochs_s"] = round(sum(trainer), 3)
        out["train_100_epochs_note"] = "measured (100 epochs)"
    else:
        out["train_100_epochs_s"] = round(out["cached_epoch_s"] * PAPER_EPOCHS, 3)
        out["train_100_epochs_note"] = f"extrapolated: median of {len(t_cached)} epoch(s) × 100"
    return out


def bench_checks(model, path: Path, paths: list[Path], s: BenchSettings, device: torch.device) -> dict:
    """The structural claims: one encoder call per image (and per batch), inference mode,
    a frozen encoder, text embeddings computed once per class set."""
    from hvl_core.model import MAX_CROPS_PER_CALL, class_embeddings

    bs = min(s.batch_size, len(paths))
    with count_calls(model.backbone, "encode_image") as one:
        model.predict(path)
    with count_calls(model.backbone, "encode_image") as batch:
        model.encode_batch(paths[:bs])
    with count_calls(model.backbone, "encode_classes") as text_calls:
        t0 = time.perf_counter()
        class_embeddings(model.backbone, model.classes)
        t_text = time.perf_counter() - t0
    from hvl_core.geometry import hierarchical_crops, num_crops

    v = model.encode_crops(hierarchical_crops(_first_image(path), 1, model.backbone.image_size)[:1])
    params = [p for m in model.backbone.modules() for p in m.parameters()]
    return {
        "encoder_calls_per_image": one["calls"],
        "encoder_calls_per_batch": batch["calls"],
        "batch_images": bs,
        "encoder_calls_per_batch_expected": math.ceil(bs * num_crops(model.n) / MAX_CROPS_PER_CALL),
        "text_encoder_calls_on_reuse": text_calls["calls"],
        "text_lookup_ms": round(t_text * 1000, 4),
        "encoder_output_is_inference_tensor": bool(v.is_inference()),
        "encoder_frozen": not any(p.requires_grad for p in params),
        "torch_threads": torch.get_num_threads(),
        "cpu_count": os.cpu_count(),
    }


def _first_image(path: Path):
    from hvl_core.images import load_image

    return load_image(path).image


def bench_variants(model, path: Path, s: BenchSettings, device: torch.device) -> list[dict]:
    """Before/after probes of the speed choices, interleaved in one run."""
    from hvl_core.geometry import hierarchical_crops
    from hvl_core.images import load_image

    li = load_image(path)
    crops = hierarchical_crops(li.image, model.n, model.backbone.image_size, model.detail)
    x = model.backbone.normalize(crops.to(device))
    return (_gpu_variants if device.type == "cuda" else _cpu_variants)(model, path, x, s, device)


def _gpu_variants(model, path: Path, x: torch.Tensor, s: BenchSettings, device: torch.device) -> list[dict]:
    out = []
    # autocast (the model's default on CUDA) vs fp32
    t = interleaved(
        {"fp32": _encoder_fn(model, x, autocast=False), "autocast": _encoder_fn(model, x)}, s.repeats, s.warmup, device
    )
    out.append(
        {
            "what": "encoder precision on CUDA (model default: bf16/fp16 autocast)",
            "before": "fp32",
            "after": "autocast",
            "before_ms": _ms(t["fp32"]),
            "after_ms": _ms(t["autocast"]),
            "speedup": round(ratio_median(t["fp32"], t["autocast"]), 3),
        }
    )
    # crops cut on the GPU (model default on CUDA) vs on the CPU and copied over (pinned)
    saved = model.crops_on_device

    def pipeline(flag):
        def run():
            model.crops_on_device = flag
            return model.predict(path)

        return run

    try:
        t = interleaved({"host": pipeline(False), "device": pipeline(True)}, max(s.repeats, 5), s.warmup, device)
    finally:
        model.crops_on_device = saved
    out.append(
        {
            "what": "full pipeline: crops upsampled/cut on the CPU then copied, vs on the GPU",
            "before": "crops on CPU (pinned copy)",
            "after": "crops on GPU",
            "before_ms": _ms(t["host"]),
            "after_ms": _ms(t["device"]),
            "speedup": round(ratio_median(t["host"], t["device"]), 3),
        }
    )
    # the head of one image (the demo's threshold update) on the GPU (model default) vs the CPU
    import copy

    on_cpu = copy.copy(model)
    on_cpu.device = torch.device("cpu")
    on_cpu.head = copy.deepcopy(model.head).cpu()
    on_cpu.text = model.text.cpu()
    on_cpu.logit_bias = None if model.logit_bias is None else model.logit_bias.cpu()
    encoded = model.encode(path)
    t = interleaved(
        {"gpu": lambda: model.decide(encoded, threshold=0.3), "cpu": lambda: on_cpu.decide(encoded, threshold=0.3)},
        max(10, s.repeats),
        s.warmup,
        device,
    )
    out.append(
        {
            "what": "head + Prediction of one image (threshold update): on the GPU vs on the CPU",
            "before": "head on GPU (default)",
            "after": "head on CPU",
            "before_ms": _ms(t["gpu"]),
            "after_ms": _ms(t["cpu"]),
            "speedup": round(ratio_median(t["gpu"], t["cpu"]), 3),
        }
    )
    if s.compile:
        out.append(_compile_probe(model, x, s, device))
    return out


def _cpu_variants(model, path: Path, x: torch.Tensor, s: BenchSettings, device: torch.device) -> list[dict]:
    out = []

    # bf16 autocast on CPU (AMX/AVX512-BF16 where present): not the default, changes numerics
    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            return model.backbone.encode_image(x)

    def one_thread():
        n_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            with torch.inference_mode():
                return model.backbone.encode_image(x)
        finally:
            torch.set_num_threads(n_threads)

    fns = {"fp32": _encoder_fn(model, x), "bf16": bf16}
    if torch.get_num_threads() > 1:
        fns["one_thread"] = one_thread
    t = interleaved(fns, min(s.repeats, 3), s.warmup, device)
    with torch.inference_mode():
        ref = model.backbone.encode_image(x).float()
        with torch.autocast("cpu", dtype=torch.bfloat16):
            low = model.backbone.encode_image(x).float()
    cos = torch.nn.functional.cosine_similarity(ref, low, dim=-1).min().item()
    out.append(
        {
            "what": "encoder precision on CPU (model default: fp32); bf16 autocast is an option, "
            f"not the default (min cosine to fp32 embeddings: {cos:.4f})",
            "before": "fp32",
            "after": "bf16 autocast",
            "before_ms": _ms(t["fp32"]),
            "after_ms": _ms(t["bf16"]),
            "speedup": round(ratio_median(t["fp32"], t["bf16"]), 3),
            "min_cosine_to_fp32": round(cos, 5),
        }
    )
    if "one_thread" in t:
        out.append(
            {
                "what": f"CPU threads: 1 vs all {torch.get_num_threads()} (model default: all)",
                "before": "1 thread",
                "after": f"{torch.get_num_threads()} threads",
                "before_ms": _ms(t["one_thread"]),
                "after_ms": _ms(t["fp32"]),
                "speedup": round(ratio_median(t["one_thread"], t["fp32"]), 3),
            }
        )
    return out


def _compile_probe(model, x, s: BenchSettings, device: torch.device) -> dict:
    """torch.compile of the encoder: compile time and steady-state speed vs eager."""
    eager = _encoder_fn(model, x)
    compiled = torch.compile(model.backbone.encode_image)

    def comp():
        with torch.inference_mode(), model._autocast():
            return compiled(x)

    try:
        t_compile = timed(comp, device)
    except Exception as e:  # noqa: BLE001 - any compiler failure is a result to report, not a crash
        return {"what": "torch.compile of the encoder", "error": f"{type(e).__name__}: {str(e)[:300]}"}
    t = interleaved({"eager": eager, "compiled": comp}, max(s.repeats, 5), s.warmup, device)
    return {
        "what": "torch.compile of the encoder (not the default: first call compiles)",
        "before": "eager",
        "after": "compiled",
        "before_ms": _ms(t["eager"]),
        "after_ms": _ms(t["compiled"]),
        "speedup": round(ratio_median(t["eager"], t["compiled"]), 3),
        "compile_s": round(t_compile, 2),
    }
