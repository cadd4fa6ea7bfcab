"""Timing, memory and machine description for the benchmark: interleaved runs, ratios of
medians, peak RSS / CUDA memory, synthetic test images."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import statistics
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch

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


def interleaved(
    fns: dict[str, Callable[[], object]], repeats: int, warmup: int, device: torch.device
) -> dict[str, list[float]]:
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
        for k in names[r % len(names) :] + names[: r % len(names)]:
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

    def __enter__(self) -> PeakRSS:
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
        out.update(
            gpu_max_allocated_mb=round(torch.cuda.max_memory_allocated(device) / 2**20, 1),
            gpu_max_reserved_mb=round(torch.cuda.max_memory_reserved(device) / 2**20, 1),
            gpu_device_used_mb=round((total - free) / 2**20, 1),
        )
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
    info = {
        "torch": torch.__version__,
        "python": platform.python_version(),
        "cpu": cpu_name(),
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "torch_interop_threads": torch.get_num_interop_threads(),
        "platform": platform.platform(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
        info["load_avg_1m"] = round(os.getloadavg()[0], 2)
    except (ImportError, OSError):
        pass
    if device.type == "cuda":
        props = torch.cuda.get_device_properties(device)
        info.update(
            gpu=props.name,
            gpu_memory_gb=round(props.total_memory / 2**30, 1),
            cuda=torch.version.cuda,
            bf16=torch.cuda.is_bf16_supported(),
        )
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
