"""ZeroGPU: with a stand-in ``spaces`` module, every path of the app that runs the image encoder —
an upload, compare, the batch tab, ``/predict`` and ``/batch``, the reference set — runs it inside
the ``spaces.GPU`` function, whose arguments are a key and decoded images (never a model or a
tensor, which ``spaces`` would pickle on every call), with a reservation sized to the images."""

from __future__ import annotations

import base64
import functools
import importlib
import sys
import types
from dataclasses import fields
from pathlib import Path

import pytest
import torch

import app.gpu
from app import api, handlers
from app import views_handlers as vh
from app.examples import load_examples
from app.headless import stub_ui, stub_views
from app.reference import ReferenceSet
from app.service import ModelService, Session, Spec
from app.settings import Settings
from hvl_core import HVLModel
from hvl_core.images import LoadedImage

ROOT = Path(__file__).resolve().parents[2]
SKIN = ROOT / "assets" / "skin_nevus_closeup.jpg"
OOD = ROOT / "assets" / "ood_ct_vertebra.png"


def stand_in_spaces(calls: list, depth: list) -> types.ModuleType:
    """A ``spaces`` whose ``GPU`` records each call (function, arguments, seconds reserved) and
    marks the time inside it."""

    def GPU(fn=None, duration=None):
        def deco(f):
            @functools.wraps(f)
            def run(*args, **kwargs):
                seconds = duration(*args, **kwargs) if callable(duration) else duration
                calls.append((f.__name__, args, kwargs, seconds))
                depth[0] += 1
                try:
                    return f(*args, **kwargs)
                finally:
                    depth[0] -= 1

            return run

        return deco(fn) if fn is not None else deco

    mod = types.ModuleType("spaces")
    mod.GPU = GPU
    return mod


@pytest.fixture
def zero_gpu(monkeypatch, tiny_backbone):
    """The app as on a ZeroGPU Space; the backbone's image encoder refuses to run outside ``spaces.GPU``."""
    calls, depth, encoded = [], [0], []
    monkeypatch.setitem(sys.modules, "spaces", stand_in_spaces(calls, depth))
    monkeypatch.setenv("SPACES_ZERO_GPU", "true")
    importlib.reload(app.gpu)  # decorated at import, as on a Space
    real = tiny_backbone.encode_image

    def guarded(pixels):
        assert depth[0] > 0, "the image encoder ran outside the spaces.GPU function"
        encoded.append(pixels.shape[0])
        return real(pixels)

    monkeypatch.setattr(tiny_backbone, "encode_image", guarded)
    yield calls, encoded
    monkeypatch.undo()
    importlib.reload(app.gpu)


def no_big_arguments(value) -> bool:
    """Nothing in ``value`` (recursively) is a model, a module or a tensor."""
    if isinstance(value, (torch.nn.Module, torch.Tensor, HVLModel)):
        return False
    if isinstance(value, (list, tuple)):
        return all(no_big_arguments(v) for v in value)
    if isinstance(value, dict):
        return all(no_big_arguments(v) for v in value.values())
    return True


def test_without_spaces_the_gpu_function_is_a_plain_call():
    assert app.gpu.encode_on_gpu.__module__ == "app.gpu" and not hasattr(app.gpu.encode_on_gpu, "__wrapped__")


def test_every_encoder_path_runs_inside_spaces_gpu(zero_gpu, tiny_backbone):
    calls, encoded = zero_gpu
    assert hasattr(app.gpu.encode_on_gpu, "__wrapped__")  # spaces.GPU wrapped it
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    examples = load_examples()
    ui, v = stub_ui(svc, examples), stub_views(ReferenceSet(examples))
    s = Settings(threshold=0.5)
    values = {getattr(ui.controls, f.name): getattr(s, f.name) for f in fields(Settings)}
    values.update({ui.session: Session(model_identity=Spec().identity()), ui.shown: {}, ui.upload: str(SKIN)})
    paths = {}

    def ran(name, fn):
        before = len(calls)
        fn()
        paths[name] = calls[before:]

    ran("upload", lambda: handlers.on_upload(ui, values, progress=None))
    cmp = {**values, v.compare.a: SKIN.name, v.compare.a_file: None, v.compare.b: None, v.compare.b_file: str(OOD)}
    ran("compare", lambda: vh.on_compare(ui, v, cmp))
    ran("batch tab", lambda: vh.analyse_batch(svc, s, [str(SKIN), str(OOD), str(SKIN)]))
    uri = "data:image/jpeg;base64," + base64.b64encode(SKIN.read_bytes()).decode()
    ran("/predict", lambda: api.predict(svc, uri))
    ran("/batch", lambda: api.batch(svc, [uri, uri]))
    model = svc.model(Spec())
    ran("reference set", lambda: v.reference.encodings(model))
    for name, got in paths.items():
        assert got, f"{name}: no spaces.GPU call"
        for fn, args, kwargs, seconds in got:
            assert fn == "encode_on_gpu" and no_big_arguments(args) and no_big_arguments(kwargs), name
            key, images = args
            assert isinstance(key, str) and all(isinstance(i, LoadedImage) for i in images)
            assert seconds == app.gpu.gpu_seconds(key, images) >= app.gpu.GPU_BASE_S
    assert [len(c[1][1]) for c in paths["compare"]] == [1, 1]  # the two sides
    assert [len(c[1][1]) for c in paths["batch tab"]] == [3] and [len(c[1][1]) for c in paths["/batch"]] == [2]
    assert len(paths["reference set"]) == 1 and len(paths["reference set"][0][1][1]) == len(examples)
    assert calls[-1][3] > paths["upload"][0][3]  # a bigger batch reserves longer
    assert sum(encoded) > 0  # the encoder did run, and only inside


def test_the_page_is_built_only_once_the_warm_up_is_done(tiny_backbone, monkeypatch):
    """The encoder's first call runs beside the page's construction, and ``build_demo`` returns
    (the server starts answering) only once it is over: the first request never waits for it."""
    import threading
    from concurrent.futures import ThreadPoolExecutor

    from app import layout

    registered, done, seen = threading.Event(), threading.Event(), []
    pool = ThreadPoolExecutor(1)

    def slow_warm_up(model):
        def run():  # still running when the page is complete (its API registered last)
            registered.wait()
            threading.Event().wait(1.0)
            done.set()

        return pool.submit(run)

    register, configure = layout.api.register, layout.configure_queue
    monkeypatch.setattr(app.gpu, "warm_up", slow_warm_up)
    monkeypatch.setattr(layout.api, "register", lambda svc: (register(svc), registered.set()))
    monkeypatch.setattr(layout, "configure_queue", lambda demo: (seen.append(done.is_set()), configure(demo))[1])
    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    layout.build_demo(svc)
    assert seen == [True]
