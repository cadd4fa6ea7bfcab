"""Every model computation of the server runs on one thread (app/model_thread.py): the encoder's
door, the page's build, and the events of the model groups."""

from __future__ import annotations

import contextvars
import inspect
import threading

import pytest

import app.gpu
from app import model_thread
from app.queueing import MODEL_GROUPS

REQUEST = contextvars.ContextVar("request", default=None)


def where() -> str:
    return threading.current_thread().name


def test_run_waits_for_the_call_on_the_model_thread_and_returns_its_value():
    assert not model_thread.is_model_thread()
    name = model_thread.run(where)
    assert name.startswith(model_thread.NAME) and name != where()
    assert model_thread.run(lambda a, b=0: a + b, 2, b=3) == 5


def test_its_exception_reaches_the_caller():
    def fail():
        raise ValueError("refused")

    with pytest.raises(ValueError, match="refused"):
        model_thread.run(fail)


def test_a_call_from_the_model_thread_runs_at_once():
    # waiting for the queue from its own worker would wait for ever
    assert model_thread.run(lambda: model_thread.run(where)) == model_thread.run(where)


def test_the_callers_context_variables_go_along():
    token = REQUEST.set("user-7")
    try:
        assert model_thread.run(REQUEST.get) == "user-7"
    finally:
        REQUEST.reset(token)
    assert model_thread.run(REQUEST.get) is None


def test_a_wrapped_function_keeps_its_signature():
    def handler(ui, values: dict, progress=None) -> dict:
        return {"on": where(), "values": values}

    wrapped = model_thread.on_model_thread(handler)
    assert inspect.signature(wrapped) == inspect.signature(handler)
    assert wrapped(None, {"k": 4})["on"].startswith(model_thread.NAME)


def test_the_encoder_runs_on_the_model_thread(monkeypatch):
    seen = []
    monkeypatch.setattr(app.gpu, "encode_on_gpu", lambda key, images: seen.append(where()) or ["e"] * len(images))
    model = type("M", (), {"backbone": type("B", (), {"name": "x"})()})()
    assert app.gpu.encode_images(model, ["image"]) == ["e"]
    assert seen and seen[0].startswith(model_thread.NAME)


def test_the_model_groups_events_run_on_the_model_thread_and_no_other(tiny_backbone):
    from app.layout import build_demo
    from app.service import ModelService

    svc = ModelService("tiny-clip-random", device="cpu")
    svc._backbones["tiny-clip-random"] = tiny_backbone
    demo = build_demo(svc)
    fns = [fn for fn in demo.fns.values() if fn.fn is not None]
    wrapped = {fn.concurrency_id for fn in fns if model_thread.wrapped(fn.fn)}
    free = {fn.concurrency_id for fn in fns if not model_thread.wrapped(fn.fn)}
    assert wrapped == set(MODEL_GROUPS)  # every group has events, and all of them are wrapped
    assert free and not free & MODEL_GROUPS  # a teaching step or the CSV does not wait for the model
    predict = next(fn for fn in fns if fn.api_name == "predict")
    assert list(inspect.signature(predict.fn).parameters) == list(inspect.signature(predict.fn.__wrapped__).parameters)


def test_gradio_queue_looks_for_work_every_10_ms():
    # the attributes are gradio's own (set in its Queue): a gradio that renamed them would leave
    # its 1 ms look in place, silently, so the names are checked against a fresh queue first
    import gradio as gr

    from app.queueing import PROGRESS_POLL_S, QUEUE_POLL_S, configure_queue

    with gr.Blocks() as demo:
        gr.Button().click(lambda: None, None, None, concurrency_id="model")
    fresh = gr.Blocks().queue()._queue
    assert {"sleep_when_free", "progress_update_sleep_when_free"} <= vars(fresh).keys()
    queue = configure_queue(demo)._queue
    assert (queue.sleep_when_free, queue.progress_update_sleep_when_free) == (QUEUE_POLL_S, PROGRESS_POLL_S)
