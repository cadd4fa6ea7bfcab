"""The model's thread: in the server, every computation of a model — building it, the warm-up,
the encoder, the head — runs on one thread.

torch's CPU threads are OpenMP's (libgomp): each thread that starts a parallel region gets a pool
of workers of its own, and once the pools hold more threads than there are cores, every pool's
workers stop spinning after ~100 turns between regions and sleep on a futex. An encoder pass is
thousands of regions, each then waiting for a wake-up: the server's encoder, run in gradio's
worker threads after the page was built on the main thread, took 1.1–1.2× the same call in a
process's main thread (two cores). One thread, one pool. The cost: a head's event (a K change,
~10 ms) waits for an encoder pass already running — on two cores, running beside it would slow
both.

``run`` waits for a call on the model thread (a plain call when already on it); ``on_model_thread``
wraps a function so; ``submit`` queues one without waiting (the warm-up). The caller's context
variables go along (gradio's progress and request live in them)."""

from __future__ import annotations

import concurrent.futures
import contextvars
import functools
import threading
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

NAME = "hvl-model"
_local = threading.local()


def _mark() -> None:
    _local.is_model_thread = True


# one worker; the interpreter waits for its work at exit (torch aborts if killed mid-call)
_executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix=NAME, initializer=_mark)


def is_model_thread() -> bool:
    return getattr(_local, "is_model_thread", False)


def submit(fn: Callable[..., T], /, *args, **kwargs) -> concurrent.futures.Future[T]:
    """``fn(*args, **kwargs)`` queued on the model thread, with the caller's context variables."""
    return _executor.submit(contextvars.copy_context().run, fn, *args, **kwargs)


def run(fn: Callable[..., T], /, *args, **kwargs) -> T:
    """``fn(*args, **kwargs)`` on the model thread, waiting for it (its exception re-raised here)."""
    if is_model_thread():  # already there: waiting for the queue would wait for ourselves
        return fn(*args, **kwargs)
    return submit(fn, *args, **kwargs).result()


def on_model_thread(fn: Callable[..., T]) -> Callable[..., T]:
    """``fn`` that runs on the model thread; its signature stays visible (gradio reads it)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        return run(fn, *args, **kwargs)

    wrapper.runs_on_model_thread = True
    return wrapper


def wrapped(fn) -> bool:
    """Whether ``fn`` came from ``on_model_thread`` (another decorator's ``__wrapped__`` does not count)."""
    return getattr(fn, "runs_on_model_thread", False)
