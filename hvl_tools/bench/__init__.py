"""``hvl bench``: how fast HVL is, measured in one run on one machine.

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
  trainer (``hvl_tools.train.train_head``) and with a bare loop, against an epoch end to end
  (crops → frozen encoder → head step, per image, × ``train_images``): ``cached_train_speedup``;
  and the time for 100 epochs (measured for the headline configuration, else extrapolated);
- the demo's **threshold update**: ``model.decide(encoded, threshold=...)`` in ms.

Nothing here is downloaded: the test images are synthetic JPEGs written to a temporary folder.
"""

from __future__ import annotations

from .report import main_progress, render_markdown, write_results
from .run import headline_n, run_bench
from .settings import (
    DEFAULT_BACKBONES,
    DEFAULT_NS,
    PAPER_MEMORY_GB,
    REQUIRED_KEYS,
    SCHEMA,
    BenchSettings,
)

__all__ = [
    "BenchSettings",
    "DEFAULT_BACKBONES",
    "DEFAULT_NS",
    "PAPER_MEMORY_GB",
    "REQUIRED_KEYS",
    "SCHEMA",
    "headline_n",
    "main_progress",
    "render_markdown",
    "run_bench",
    "write_results",
]
