"""The encoder's one door: every image the app encodes — an upload, compare, the batch tab and
``/batch``, the reference set — goes through ``encode_images``, which calls a ``gpu_task``
function (``spaces.GPU`` on a ZeroGPU Space, a plain call elsewhere).

It runs on the model's thread (``app/model_thread.py``), where the warm-up runs too: a request
right after the start queues behind it instead of running beside it.

``spaces`` pickles the arguments of every call into its GPU worker (a ViT-B/16 would cost seconds
and 600 MB each time), so the GPU function takes a model *key* and the decoded images, and finds
the model in ``MODELS``, a module-level registry the worker sees. Its reservation grows with the
number of images (``gpu_seconds``).
"""

from __future__ import annotations

import threading
import weakref
from collections.abc import Sequence
from concurrent.futures import Future

from hvl_core import Encoded, HVLModel
from hvl_core.geometry import num_crops
from hvl_core.hub import gpu_task
from hvl_core.images import LoadedImage
from hvl_core.model import MAX_CROPS_PER_CALL

from . import model_thread

#: seconds reserved per GPU call: a fixed part (moving the model, the first kernels) and a part
#: per image (21 crops at n = 2; a ViT-B/16 takes well under a second for them on a GPU)
GPU_BASE_S, GPU_PER_IMAGE_S, GPU_MAX_S = 20, 2, 120
#: encoder passes before the server answers (``warm_up``)
WARM_UP_PASSES = 2
#: the models the GPU function may run, by key; weak, so the service's caches decide their life
MODELS: weakref.WeakValueDictionary[str, HVLModel] = weakref.WeakValueDictionary()
_lock = threading.Lock()


def model_key(model: HVLModel) -> str:
    """The registry key of ``model`` (registered on first use)."""
    key = f"{model.backbone.name}:{id(model):x}"
    with _lock:
        MODELS[key] = model
    return key


def gpu_seconds(key: str, images: Sequence[LoadedImage]) -> int:
    """The GPU reservation of one call: ``GPU_BASE_S`` + ``GPU_PER_IMAGE_S`` per image, at most ``GPU_MAX_S``."""
    return min(GPU_MAX_S, GPU_BASE_S + GPU_PER_IMAGE_S * len(images))


@gpu_task(duration=gpu_seconds)
def encode_on_gpu(key: str, images: list[LoadedImage]) -> list[Encoded]:
    """The encoder on ``images`` with the registered model ``key``, in passes of
    ``images_per_pass``. Its arguments are a string and decoded images only."""
    model = MODELS.get(key)
    if model is None:  # dropped from the service's caches between registering and running
        raise RuntimeError(f"model {key} is no longer loaded; try again")
    per_pass = images_per_pass(model)
    return [e for s in range(0, len(images), per_pass) for e in model.encode_batch(images[s : s + per_pass])]


def images_per_pass(model: HVLModel) -> int:
    """Images per encoder pass: on a GPU as many as fill one chunk (``MAX_CROPS_PER_CALL``
    crops); on the CPU one, the shape of an upload's pass — a bigger batch buys no throughput
    there, only memory (a DenseNet-121's activations for 252 crops take gigabytes), and the same
    shape re-uses the kernels the first call set up."""
    return max(1, MAX_CROPS_PER_CALL // num_crops(model.n)) if model.device.type != "cpu" else 1


def encode_images(model: HVLModel, images: Sequence[LoadedImage]) -> list[Encoded]:
    """``model.encode_batch(images)`` through the GPU function, on the model's thread: one call
    for all the images."""
    if not images:
        return []
    return model_thread.run(encode_on_gpu, model_key(model), list(images))


def warm_up(model: HVLModel, passes: int = WARM_UP_PASSES) -> Future | None:
    """``passes`` encoder passes on a blank image, queued on the model's thread, so the first
    request does not pay for the encoder's first calls: its kernels' set-up for the crop batch's
    shape (the first pass: ~1.3× a later one on the CPU), and the heap's growth to the pass's
    working set, which settles only on the second (~40,000 fresh pages, then none). Not on a
    ZeroGPU Space, where it would spend GPU quota at start-up."""
    from hvl_core.hub import on_zero_gpu

    if on_zero_gpu():
        return None
    from PIL import Image

    size = (model.backbone.image_size,) * 2
    blank = LoadedImage(Image.new("RGB", size, (128, 128, 128)), size)

    def encode_blank() -> None:
        for _ in range(passes):
            model.encode_batch([blank])

    return model_thread.submit(encode_blank)
