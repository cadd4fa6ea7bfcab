"""``hvl bench``: how fast HVL is, measured in one run on one machine (issue 6).

What is timed, per backbone and per ``n`` (all with the model's own settings: inference mode,
bf16/fp16 autocast on CUDA, fp32 on CPU):

- **latency** of one image through the whole pipeline, ``model.predict(path)`` (decode the file,
  make the ``1 + n² + 4n²`` crops, encode them in one call, run the head, build the
  ``Prediction``), against
  - the **bare encoder** on the same crops, already normalised on the device, in one batch
    (``hvl_over_encoder``: HVL's own overhead; target ≤ 1.10);
  - **one single-scale forward** (the encoder on the scale-0 crop alone:
    ``hvl_over_single_scale``, the cost of the hierarchy) and a whole **single-scale pipeline**
    (decode, view, one crop, zero-shot softmax: the MCM-style model the paper compares with);
  the calls are interleaved (A B C D, B C D A, …) and ratios are medians of per-round ratios,
  so they hold on a loaded machine;
- **throughput** (images/s) of ``predict_batch`` and of feature extraction (``encode_batch``)
  from image files, with the bare encoder's throughput on the same crops, and **peak memory**:
  process RSS sampled every few ms (psutil) on CPU, ``torch.cuda.max_memory_allocated`` (and the
  device's used memory, CUDA context included) on GPU;
- **training**: one epoch of the head on cached features (random tensors of the right shapes,
  ``train_images`` images, ``train_classes`` classes: Skin-40 by default) with the project's
  trainer (``hvl_core.train.train_head``) and with a bare loop, against an epoch end to end
  (crops → frozen encoder → head step, per image, × ``train_images``): ``cached_train_speedup``;
  and the time for 100 epochs (measured for the headline configuration, else extrapolated);
- the demo's **threshold update**: ``model.decide(encoded, threshold=...)`` in ms.

Nothing here is downloaded: the test images are synthetic JPEGs written to a temporary folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import gc
import json
import math
import os
import platform
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Sequence

import numpy as np
import torch

SCHEMA = "hvl-bench/1"
#: the paper's inference-memory figure for HVL with one image (GB)
PAPER_MEMORY_GB = 2.8
TARGET_HVL_OVER_ENCODER = 1.10
TARGET_CACHED_SPEEDUP = 50.0
PAPER_EPOCHS = 100
PAPER_BATCH = 32
DEFAULT_BACKBONES = ("clip-vit-b16-random", "medmnist-densenet121")
DEFAULT_NS = (1, 2, 3)
#: the keys every bench.json has at its top level (the contract of ``hvl bench``)
REQUIRED_KEYS = ("schema", "device", "hvl_over_encoder", "hvl_over_single_scale", "cached_train_speedup",
                 "threshold_update_ms", "peak_memory_mb", "headline", "runs", "settings", "device_info")


@dataclass
class BenchSettings:
    """What to measure and how often. ``None`` means: pick by device (CPU small, GPU larger)."""

    backbones: Sequence[str] = DEFAULT_BACKBONES
    ns: Sequence[int] = DEFAULT_NS
    preset: str = "dermatology-isic4"
    device: str = "auto"
    detail: str = "upsample"
    repeats: int = 3
    warmup: int = 1
    #: images for the throughput runs, and their batch size
    images: int | None = None
    batch_size: int | None = None
    throughput_repeats: int | None = None
    #: the synthetic test images (width, height)
    image_size: tuple[int, int] = (640, 480)
    #: cached-feature training: images, classes, and timed rounds of (one cached epoch, one
    #: end-to-end batch) per configuration
    train_images: int = 2000
    train_classes: int = 40
    train_epochs: int | None = None
    #: train all 100 epochs for the headline configuration (else extrapolate from train_epochs)
    full_train: bool | None = None
    #: images in the end-to-end training batch (crops → encoder → head step) timed each round
    e2e_images: int | None = None
    #: before/after probes (autocast, crops on the device, threads) for the headline n
    variants: bool = True
    #: also time a torch.compile'd encoder (CUDA only; compilation takes tens of seconds)
    compile: bool = False
    seed: int = 0
    quick: bool = False

    def resolved(self, device: torch.device) -> "BenchSettings":
        gpu = device.type == "cuda"
        s = dataclasses.replace(self)
        if s.images is None:
            s.images = 256 if gpu else 2
        if s.batch_size is None:
            s.batch_size = 32 if gpu else 2
        if s.throughput_repeats is None:
            s.throughput_repeats = 3 if gpu else 1
        if s.e2e_images is None:
            s.e2e_images = 32 if gpu else 2
        if s.train_epochs is None:
            s.train_epochs = 3 if gpu else 2
        if s.full_train is None:
            s.full_train = gpu
        s.backbones, s.ns = list(s.backbones), [int(n) for n in s.ns]
        return s

    @classmethod
    def quick_settings(cls, **kw) -> "BenchSettings":
        """Seconds on a laptop CPU: for tests and smoke runs (numbers are not meaningful)."""
        base = dict(backbones=["tiny-clip-random"], ns=[2], repeats=2, warmup=0, images=2, batch_size=2,
                    throughput_repeats=1, image_size=(96, 80), train_images=64, train_classes=5, train_epochs=1,
                    full_train=False, e2e_images=2, quick=True)
        base.update({k: v for k, v in kw.items() if v is not None})
        return cls(**base)

    def validate(self) -> None:
        if not self.backbones:
            raise ValueError("give at least one backbone")
        if not self.ns or any(int(n) < 1 for n in self.ns):
            raise ValueError(f"n must be >= 1, got {list(self.ns)}")
        for name in ("repeats", "train_images", "train_classes"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.warmup < 0:
            raise ValueError(f"warmup must be >= 0, got {self.warmup}")
        for name in ("images", "batch_size", "throughput_repeats", "e2e_images", "train_epochs"):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        w, h = self.image_size
        if min(w, h) < 16:
            raise ValueError(f"image_size must be at least 16×16, got {w}×{h}")


# --------------------------------------------------------------------------- timing and memory


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device) -> float:
    """Seconds for one call, the device synchronised before and after."""
    _sync(device)
    t = time.perf_counter()
    fn()
    _sync(device)
    return time.perf_counter() - t


def interleaved(fns: dict[str, Callable[[], object]], repeats: int, warmup: int,
                device: torch.device) -> dict[str, list[float]]:
    """Time each function ``repeats`` times, in rounds whose order rotates, after ``warmup``
    untimed rounds. Returns seconds per call, per function, round by round (so ratios can be
    taken within a round, where the machine's load is about the same)."""
    names = list(fns)
    for _ in range(warmup):
        for k in names:
            fns[k]()
    _sync(device)
    out: dict[str, list[float]] = {k: [] for k in names}
    for r in range(repeats):
        for k in names[r % len(names):] + names[:r % len(names)]:
            out[k].append(timed(fns[k], device))
    return out


def median(xs: Sequence[float]) -> float:
    return float(statistics.median(xs))


def ratio_median(a: Sequence[float], b: Sequence[float]) -> float:
    """Median of the per-round ratios a[i] / b[i]."""
    return median([x / y for x, y in zip(a, b)])


def rss_mb() -> float:
    import psutil

    return psutil.Process().memory_info().rss / 2**20


class PeakRSS:
    """Peak resident memory of this process while the block runs, sampled every ``interval`` s
    by a thread (psutil), plus the RSS before it."""

    def __init__(self, interval: float = 0.003):
        self.interval = interval
        self.before = self.peak = 0.0
        self._stop = threading.Event()

    def _run(self) -> None:
        import psutil

        proc = psutil.Process()
        while not self._stop.is_set():
            self.peak = max(self.peak, proc.memory_info().rss / 2**20)
            self._stop.wait(self.interval)

    def __enter__(self) -> "PeakRSS":
        self.before = self.peak = rss_mb()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_mb())


def measure_memory(fn: Callable[[], object], device: torch.device) -> dict:
    """Peak memory of one call: RSS (MB) always; on CUDA the allocator's peak (weights included)
    and the device's used memory afterwards (CUDA context and allocator cache included)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.empty_cache()  # so reserved / device-used reflect this call, not earlier batches
        torch.cuda.reset_peak_memory_stats(device)
    with PeakRSS() as m:
        fn()
        _sync(device)
    out = {"rss_before_mb": round(m.before, 1), "rss_peak_mb": round(m.peak, 1)}
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        out.update(gpu_max_allocated_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
                   gpu_max_reserved_mb=round(torch.cuda.max_memory_reserved(device) / 2**20, 1),
                   gpu_device_used_mb=round((total - free) / 2**20, 1))
        out["peak_mb"] = out["gpu_max_allocated_mb"]
    else:
        out["peak_mb"] = out["rss_peak_mb"]
    return out


@contextlib.contextmanager
def count_calls(obj, method: str):
    """Count calls of ``obj.method`` inside the block (an instance attribute shadows the method)."""
    box = {"calls": 0}
    original = getattr(obj, method)

    def wrapper(*a, **k):
        box["calls"] += 1
        return original(*a, **k)

    setattr(obj, method, wrapper)
    try:
        yield box
    finally:
        delattr(obj, method)


# --------------------------------------------------------------------------- inputs


def cpu_name() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def device_info(device: torch.device) -> dict:
    info = {"torch": torch.__version__, "python": platform.python_version(), "cpu": cpu_name(),
            "cpu_count": os.cpu_count(), "torch_threads": torch.get_num_threads(),
            "torch_interop_threads": torch.get_num_interop_threads(), "platform": platform.platform()}
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except (ImportError, OSError):
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(gpu=props.name, gpu_memory_gb=round(props.total_memory / 2**30, 1),
                    cuda=torch.version.cuda, bf16=torch.cuda.is_bf16_supported())
        info["label"] = f"cuda: {props.name}"
    else:
        info["label"] = f"cpu: {info['cpu']} ({torch.get_num_threads()} torch threads, {os.cpu_count()} cores)"
    return info


def synthetic_images(folder: Path, count: int, size: tuple[int, int], seed: int = 0) -> list[Path]:
    """``count`` distinct JPEGs (quality 90) of a lesion-like picture: a skin-tone gradient, a
    dark irregular blob, texture noise. Deterministic for a seed."""
    from PIL import Image

    folder.mkdir(parents=True, exist_ok=True)
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    paths = []
    for i in range(count):
        rng = np.random.default_rng(seed + i)
        base = np.array([205, 160, 135], np.float32) + rng.normal(0, 10, 3)
        img = base + (xx / w - 0.5)[..., None] * 30 + rng.normal(0, 8, (h, w, 3))
        cx, cy = w * rng.uniform(0.35, 0.65), h * rng.uniform(0.35, 0.65)
        r = min(w, h) * rng.uniform(0.15, 0.3)
        ang = np.arctan2(yy - cy, xx - cx)
        rad = r * (1 + 0.2 * np.sin(3 * ang + rng.uniform(0, 6)))
        blob = 0.5 * (1 - np.tanh((np.hypot(xx - cx, yy - cy) - rad) / 8))  # 1 / (1 + e^(z/4)), no overflow
        img = img * (1 - 0.6 * blob[..., None]) + np.array([60, 30, 20], np.float32) * 0.6 * blob[..., None]
        p = folder / f"bench_{i:03d}.jpg"
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(p, quality=90)
        paths.append(p)
    return paths


# --------------------------------------------------------------------------- the measurements


def _encoder_fn(model, x: torch.Tensor, autocast: bool = True) -> Callable[[], torch.Tensor]:
    """The bare encoder on prepared (normalised, on-device) pixels, as the model runs it."""

    def run():
        with torch.inference_mode(), (model._autocast() if autocast else contextlib.nullcontext()):
            return model.backbone.encode_image(x)

    return run


def single_scale_predict(model, src) -> np.ndarray:
    """A single-scale model used like HVL: decode, the backbone's view, one crop through the
    encoder, zero-shot softmax against the class embeddings (MCM). Returns p (C,)."""
    from . import equations as eq
    from .geometry import square_view, to_tensor01
    from .images import load_image

    li = load_image(src)
    x = to_tensor01(square_view(li.image, model.backbone.image_size)).unsqueeze(0)
    v = model.encode_crops(x)
    cfg = model.head.config
    t = model.text
    with torch.inference_mode():
        if cfg.similarity == "cosine":
            v, t = torch.nn.functional.normalize(v, dim=-1), torch.nn.functional.normalize(t, dim=-1)
        p = eq.class_probs(v, t, cfg.tau, model.logit_bias, cfg.similarity)[0, :model.head.num_classes]
    return p.float().cpu().numpy()


def _ms(xs: Sequence[float]) -> float:
    return round(median(xs) * 1000, 3)


def bench_latency(model, path: Path, s: BenchSettings, device: torch.device) -> dict:
    from .geometry import hierarchical_crops, num_crops
    from .images import load_image

    n, S = model.n, model.backbone.image_size
    li = load_image(path)
    crops = hierarchical_crops(li.image, n, S, model.detail)
    x = model.backbone.normalize(crops.to(device))
    fns = {"hvl_pipeline": lambda: model.predict(path),
           "encoder": _encoder_fn(model, x),
           "single_scale_forward": _encoder_fn(model, x[:1].contiguous()),
           "single_scale_pipeline": lambda: single_scale_predict(model, path)}
    t = interleaved(fns, s.repeats, s.warmup, device)

    # cheap stages, many repeats: where the overhead goes
    reps = 3 if s.quick else max(10, s.repeats)
    where = device if getattr(model, "crops_on_device", False) else None
    encoded = model.encode(path)
    thresholds = iter(np.linspace(0.05, 0.95, reps + s.warmup + 1))
    stages = interleaved({
        "load": lambda: load_image(path),
        "crops": lambda: hierarchical_crops(li.image, n, S, model.detail, device=where),
        "threshold_update": lambda: model.decide(encoded, threshold=float(next(thresholds))),
    }, reps, s.warmup, device)
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
    from .geometry import hierarchical_crops
    from .images import load_image
    from .model import MAX_CROPS_PER_CALL

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
            model.encode_batch(paths[i:i + bs])

    t = interleaved({"predict_batch": lambda: model.predict_batch(paths, batch_size=bs),
                     "encode_batch": features, "encoder": encoder_all}, s.throughput_repeats,
                    1 if device.type == "cuda" else 0, device)
    mem_batch = measure_memory(lambda: model.predict_batch(paths[:bs], batch_size=bs), device)
    return {
        "images": N, "batch_size": bs,
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
    from .geometry import split_scales

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
            idx = perm[s:s + batch]
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


def _trainer_epochs(head, v, labels, text, epochs: int, device: torch.device) -> list[float] | None:
    """Epoch times of the project's trainer (``hvl_core.train.train_head``), or None when it is
    not there or has another interface."""
    try:
        from .features import FeatureSet
        from .train import TrainConfig, train_head
    except ImportError:
        return None
    N = len(v)
    feats = FeatureSet(v=v, paths=[f"bench/{i}" for i in range(N)], labels=labels, groups=[""] * N)
    res = train_head(head, text, None, feats, TrainConfig(epochs=epochs, batch_size=PAPER_BATCH), device=device,
                     progress=False, log=lambda msg: None)
    return [float(r["seconds"]) for r in res.history]


def bench_training(model, images: list, s: BenchSettings, device: torch.device, full: bool,
                   bare_loop: bool = True) -> dict:
    """Cached-feature epochs vs an end-to-end epoch, for this backbone and n, in interleaved
    rounds (one cached epoch, one end-to-end batch), so the ratio holds on a loaded machine."""
    from .geometry import hierarchical_crops, split_scales
    from .head import HVLHead

    d, n, S = model.backbone.embed_dim, model.n, model.backbone.image_size
    N, C = s.train_images, s.train_classes
    v, labels, text = _train_tensors(d, n, N, C, s.seed)
    opts = _head_options(model)
    note = ["hvl_core.train.train_head"]

    def cached_epoch() -> float:
        """Seconds of one epoch of the project's trainer on a fresh head (its own epoch timer),
        else of the bare loop."""
        if note[0].startswith("hvl_core"):
            try:
                t = _trainer_epochs(HVLHead(d, C, **opts), v, labels, text, 1, device)
            except (TypeError, AttributeError, ValueError) as e:  # another helper's API moved: say so
                t, note[0] = None, f"bench minimal loop (train_head failed: {type(e).__name__}: {e})"
            if t is not None:
                return t[0]
            if note[0].startswith("hvl_core"):
                note[0] = "bench minimal loop (hvl_core.train not available)"
        return _minimal_epochs(HVLHead(d, C, **opts), v, labels, text, 1, device)[0]

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
        for what in (("cached", "e2e") if r % 2 == 0 else ("e2e", "cached")):
            if what == "cached":
                t_cached.append(cached_epoch())
            else:
                t_e2e.append(timed(e2e_step, device) / B * N)
    out = {
        "trainer": note[0], "train_images": N, "classes": C, "batch_size": PAPER_BATCH, "dim": d,
        "rounds": s.train_epochs, "e2e_batch": B,
        "cached_epoch_s": round(median(t_cached), 4),
        "e2e_epoch_s": round(median(t_e2e), 3),
        "e2e_epoch_note": f"time of one end-to-end batch of {B} image(s) × {N}/{B}, per round",
        "cached_train_speedup": round(ratio_median(t_e2e, t_cached), 2),
        "raw_s": {"cached_epoch": [round(x, 5) for x in t_cached], "e2e_epoch": [round(x, 3) for x in t_e2e]},
        "cached_epoch_minimal_loop_s": None,
    }
    if bare_loop:
        out["cached_epoch_minimal_loop_s"] = round(
            _minimal_epochs(HVLHead(d, C, **opts), v, labels, text, 2, device)[1], 4)
    if full:
        trainer = (_trainer_epochs(HVLHead(d, C, **opts), v, labels, text, PAPER_EPOCHS, device)
                   if note[0].startswith("hvl_core") else None)
        if trainer is None:
            trainer = _minimal_epochs(HVLHead(d, C, **opts), v, labels, text, PAPER_EPOCHS, device)
        out["train_100_epochs_s"] = round(sum(trainer), 3)
        out["train_100_epochs_note"] = "measured (100 epochs)"
    else:
        out["train_100_epochs_s"] = round(out["cached_epoch_s"] * PAPER_EPOCHS, 3)
        out["train_100_epochs_note"] = f"extrapolated: median of {len(t_cached)} epoch(s) × 100"
    return out


def bench_checks(model, path: Path, paths: list[Path], s: BenchSettings, device: torch.device) -> dict:
    """The structural claims: one encoder call per image (and per batch), inference mode,
    a frozen encoder, text embeddings computed once per class set."""
    from .model import MAX_CROPS_PER_CALL, class_embeddings

    bs = min(s.batch_size, len(paths))
    with count_calls(model.backbone, "encode_image") as one:
        model.predict(path)
    with count_calls(model.backbone, "encode_image") as batch:
        model.encode_batch(paths[:bs])
    with count_calls(model.backbone, "encode_classes") as text_calls:
        t0 = time.perf_counter()
        class_embeddings(model.backbone, model.classes)
        t_text = time.perf_counter() - t0
    from .geometry import hierarchical_crops, num_crops

    v = model.encode_crops(hierarchical_crops(_first_image(path), 1, model.backbone.image_size)[:1])
    params = [p for m in model.backbone.modules() for p in m.parameters()]
    return {
        "encoder_calls_per_image": one["calls"],
        "encoder_calls_per_batch": batch["calls"], "batch_images": bs,
        "encoder_calls_per_batch_expected": math.ceil(bs * num_crops(model.n) / MAX_CROPS_PER_CALL),
        "text_encoder_calls_on_reuse": text_calls["calls"], "text_lookup_ms": round(t_text * 1000, 4),
        "encoder_output_is_inference_tensor": bool(v.is_inference()),
        "encoder_frozen": not any(p.requires_grad for p in params),
        "torch_threads": torch.get_num_threads(), "cpu_count": os.cpu_count(),
    }


def _first_image(path: Path):
    from .images import load_image

    return load_image(path).image


def bench_variants(model, path: Path, s: BenchSettings, device: torch.device) -> list[dict]:
    """Before/after probes of the speed choices, interleaved in one run."""
    from .geometry import hierarchical_crops
    from .images import load_image

    li = load_image(path)
    crops = hierarchical_crops(li.image, model.n, model.backbone.image_size, model.detail)
    x = model.backbone.normalize(crops.to(device))
    return (_gpu_variants if device.type == "cuda" else _cpu_variants)(model, path, x, s, device)


def _gpu_variants(model, path: Path, x: torch.Tensor, s: BenchSettings, device: torch.device) -> list[dict]:
    out = []
    # autocast (the model's default on CUDA) vs fp32
    t = interleaved({"fp32": _encoder_fn(model, x, autocast=False), "autocast": _encoder_fn(model, x)},
                    s.repeats, s.warmup, device)
    out.append({"what": "encoder precision on CUDA (model default: bf16/fp16 autocast)", "before": "fp32",
                "after": "autocast", "before_ms": _ms(t["fp32"]), "after_ms": _ms(t["autocast"]),
                "speedup": round(ratio_median(t["fp32"], t["autocast"]), 3)})
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
    out.append({"what": "full pipeline: crops upsampled/cut on the CPU then copied, vs on the GPU",
                "before": "crops on CPU (pinned copy)", "after": "crops on GPU",
                "before_ms": _ms(t["host"]), "after_ms": _ms(t["device"]),
                "speedup": round(ratio_median(t["host"], t["device"]), 3)})
    # the head of one image (the demo's threshold update) on the GPU (model default) vs the CPU
    import copy

    on_cpu = copy.copy(model)
    on_cpu.device = torch.device("cpu")
    on_cpu.head = copy.deepcopy(model.head).cpu()
    on_cpu.text = model.text.cpu()
    on_cpu.logit_bias = None if model.logit_bias is None else model.logit_bias.cpu()
    encoded = model.encode(path)
    t = interleaved({"gpu": lambda: model.decide(encoded, threshold=0.3),
                     "cpu": lambda: on_cpu.decide(encoded, threshold=0.3)}, max(10, s.repeats), s.warmup, device)
    out.append({"what": "head + Prediction of one image (threshold update): on the GPU vs on the CPU",
                "before": "head on GPU (default)", "after": "head on CPU",
                "before_ms": _ms(t["gpu"]), "after_ms": _ms(t["cpu"]),
                "speedup": round(ratio_median(t["gpu"], t["cpu"]), 3)})
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
    out.append({"what": "encoder precision on CPU (model default: fp32); bf16 autocast is an option, "
                        f"not the default (min cosine to fp32 embeddings: {cos:.4f})",
                "before": "fp32", "after": "bf16 autocast", "before_ms": _ms(t["fp32"]), "after_ms": _ms(t["bf16"]),
                "speedup": round(ratio_median(t["fp32"], t["bf16"]), 3), "min_cosine_to_fp32": round(cos, 5)})
    if "one_thread" in t:
        out.append({"what": f"CPU threads: 1 vs all {torch.get_num_threads()} (model default: all)",
                    "before": "1 thread", "after": f"{torch.get_num_threads()} threads",
                    "before_ms": _ms(t["one_thread"]), "after_ms": _ms(t["fp32"]),
                    "speedup": round(ratio_median(t["one_thread"], t["fp32"]), 3)})
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
    return {"what": "torch.compile of the encoder (not the default: first call compiles)", "before": "eager",
            "after": "compiled", "before_ms": _ms(t["eager"]), "after_ms": _ms(t["compiled"]),
            "speedup": round(ratio_median(t["eager"], t["compiled"]), 3), "compile_s": round(t_compile, 2)}


# --------------------------------------------------------------------------- the run


def headline_n(ns: Sequence[int]) -> int:
    return 2 if 2 in ns else list(ns)[0]


def run_bench(settings: BenchSettings, progress: Callable[[str], None] | None = None,
              on_partial: Callable[[dict], None] | None = None) -> dict:
    """Run every measurement; returns the JSON-ready result. ``on_partial(result)`` is called
    after each configuration (so a run cut short still leaves its numbers behind)."""
    from .backbones import BackboneUnavailable, create_backbone
    from .model import load_model, resolve_device

    settings.validate()
    log = progress or (lambda msg: None)
    device = resolve_device(settings.device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError("--device cuda was asked for, but CUDA is not available")
    s = settings.resolved(device)
    info = device_info(device)
    hn = headline_n(s.ns)
    result = {"schema": SCHEMA, "device": info["label"], "device_info": info,
              "settings": {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(s).items()},
              "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "runs": [], "errors": [],
              "targets": {"hvl_over_encoder": TARGET_HVL_OVER_ENCODER, "cached_train_speedup": TARGET_CACHED_SPEEDUP,
                          "paper_memory_gb": PAPER_MEMORY_GB}}
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
                run = {"backbone": model.backbone.name, "n": n, "embed_dim": model.backbone.embed_dim,
                       "image_size": model.backbone.image_size, "classes": len(model.classes.names)}
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
                run.update(hvl_over_encoder=lat["hvl_over_encoder"], hvl_over_single_scale=lat["hvl_over_single_scale"],
                           cached_train_speedup=tr["cached_train_speedup"],
                           threshold_update_ms=lat["threshold_update_ms"],
                           peak_memory_mb=run["memory_single"]["peak_mb"],
                           seconds=round(time.perf_counter() - t_cfg, 1))
                result["runs"].append(run)
                log(f"[bench] {name} n={n}: HVL/encoder {lat['hvl_over_encoder']:.3f}, "
                    f"HVL/single {lat['hvl_over_single_scale']:.2f}, cached speedup {tr['cached_train_speedup']:.0f}× "
                    f"({run['seconds']:.0f} s)")
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


def _fill_headline(result: dict, hn: int) -> None:
    runs = result["runs"]
    pick = next((r for r in runs if r["n"] == hn), runs[0])
    result["headline"] = {"backbone": pick["backbone"], "n": pick["n"]}
    for k in ("hvl_over_encoder", "hvl_over_single_scale", "cached_train_speedup", "threshold_update_ms",
              "peak_memory_mb"):
        result[k] = pick[k]
    result["train_100_epochs_s"] = pick["training"]["train_100_epochs_s"]
    result["targets_met"] = {"hvl_over_encoder": pick["hvl_over_encoder"] <= TARGET_HVL_OVER_ENCODER,
                             "cached_train_speedup": pick["cached_train_speedup"] >= TARGET_CACHED_SPEEDUP}


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
    return (f"{run['backbone']} n={run['n']}: the encoder takes {enc:.1f} ms; outside it: {desc}")


def render_markdown(r: dict) -> str:
    info = r["device_info"]
    s = r["settings"]
    L = [f"# HVL benchmark — {r['device']}", ""]
    if r.get("partial"):
        L += ["**Partial result** (the run was cut short); the configurations below are complete.", ""]
    L += [f"torch {info['torch']}, Python {info['python']}, {info['torch_threads']} torch threads on "
          f"{info['cpu_count']} cores" + (f", {info['gpu']} ({info['gpu_memory_gb']} GB)" if "gpu" in info else "")
          + (f"; load average at start {info['load_avg_1m']}" if "load_avg_1m" in info else "") + ".",
          f"Run {r.get('started', '')}, {r.get('seconds', 0):.0f} s. Repeats {s['repeats']} (warm-up {s['warmup']}), "
          f"interleaved; times are medians, ratios are medians of per-round ratios (their range in brackets). "
          f"Test images: synthetic "
          f"{s['image_size'][0]}×{s['image_size'][1]} JPEGs. Classes: preset {s['preset']}.", ""]
    h = r["headline"]
    tm = r["targets_met"]
    head_run = next((x for x in r["runs"] if (x["backbone"], x["n"]) == (h["backbone"], h["n"])), {})
    L += [f"## Headline ({h['backbone']}, n={h['n']})", "",
          "| measure | value | target |", "|---|---|---|",
          f"| full HVL pipeline / bare encoder on the same crops (`hvl_over_encoder`) | {r['hvl_over_encoder']:.3f}"
          f"{_spread(head_run)} | "
          f"≤ {TARGET_HVL_OVER_ENCODER:.2f} {'✅' if tm['hvl_over_encoder'] else '❌'} |",
          f"| full HVL pipeline / one single-scale forward (`hvl_over_single_scale`) | {r['hvl_over_single_scale']:.2f} | "
          "(the cost of the hierarchy) |",
          f"| cached-feature epoch speed-up over end to end (`cached_train_speedup`) | {r['cached_train_speedup']:.0f}× | "
          f"≥ {TARGET_CACHED_SPEEDUP:.0f}× {'✅' if tm['cached_train_speedup'] else '❌'} |",
          f"| 100 epochs on {s['train_images']} cached images | {r['train_100_epochs_s']:.1f} s | |",
          f"| threshold update (`model.decide`) | {r['threshold_update_ms']:.2f} ms | |",
          f"| peak memory, one image (`peak_memory_mb`) | {r['peak_memory_mb']:.0f} MB | paper: "
          f"{PAPER_MEMORY_GB} GB |", ""]
    reasons = [_overhead_reason(run) for run in r["runs"] if run["hvl_over_encoder"] > TARGET_HVL_OVER_ENCODER]
    if reasons:
        L += ["Where the ratio misses 1.10, the time outside the encoder goes to (median per call):", ""]
        L += [f"- {x}" for x in reasons] + [""]
    L += ["## Latency per image", "",
          "| backbone | n | crops | HVL pipeline ms | bare encoder ms | 1 forward ms | single-scale pipeline ms | "
          "HVL/encoder | HVL/1 forward | HVL/single-scale pipeline | load ms | crops ms | head+Prediction ms | "
          "other ms | peak MB |",
          "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        lat, ms, st = run["latency"], run["latency"]["ms"], run["latency"]["stages_ms"]
        L.append(f"| {run['backbone']} | {run['n']} | {lat['crops']} | {_f(ms['hvl_pipeline'], 1)} | {_f(ms['encoder'], 1)} | "
                 f"{_f(ms['single_scale_forward'], 1)} | {_f(ms['single_scale_pipeline'], 1)} | "
                 f"{lat['hvl_over_encoder']:.3f}{_spread(run)} | {lat['hvl_over_single_scale']:.2f} | "
                 f"{lat['hvl_over_single_scale_pipeline']:.2f} | {_f(st['load'], 1)} | {_f(st['crops'], 1)} | "
                 f"{_f(st['threshold_update'], 2)} | {_f(st['other'], 1)} | {_f(run['memory_single']['peak_mb'], 0)} |")
    gpu = "gpu" in info
    L += ["", "`other` = pipeline − encoder − load − crops − head: normalisation, host↔device copies, Python. "
          "Peak memory: " + ("`torch.cuda.max_memory_allocated` (weights included); device used (CUDA context "
                             "and allocator cache included) below." if gpu else
                             "process RSS (weights, Python and torch included), sampled every 3 ms."), ""]
    if gpu:
        L += ["| backbone | n | max allocated MB | max reserved MB | device used MB |", "|---|---|---|---|---|"]
        for run in r["runs"]:
            m = run["memory_single"]
            L.append(f"| {run['backbone']} | {run['n']} | {m['gpu_max_allocated_mb']:.0f} | {m['gpu_max_reserved_mb']:.0f} | "
                     f"{m['gpu_device_used_mb']:.0f} |")
        L.append("")
    L += ["## Throughput", "",
          "| backbone | n | images | batch | predict_batch img/s | encode_batch (features) img/s | bare encoder img/s | "
          "HVL/encoder (batched) | peak MB (one batch) |", "|---|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        t = run["throughput"]
        L.append(f"| {run['backbone']} | {run['n']} | {t['images']} | {t['batch_size']} | {_f(t['predict_images_per_s'])} | "
                 f"{_f(t['features_images_per_s'])} | {_f(t['encoder_images_per_s'])} | {t['hvl_over_encoder_batched']:.3f} | "
                 f"{_f(t['memory_batch']['peak_mb'], 0)} |")
    L += ["", "From image files (decode included); the bare encoder runs on crops already on the device.", "",
          "## Training", "",
          f"Head + Adam (lr 0.002, batch {PAPER_BATCH}) on {s['train_images']} random cached images with "
          f"{s['train_classes']} classes (cached epoch: the project's trainer, one epoch on a fresh head); the "
          "end-to-end epoch pushes decoded images through crops → frozen encoder → head step, one batch timed and "
          "scaled to the epoch. The two alternate in rounds; the speed-up is the median of per-round ratios.", "",
          "| backbone | n | d | trainer | cached epoch s | (bare loop) s | end-to-end epoch s | speed-up | 100 epochs s |",
          "|---|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        t = run["training"]
        L.append(f"| {run['backbone']} | {run['n']} | {t['dim']} | {t['trainer'].split(' (')[0]} | {t['cached_epoch_s']:.3f} | "
                 f"{_f(t['cached_epoch_minimal_loop_s'], 3)} | {_f(t['e2e_epoch_s'], 1)} | {t['cached_train_speedup']:.0f}× | "
                 f"{t['train_100_epochs_s']:.1f} ({t['train_100_epochs_note'].split(':')[0]}) |")
    variants = [(run, v) for run in r["runs"] for v in run.get("variants", [])]
    if variants:
        L += ["", "## Before / after (same run, interleaved)", "",
              "| backbone | n | what | before | after | before ms | after ms | speed-up |", "|---|---|---|---|---|---|---|---|"]
        for run, v in variants:
            if "error" in v:
                L.append(f"| {run['backbone']} | {run['n']} | {v['what']} | – | – | – | – | failed: {v['error']} |")
                continue
            extra = f" (compile {v['compile_s']} s)" if "compile_s" in v else ""
            L.append(f"| {run['backbone']} | {run['n']} | {v['what']} | {v['before']} | {v['after']} | "
                     f"{_f(v['before_ms'], 1)} | {_f(v['after_ms'], 1)} | {v['speedup']:.2f}×{extra} |")
    L += ["", "## Checks", "", "| backbone | n | encoder calls / image | encoder calls / batch (expected) | "
          "text re-encoded on reuse | inference mode | encoder frozen | torch threads / cores |",
          "|---|---|---|---|---|---|---|---|"]
    for run in r["runs"]:
        c = run["checks"]
        L.append(f"| {run['backbone']} | {run['n']} | {c['encoder_calls_per_image']} | {c['encoder_calls_per_batch']} of "
                 f"{c['batch_images']} images ({c['encoder_calls_per_batch_expected']}) | {c['text_encoder_calls_on_reuse']} "
                 f"calls ({c['text_lookup_ms']:.3f} ms) | {c['encoder_output_is_inference_tensor']} | {c['encoder_frozen']} | "
                 f"{c['torch_threads']} / {c['cpu_count']} |")
    if r.get("errors"):
        L += ["", "## Not measured", ""] + [f"- {e['backbone']}: {e['error']}" for e in r["errors"]]
    return "\n".join(L) + "\n"


def write_results(result: dict, out_dir: str | os.PathLike, name: str = "bench") -> tuple[Path, Path]:
    """``OUT/NAME.json`` and ``OUT/NAME.md``, each written atomically."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = []
    for suffix, text in ((".json", json.dumps(result, indent=1) + "\n"), (".md", render_markdown(result))):
        p = out / f"{name}{suffix}"
        tmp = p.with_name(p.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, p)
        paths.append(p)
    return paths[0], paths[1]


def main_progress(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
