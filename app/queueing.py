"""The queue of a public server: how many requests may wait, the concurrency groups, and which
events run on the model's thread."""

from __future__ import annotations

from .model_thread import on_model_thread, wrapped

#: the queue: requests waiting at most, and the concurrency groups (one encoder run at a time per
#: group; browser events and the API have a group each, so neither can lock the other out)
QUEUE_MAX_SIZE = 256
BROWSER_GROUP, API_GROUP = "model", "api"
HEAD_GROUP, REFERENCE_GROUP, BATCH_GROUP = "head", "reference", "batch"
#: the groups whose events use a model (encoder or head): they run on the model's thread
MODEL_GROUPS = frozenset({BROWSER_GROUP, API_GROUP, HEAD_GROUP, REFERENCE_GROUP, BATCH_GROUP})
#: seconds between two looks of gradio's queue for an event to start, and for progress to send:
#: gradio looks every 1 ms (10 ms) on Linux, waking its event loop ~1,100 times a second, idle
#: or not; each wake-up takes a core from the encoder's two threads, which then wait for each
#: other (the server's encoder: ~0.85 s where the same call alone takes ~0.77 s). An event now
#: starts at most 10 ms later, progress is sent every 50 ms.
QUEUE_POLL_S, PROGRESS_POLL_S = 0.01, 0.05


def configure_queue(demo, max_size: int = QUEUE_MAX_SIZE):
    """The queue for a public server: up to ``max_size`` waiting requests (20 clients × 5
    requests all queue), one encoder run at a time per group, and the API (``/predict``) in a
    group of its own so API clients and browser users each get a turn (gradio draws the next
    group at random among those with a free slot). The events of ``MODEL_GROUPS`` run on the
    model's thread (``app/model_thread.py``); the others (a teaching step, the CSV) stay free."""
    for fn in demo.fns.values():
        if fn.api_name == "predict":
            fn.concurrency_id = API_GROUP
        if fn.fn is not None and fn.concurrency_id in MODEL_GROUPS and not wrapped(fn.fn):
            fn.fn = on_model_thread(fn.fn)
    demo.queue(default_concurrency_limit=1, max_size=max_size)
    demo._queue.sleep_when_free = QUEUE_POLL_S
    demo._queue.progress_update_sleep_when_free = PROGRESS_POLL_S
    return demo
