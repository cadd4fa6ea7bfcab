"""Benchmark settings and the contract of ``bench.json``."""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass

import torch

from hvl_tools.config import TrainConfig

SCHEMA = "hvl-bench/1"
#: the paper's inference-memory figure for HVL with one image (GB)
PAPER_MEMORY_GB = 2.8
TARGET_HVL_OVER_ENCODER = 1.10
TARGET_CACHED_SPEEDUP = 50.0
#: hvl score's images/s over the bare encoder's on the same crops
TARGET_SCORE_OVER_ENCODER = 0.95
PAPER_EPOCHS = TrainConfig().epochs
PAPER_BATCH = TrainConfig().batch_size
DEFAULT_BACKBONES = ("clip-vit-b16-random", "medmnist-densenet121")
DEFAULT_NS = (1, 2, 3)
#: the keys every bench.json has at its top level (the contract of ``hvl bench``)
REQUIRED_KEYS = (
    "schema",
    "device",
    "hvl_over_encoder",
    "hvl_over_single_scale",
    "cached_train_speedup",
    "threshold_update_ms",
    "peak_memory_mb",
    "headline",
    "runs",
    "settings",
    "device_info",
    "score_over_encoder",
)


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
    #: hvl score (local engine) from JPEG files against the bare encoder, for the headline n
    score: bool = True
    #: only the hvl score measures (and Ray, the compiled training step when asked)
    score_only: bool = False
    score_images: int | None = None
    score_repeats: int | None = None
    score_workers: int | None = None  # None: the command's default
    #: Ray engine against the local one (needs ray[data]); rounds of (local, ray)
    ray: bool = False
    ray_repeats: int = 1
    #: the cached trainer eager against compile_step=True (default on CUDA; minutes on a CPU)
    compile_train: bool | None = None

    def resolved(self, device: torch.device) -> BenchSettings:
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
        if s.score_images is None:
            s.score_images = 1024 if gpu else 8
        if s.score_repeats is None:
            s.score_repeats = 3 if gpu else 2
        if s.compile_train is None:
            s.compile_train = gpu
        s.backbones, s.ns = list(s.backbones), [int(n) for n in s.ns]
        return s

    @classmethod
    def quick_settings(cls, **kw) -> BenchSettings:
        """Seconds on a laptop CPU: for tests and smoke runs (numbers are not meaningful)."""
        base = dict(
            backbones=["tiny-clip-random"],
            ns=[2],
            repeats=2,
            warmup=0,
            images=2,
            batch_size=2,
            throughput_repeats=1,
            image_size=(96, 80),
            train_images=64,
            train_classes=5,
            train_epochs=1,
            full_train=False,
            e2e_images=2,
            quick=True,
            score_images=4,
            score_repeats=1,
        )
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
        for name in (
            "images",
            "batch_size",
            "throughput_repeats",
            "e2e_images",
            "train_epochs",
            "score_images",
            "score_repeats",
            "ray_repeats",
        ):
            v = getattr(self, name)
            if v is not None and v < 1:
                raise ValueError(f"{name} must be >= 1, got {v}")
        w, h = self.image_size
        if min(w, h) < 16:
            raise ValueError(f"image_size must be at least 16×16, got {w}×{h}")
